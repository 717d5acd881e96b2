"""Audit ledger throughput: chained appends vs the same rows without the chain; verify speed.

Usage: python bench/ledger_append.py [--events N] [--verify-events N] [--postgres URL]
Prints one JSON object. Runs on a scratch SQLite file and a scratch PostgreSQL schema.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    insert,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.models import AuditEventRow
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.verify import verify_chain

PLAIN = Table(
    "bench_plain_event",
    MetaData(),
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), unique=True),
    Column("event_type", String(100), index=True),
    Column("occurred_ns", BigInteger, index=True),
    Column("actor_id", String(100), index=True),
    Column("subject_id", String(100), index=True),
    Column("body", LargeBinary),
)


def event(n: int) -> LedgerEvent:
    return LedgerEvent(
        type="trading:order:placed",
        actor=Party("user", f"user-{n % 50}"),
        subject=Party("order", f"order-{n}"),
        data={
            "symbol": "AAPL",
            "side": "buy",
            "quantity": str(n % 500 + 1),
            "limit_price": "187.25",
        },
    )


async def run_writers(engine: AsyncEngine, writers: int, count: int, write_one) -> float:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    per_writer = count // writers

    async def writer(w: int) -> None:
        for i in range(per_writer):
            async with unit_of_work(sessions) as session:
                await write_one(session, w * per_writer + i)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return time.perf_counter() - start


async def measure_appends(engine: AsyncEngine, *, events: int, writers: int) -> dict[str, float]:
    clock = SystemClock()
    ids = IdGenerator(clock)
    ledger = Ledger(clock=clock, ids=ids)
    async with engine.begin() as conn:
        await conn.run_sync(PLAIN.metadata.create_all)

    async def plain(session, n: int) -> None:  # type: ignore[no-untyped-def]
        # The same row the ledger stores (same canonical body, same indexes), minus the chain.
        now, event_id = clock.now_ns(), ids.new_str()
        ev = event(n)
        body = canonical_bytes(ev.envelope(event_id=event_id, occurred_ns=now))
        await session.execute(
            insert(PLAIN).values(
                event_id=event_id,
                event_type=ev.type,
                occurred_ns=now,
                actor_id=ev.actor.id,
                subject_id=ev.subject.id if ev.subject else None,
                body=body,
            )
        )

    async def chained(session, n: int) -> None:  # type: ignore[no-untyped-def]
        await ledger.append(session, event(n))

    plain_s = await run_writers(engine, writers, events, plain)
    # The server's default interval (TRADEGUARD_LEDGER_SEQUENCER_INTERVAL_MS).
    sequencer = LedgerSequencer(engine, interval_ms=50)
    background = asyncio.create_task(sequencer.run_forever())
    chain_s = await run_writers(engine, writers, events, chained)
    background.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await background
    start = time.perf_counter()
    await sequencer.drain()
    chain_s += time.perf_counter() - start  # until every event is chained
    report = await verify_chain(engine)
    if not report.ok or report.verified != events:
        raise SystemExit(f"ledger did not verify after the run: {report}")
    return {
        "events": events,
        "writers": writers,
        "plain_inserts_per_s": round(events / plain_s),
        "chained_appends_per_s": round(events / chain_s),
        "overhead_ratio": round(chain_s / plain_s, 3),
    }


async def measure_verify(engine: AsyncEngine, *, events: int) -> dict[str, float]:
    """Fill the ledger in bulk (the append path is measured above), chain it, time verify."""
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
            await session.execute(insert(AuditEventRow.__table__), rows)
    await LedgerSequencer(engine, batch_size=20_000).drain()
    begin = time.perf_counter()
    report = await verify_chain(engine)
    elapsed = time.perf_counter() - begin
    if not report.ok or report.verified < events:
        raise SystemExit(f"ledger did not verify after the run: {report}")
    return {"events": report.verified, "verify_events_per_s": round(report.verified / elapsed)}


async def sqlite_run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{Path(scratch) / 'bench.db'}")
        await upgrade(engine)
        appends = await measure_appends(engine, events=args.events, writers=1)
        await engine.dispose()
        engine = create_engine(f"sqlite:///{Path(scratch) / 'verify.db'}")
        await upgrade(engine)
        verify = await measure_verify(engine, events=args.verify_events)
        await engine.dispose()
    return {"append": appends, "verify": verify}


async def postgres_run(args: argparse.Namespace) -> dict[str, object]:
    schema = "bench_" + secrets.token_hex(4)
    admin = create_engine(args.postgres, pool_size=1)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        engine = create_engine(args.postgres, pg_schema=schema, pool_size=args.writers)
        await upgrade(engine)
        appends = await measure_appends(engine, events=args.events, writers=args.writers)
        verify = await measure_verify(engine, events=args.verify_events)
        await engine.dispose()
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
    return {"append": appends, "verify": verify}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=4_000)
    parser.add_argument("--verify-events", type=int, default=200_000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    backends = set(args.backends.split(","))
    result = {
        "benchmark": "ledger_append",
        "sqlite": await sqlite_run(args) if "sqlite" in backends else None,
        "postgresql": await postgres_run(args) if "postgresql" in backends else None,
        "targets": {"overhead_ratio_max": 1.3, "verify_events_per_s_min": 300_000},
        "machine": machine_info(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
