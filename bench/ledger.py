"""Audit ledger with its Merkle tree: append throughput against plain inserts of the same
rows, and inclusion / consistency proof latency at 1M and 10M entries.

Usage: python bench/ledger.py [--events N] [--writers N] [--proof-sizes 1000000,10000000]
                              [--samples N] [--backends sqlite,postgresql] [--postgres URL]
Prints one JSON object.

- Append: `Ledger.append` in its own transaction per event with the sequencer running in the
  background at the server's 50 ms interval (chaining each batch and extending the Merkle
  tree in the same transaction), timed until every event is chained and in the tree; then
  the same rows (same canonical body, same indexes) inserted into a plain table, in the
  same run. The tree built is checked against merkle.root over the chained leaves.
- Sequencer: the same events bulk-inserted into two fresh databases, then chained by the
  sequencer (batches of 5,000) with the tree, and by ledger v1's sequencer without it
  (`ChainOnlySequencer`, a copy of the pass minus the tree): the tree's own cost, without
  the per-transaction commits that dominate the append numbers.
- Proofs: the chain's leaf hashes and the stored subtrees of an N-leaf tree are bulk-filled
  (event rows are not needed to prove: the bench schema drops audit_chain's foreign key),
  then random inclusion proofs (with the root, as the API answers) and consistency proofs
  (through LedgerTree.consistency, as the API calls it) are timed, each on a fresh pooled
  connection and transaction. Sampled proofs are verified.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.ledger import repository as ledger_repository
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.chain import chain_hash, leaf_hash
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.models import AuditChainRow, AuditEventRow
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.tree import layout, merkle
from tradeguard.ledger.tree.service import LedgerTree, LogKeySource
from tradeguard.ledger.tree.store import TreeReader

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
FILL_CHUNK = 100_000


class ChainOnlySequencer(LedgerSequencer):
    """Ledger v1's sequencer pass, the chain without the tree: the baseline of its cost."""

    async def _sequence(self, conn: AsyncConnection) -> int:
        await ledger_repository.lock_sequencer(conn)
        state = await ledger_repository.load_state(conn)
        horizon = None
        if conn.dialect.name == "postgresql":
            horizon = await ledger_repository.transaction_horizon(conn)
        events = await ledger_repository.unsequenced_events(
            conn, state, horizon=horizon, limit=5_000
        )
        if not events:
            return 0
        seq, previous, rows = state.last_seq, state.last_chain_hash, []
        for ev in events:
            seq += 1
            leaf = leaf_hash(bytes(ev.body))
            previous = chain_hash(previous, seq, leaf)
            rows.append(
                {
                    "seq": seq,
                    "event_pk": ev.pk,
                    "leaf_hash": leaf,
                    "chain_hash": previous,
                    "sequenced_ns": 0,
                }
            )
        await ledger_repository.insert_chain_rows(conn, rows)
        last = events[-1]
        await ledger_repository.save_state(
            conn,
            replace(
                state,
                last_seq=seq,
                last_chain_hash=previous,
                cursor_txid=last.txid or 0,
                cursor_pk=last.pk,
            ),
        )
        return len(rows)


async def bulk_events(engine: AsyncEngine, count: int) -> None:
    clock = SystemClock()
    ids = IdGenerator(clock)
    sessions = session_factory(engine)
    for start in range(0, count, 5_000):
        rows = []
        for n in range(start, min(start + 5_000, count)):
            ev, now, event_id = event(n), clock.now_ns(), ids.new_str()
            rows.append(
                {
                    "event_id": event_id,
                    "event_type": ev.type,
                    "occurred_ns": now,
                    "actor_id": ev.actor.id,
                    "subject_id": ev.subject.id if ev.subject else None,
                    "body": canonical_bytes(ev.envelope(event_id=event_id, occurred_ns=now)),
                }
            )
        async with unit_of_work(sessions) as session:
            await session.execute(insert(AuditEventRow.__table__), rows)


async def measure_sequencer(
    engines: tuple[AsyncEngine, AsyncEngine], events: int
) -> dict[str, Any]:
    """Chain the same bulk-inserted events with the tree (engines[0]) and without it
    (engines[1]), in two rounds of `events // 2` that swap the order."""
    sides = {
        "chain_and_tree": LedgerSequencer(engines[0], batch_size=5_000),
        "chain_only": ChainOnlySequencer(engines[1], batch_size=5_000),
    }
    engine_of = {"chain_and_tree": engines[0], "chain_only": engines[1]}
    wall = dict.fromkeys(sides, 0.0)
    cpu = dict.fromkeys(sides, 0.0)
    half = events // 2
    for order in (["chain_only", "chain_and_tree"], ["chain_and_tree", "chain_only"]):
        for name in order:
            await bulk_events(engine_of[name], half)
            started, cpu_started = time.perf_counter(), time.process_time()
            chained = await sides[name].drain()
            wall[name] += time.perf_counter() - started
            cpu[name] += time.process_time() - cpu_started
            if chained != half:
                raise SystemExit(f"{name}: chained {chained} of {half}")
    result: dict[str, Any] = {"events": half * 2}
    for name in sides:
        result[name] = {
            "events_per_s": round(half * 2 / wall[name]),
            "cpu_us_per_event": round(cpu[name] / (half * 2) * 1e6, 2),
        }
    result["tree_cost_ratio"] = round(wall["chain_and_tree"] / wall["chain_only"], 3)
    return result


def event(n: int) -> LedgerEvent:
    return LedgerEvent(
        type="trading:order:placed",
        actor=Party("user", f"user-{n % 50}"),
        subject=Party("order", f"order-{n}"),
        data={"symbol": "AAPL", "side": "buy", "quantity": str(n % 500 + 1), "limit_price": "1"},
    )


async def run_writers(engine: AsyncEngine, writers: int, count: int, write_one: Any) -> float:
    sessions = session_factory(engine)
    per_writer = count // writers

    async def writer(w: int) -> None:
        for i in range(per_writer):
            async with unit_of_work(sessions) as session:
                await write_one(session, w * per_writer + i)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return time.perf_counter() - start


async def measure_appends(engine: AsyncEngine, *, events: int, writers: int) -> dict[str, Any]:
    clock = SystemClock()
    ids = IdGenerator(clock)
    ledger = Ledger(clock=clock, ids=ids)
    async with engine.begin() as conn:
        await conn.run_sync(PLAIN.metadata.create_all)

    async def plain(session: Any, n: int) -> None:
        now, event_id, ev = clock.now_ns(), ids.new_str(), event(n)
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

    async def chained(session: Any, n: int) -> None:
        await ledger.append(session, event(n))

    # Alternate the two sides (plain, merkle, plain, merkle) so both see the same load.
    plain_s = chain_s = 0.0
    half = events // 2
    for _round in range(2):
        plain_s += await run_writers(engine, writers, half, plain)
        sequencer = LedgerSequencer(engine, interval_ms=50)
        stop = asyncio.Event()
        background = asyncio.create_task(sequencer.run_forever(stop))
        chain_s += await run_writers(engine, writers, half, chained)
        started = time.perf_counter()
        stop.set()
        await background
        await sequencer.drain()
        chain_s += time.perf_counter() - started  # until every event is chained and in the tree
    async with engine.connect() as conn:
        leaves = [
            bytes(h)
            for h in (
                await conn.execute(select(AuditChainRow.leaf_hash).order_by(AuditChainRow.seq))
            ).scalars()
        ]
        root = await TreeReader(conn).root(len(leaves))
        nodes = (await conn.execute(text("SELECT count(*) FROM audit_tree_node"))).scalar_one()
    if root != merkle.root(leaves) or len(leaves) != half * 2:
        raise SystemExit("the Merkle tree does not match the chained leaves")
    return {
        "events": half * 2,
        "writers": writers,
        "plain_inserts_per_s": round(half * 2 / plain_s),
        "merkle_appends_per_s": round(half * 2 / chain_s),
        "overhead_ratio": round(chain_s / plain_s, 3),
        "tree_nodes_stored": nodes,
    }


def leaf_chunks(size: int) -> Iterator[tuple[int, list[bytes]]]:
    """Deterministic leaf hashes in chunks: (first leaf index, hashes)."""
    for start in range(0, size, FILL_CHUNK):
        yield (
            start,
            [
                hashlib.sha256(b"\x00" + i.to_bytes(8, "big")).digest()
                for i in range(start, min(start + FILL_CHUNK, size))
            ],
        )


def tree_rows(size: int) -> Iterator[tuple[int, list[bytes], list[layout.StoredNode]]]:
    pending: dict[int, list[bytes]] = {}
    for start, leaves in leaf_chunks(size):
        nodes = layout.extend(start, pending, leaves)
        pending = layout.advance_pending(start, pending, leaves, nodes)
        yield start, leaves, nodes


def fill_sqlite(path: Path, size: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    for start, leaves, nodes in tree_rows(size):
        with db:
            db.executemany(
                "INSERT INTO audit_chain (seq, event_pk, leaf_hash, chain_hash, sequenced_ns) "
                "VALUES (?, ?, ?, ?, 0)",
                ((start + i + 1, start + i + 1, leaf, leaf) for i, leaf in enumerate(leaves)),
            )
            db.executemany(
                "INSERT INTO audit_tree_node (level, idx, hash) VALUES (?, ?, ?)",
                ((n.level, n.index, n.hash) for n in nodes),
            )
    with db:
        db.execute("UPDATE audit_sequencer_state SET last_seq = ?", (size,))
    db.execute("ANALYZE")
    db.close()


async def fill_postgres(engine: AsyncEngine, size: int) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.execute(
            "ALTER TABLE audit_chain DROP CONSTRAINT IF EXISTS fk_audit_chain_event_pk_audit_event"
        )
        for start, leaves, nodes in tree_rows(size):
            async with driver.transaction():
                await driver.copy_records_to_table(
                    "audit_chain",
                    records=[
                        (start + i + 1, start + i + 1, leaf, leaf, 0)
                        for i, leaf in enumerate(leaves)
                    ],
                    columns=["seq", "event_pk", "leaf_hash", "chain_hash", "sequenced_ns"],
                )
                await driver.copy_records_to_table(
                    "audit_tree_node",
                    records=[(n.level, n.index, n.hash) for n in nodes],
                    columns=["level", "idx", "hash"],
                )
        await driver.execute("UPDATE audit_sequencer_state SET last_seq = $1", size)
        await driver.execute("ANALYZE")
        await conn.commit()


def percentiles(wall: list[float], cpu: list[float]) -> dict[str, float]:
    """Wall time (what a caller waits, including time the process was descheduled on this
    shared machine) and the process's CPU time per call (all threads: the SQLite
    connections' too)."""
    ordered, cpu_ordered = sorted(wall), sorted(cpu)
    count = len(ordered)
    p99 = min(count - 1, int(count * 0.99))
    return {
        "samples": count,
        "p50_ms": round(ordered[count // 2] * 1000, 3),
        "p99_ms": round(ordered[p99] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "cpu_p50_ms": round(cpu_ordered[count // 2] * 1000, 3),
        "cpu_p99_ms": round(cpu_ordered[p99] * 1000, 3),
    }


async def measure_proofs(
    engine: AsyncEngine, size: int, *, samples: int, keys_dir: Path
) -> dict[str, Any]:
    rng = random.Random(size)
    tree = LedgerTree(
        engine,
        keys=LogKeySource(keys_dir, "bench.local/ledger"),
        origin="bench.local/ledger",
        clock=SystemClock(),
    )
    async with engine.connect() as conn:
        root = await TreeReader(conn).root(size)

    async def inclusion(index: int) -> tuple[bytes, list[bytes]]:
        async with tree.reading() as conn:
            return await TreeReader(conn).root_and_proof(size, merkle.inclusion_ranges(index, size))

    # Warm the pool and the caches the way a running server has them.
    for _ in range(50):
        await inclusion(rng.randrange(size))
        await tree.consistency(rng.randrange(1, size), size)
    inclusion_times: tuple[list[float], list[float]] = ([], [])
    consistency_times: tuple[list[float], list[float]] = ([], [])
    for n in range(samples):
        index = rng.randrange(size)
        started, cpu = time.perf_counter(), time.process_time()
        got_root, proof = await inclusion(index)
        inclusion_times[0].append(time.perf_counter() - started)
        inclusion_times[1].append(time.process_time() - cpu)
        first = rng.randrange(1, size)
        started, cpu = time.perf_counter(), time.process_time()
        link = await tree.consistency(first, size)
        consistency_times[0].append(time.perf_counter() - started)
        consistency_times[1].append(time.process_time() - cpu)
        if n % 100 == 0:
            leaf = hashlib.sha256(b"\x00" + index.to_bytes(8, "big")).digest()
            if got_root != root or not merkle.verify_inclusion(index, size, leaf, proof, root):
                raise SystemExit(f"inclusion proof {index}/{size} does not verify")
            if not merkle.verify_consistency(
                first, size, link.first_root, link.second_root, link.proof
            ):
                raise SystemExit(f"consistency proof {first}->{size} does not verify")
    return {
        "entries": size,
        "inclusion_with_root": percentiles(*inclusion_times),
        "consistency": percentiles(*consistency_times),
        "inclusion_proof_hashes": len(merkle.inclusion_ranges(size // 3, size)),
    }


async def sqlite_run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        if args.events:
            engine = create_engine(f"sqlite:///{Path(scratch) / 'append.db'}")
            await upgrade(engine)
            result["append"] = await measure_appends(engine, events=args.events, writers=1)
            await engine.dispose()
        if args.sequencer_events:
            engines = (
                create_engine(f"sqlite:///{Path(scratch) / 'tree.db'}"),
                create_engine(f"sqlite:///{Path(scratch) / 'chain.db'}"),
            )
            for engine in engines:
                await upgrade(engine)
            result["sequencer"] = await measure_sequencer(engines, args.sequencer_events)
            for engine in engines:
                await engine.dispose()
        proofs = {}
        for size in args.proof_sizes:
            path = Path(scratch) / f"proofs-{size}.db"
            engine = create_engine(f"sqlite:///{path}")
            await upgrade(engine)
            await engine.dispose()
            started = time.perf_counter()
            await asyncio.to_thread(fill_sqlite, path, size)
            filled = time.perf_counter() - started
            engine = create_engine(f"sqlite:///{path}")
            proofs[str(size)] = {
                **await measure_proofs(
                    engine, size, samples=args.samples, keys_dir=Path(scratch) / "keys"
                ),
                "fill_seconds": round(filled, 1),
            }
            await engine.dispose()
            path.unlink()
        result["proofs"] = proofs
    return result


@contextlib.asynccontextmanager
async def postgres_schema(url: str) -> Any:
    schema = "bench_" + secrets.token_hex(4)
    admin = create_engine(url, pool_size=1)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def postgres_run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if args.events:
        async with postgres_schema(args.postgres) as schema:
            engine = create_engine(args.postgres, pg_schema=schema, pool_size=args.writers)
            await upgrade(engine)
            result["append"] = await measure_appends(
                engine, events=args.events, writers=args.writers
            )
            await engine.dispose()
    if args.sequencer_events:
        async with (
            postgres_schema(args.postgres) as first,
            postgres_schema(args.postgres) as second,
        ):
            engines = (
                create_engine(args.postgres, pg_schema=first),
                create_engine(args.postgres, pg_schema=second),
            )
            for engine in engines:
                await upgrade(engine)
            result["sequencer"] = await measure_sequencer(engines, args.sequencer_events)
            for engine in engines:
                await engine.dispose()
    proofs = {}
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.proof_sizes:
            async with postgres_schema(args.postgres) as schema:
                engine = create_engine(args.postgres, pg_schema=schema)
                await upgrade(engine)
                started = time.perf_counter()
                await fill_postgres(engine, size)
                filled = time.perf_counter() - started
                proofs[str(size)] = {
                    **await measure_proofs(
                        engine, size, samples=args.samples, keys_dir=Path(scratch) / "keys"
                    ),
                    "fill_seconds": round(filled, 1),
                }
                await engine.dispose()
    result["proofs"] = proofs
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=4_000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--sequencer-events", type=int, default=100_000)
    parser.add_argument("--proof-sizes", default="1000000,10000000")
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    args.proof_sizes = [int(s) for s in args.proof_sizes.split(",") if s]
    backends = set(args.backends.split(","))
    load_before = os.getloadavg()
    result = {
        "benchmark": "ledger",
        "sqlite": await sqlite_run(args) if "sqlite" in backends else None,
        "postgresql": await postgres_run(args) if "postgresql" in backends else None,
        "targets": {"overhead_ratio_max": 1.3, "proof_p99_ms_max": 5.0},
        "machine": {
            **machine_info(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
