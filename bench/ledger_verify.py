"""`audit verify` speed: in this process (serial) against worker processes, same run, same data.

Usage: python bench/ledger_verify.py [--events 200000,1000000] [--workers 1,2,3] [--rounds 3]
           [--backends sqlite,postgresql] [--postgres URL] [--keep DIR]
Prints one JSON object. Each ledger is filled in bulk and chained by the real sequencer, then
verified `rounds` times with each worker count in turn (1 = this process alone), so serial
and parallel see the same machine load. Besides wall-clock events/s it reports the CPU time
this process and its workers used (events per client CPU-second) and how busy the machine
was meanwhile (load average, and the share of all cores that was idle during the round):
on a shared machine the wall clock measures our share of it as much as our code.

--keep DIR keeps the filled ledgers (SQLite files in DIR, PostgreSQL schemas named
bench_verify_N) and reuses them on the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from ledger_append import event
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.ledger import repository
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.models import AuditEventRow
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.verify import verify_chain


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_ticks() -> tuple[int, int]:
    """(idle, total) jiffies over all cores, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


async def serving_backend(engine: AsyncEngine) -> int | None:
    """The PostgreSQL server process behind the engine's (single pooled) connection."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def backend_cpu_seconds(pid: int | None) -> float:
    """utime + stime of a local server process, from /proc (0 if unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def chained_events(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await repository.load_state(conn)).last_seq


async def fill(engine: AsyncEngine, events: int) -> None:
    """Bulk-insert events (the append path is bench/ledger_append.py's), then chain them."""
    clock = SystemClock()
    ids = IdGenerator(clock)
    sessions = session_factory(engine)
    batch = 5_000
    for start in range(0, events, batch):
        rows = []
        for n in range(start, min(start + batch, events)):
            ev, now, event_id = event(n), clock.now_ns(), ids.new_str()
            body = canonical_bytes(ev.envelope(event_id=event_id, occurred_ns=now))
            rows.append(
                {
                    "event_id": event_id,
                    "event_type": ev.type,
                    "occurred_ns": now,
                    "actor_id": ev.actor.id,
                    "subject_id": ev.subject.id if ev.subject else None,
                    "body": body,
                }
            )
        async with unit_of_work(sessions) as session:
            await session.execute(insert(AuditEventRow), rows)
    await LedgerSequencer(engine, batch_size=20_000).drain()
    if engine.dialect.name == "postgresql":
        # What autovacuum does to a table this size soon after: fresh planner statistics.
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE audit_event"))
            await conn.execute(text("ANALYZE audit_chain"))
            await conn.commit()


async def measure(engine: AsyncEngine, workers: list[int], rounds: int) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for _ in range(rounds):
        for count in workers:
            load = os.getloadavg()[0]
            backend = await serving_backend(engine) if count == 1 else None
            server0 = backend_cpu_seconds(backend)
            idle0, total0 = cpu_ticks()
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            report = await verify_chain(engine, workers=count)
            wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
            idle1, total1 = cpu_ticks()
            if not report.ok:
                raise SystemExit(f"ledger did not verify: {report}")
            server = None
            if backend is not None and await serving_backend(engine) == backend:
                server = backend_cpu_seconds(backend) - server0
            runs.append(
                {
                    "workers": count,
                    "seconds": round(wall, 3),
                    "events_per_s": round(report.verified / wall),
                    "client_cpu_s": round(cpu, 3),
                    "events_per_client_cpu_s": round(report.verified / cpu),
                    # Cores this process and its workers held on average (the share of the
                    # machine the run got; the PostgreSQL server's own CPU comes on top).
                    "client_cores": round(cpu / wall, 2),
                    # PostgreSQL, in process: the CPU its server process spent on this run.
                    **({} if server is None else {"server_cpu_s": round(server, 3)}),
                    "load_1m": round(load, 2),
                    "idle_share": round((idle1 - idle0) / max(total1 - total0, 1), 3),
                }
            )
    summary = {}
    for count in workers:
        mine = [r for r in runs if r["workers"] == count]
        summary[str(count)] = {
            "median_events_per_s": round(statistics.median(r["events_per_s"] for r in mine)),
            "best_events_per_s": max(r["events_per_s"] for r in mine),
            "median_events_per_client_cpu_s": round(
                statistics.median(r["events_per_client_cpu_s"] for r in mine)
            ),
        }
    return {"summary": summary, "runs": runs}


async def on_sqlite(args: argparse.Namespace, events: int, scratch: Path) -> dict[str, Any]:
    path = scratch / f"verify_{events}.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        await upgrade(engine)
        if await chained_events(engine) != events:
            await engine.dispose()
            for stale in (
                path,
                path.with_name(path.name + "-wal"),
                path.with_name(path.name + "-shm"),
            ):
                stale.unlink(missing_ok=True)
            engine = create_engine(f"sqlite:///{path}")
            await upgrade(engine)
            await fill(engine, events)
        return await measure(engine, args.workers, args.rounds)
    finally:
        await engine.dispose()


async def on_postgres(args: argparse.Namespace, events: int) -> dict[str, Any]:
    schema = f"bench_verify_{events}"
    admin = create_engine(args.postgres, pool_size=1)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    engine = create_engine(args.postgres, pg_schema=schema)
    try:
        await upgrade(engine)
        if await chained_events(engine) != events:
            await engine.dispose()
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            engine = create_engine(args.postgres, pg_schema=schema)
            await upgrade(engine)
            await fill(engine, events)
        return await measure(engine, args.workers, args.rounds)
    finally:
        await engine.dispose()
        if args.keep is None:
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", default="200000,1000000")
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    args.workers = [int(w) for w in args.workers.split(",")]
    sizes = [int(n) for n in args.events.split(",")]
    backends = args.backends.split(",")
    result: dict[str, Any] = {
        "benchmark": "ledger_verify",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as tmp:
        scratch = args.keep or Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        for backend in backends:
            result[backend] = {}
            for events in sizes:
                if backend == "sqlite":
                    result[backend][str(events)] = await on_sqlite(args, events, scratch)
                else:
                    result[backend][str(events)] = await on_postgres(args, events)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = {"verify_events_per_s_min": 300_000}
    result["machine"] = machine_info()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
