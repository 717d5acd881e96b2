"""Audit search latency over a large PostgreSQL ledger (issue #9; target: p99 < 50 ms at 10M).

Usage: python bench/audit_search.py [--events N] [--samples N] [--postgres URL]
                                    [--keep | --reuse SCHEMA] [--plans]

Fills a scratch schema (migrated to head) in bulk with COPY: N events shaped like the
platform's (order lifecycles for 50,000 accounts, a fifth of the traffic on 100 busy
accounts; executions by the system actor; staff permission checks naming accounts; sign-ins),
with their account/order references and chain rows; indexes are built after the load, as a
restore would. Then times `search_page` (one page of 50, newest first, in its own read
transaction on a pooled connection: what a request spends in the database) for: an account,
an order id, an actor with a time range, and a type prefix; and, for the same searches, the
database's own planning + execution time (EXPLAIN ANALYZE), which other work on a shared
machine inflates far less. Prints one JSON object.

The chain rows' hashes are placeholders: this measures search, not verification.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.db.engine import create_engine, read_only
from tradeguard.db.migrate import upgrade
from tradeguard.ledger.search.query import EventFilter, SortOrder, build_filter, decode_cursor
from tradeguard.ledger.search.repository import head, search_query
from tradeguard.ledger.search.service import search_page

T0 = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z
DAYS = 30
ACCOUNTS = 50_000
HOT_ACCOUNTS = 100
TRADERS = 20_000
STAFF = 50
CHUNK = 50_000
TABLES = ("audit_event", "audit_chain", "audit_event_ref")
PLACEHOLDER_HASH = bytes(32)


def ids(rng: random.Random, count: int) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


class Generator:
    """Events in pk order, with what each names; deterministic for a seed."""

    def __init__(self, total: int, seed: int = 6962) -> None:
        self.rng = random.Random(seed)
        self.total = total
        self.accounts = ids(self.rng, ACCOUNTS)
        self.traders = ids(self.rng, TRADERS)
        self.staff = ids(self.rng, STAFF)
        self.order_sample: list[str] = []
        self.step = DAYS * 86_400 * NS_PER_SECOND // max(total, 1)

    def account(self) -> int:
        if self.rng.random() < 0.2:
            return self.rng.randrange(HOT_ACCOUNTS)
        return self.rng.randrange(ACCOUNTS)

    def events(
        self,
    ) -> Iterator[tuple[str, tuple[str, str], tuple[str, str] | None, dict[str, Any]]]:
        """(type, actor, subject, data) until `total` events."""
        made = 0
        while made < self.total:
            roll = self.rng.random()
            if roll < 0.75:
                a = self.account()
                account, trader = self.accounts[a], self.traders[a % TRADERS]
                order = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
                if len(self.order_sample) < 20_000 and self.rng.random() < 0.01:
                    self.order_sample.append(order)
                data = {
                    "account_id": account,
                    "order_id": order,
                    "symbol": "ACME",
                    "side": "buy",
                    "quantity": self.rng.randrange(1, 500),
                    "limit_price": "187.25",
                    "status": "new",
                }
                subject = ("account", account)
                life = [("trading:order:placed", ("user", trader))]
                fate = self.rng.random()
                if fate < 0.55:
                    life += [
                        ("trading:execution:created", ("system", "tradeguard")),
                        ("trading:order:filled", ("system", "tradeguard")),
                    ]
                elif fate < 0.85:
                    life.append(("trading:order:cancelled", ("user", trader)))
                elif fate < 0.93:
                    life = [("risk:pretrade:rejected", ("user", trader))]
                for event_type, actor in life:
                    yield event_type, actor, subject, data
                    made += 1
            elif roll < 0.95:
                if self.rng.random() < 0.3:
                    who = self.staff[self.rng.randrange(STAFF)]
                    data = {
                        "permission": "account:view",
                        "allowed": True,
                        "route": "/api/v1/accounts/{account_id}",
                        "method": "GET",
                        "params": {"account_id": self.accounts[self.account()]},
                    }
                else:
                    who = self.traders[self.rng.randrange(TRADERS)]
                    data = {"permission": "order:place", "allowed": True, "method": "POST"}
                yield "access:permission:checked", ("user", who), ("session", who[:8]), data
                made += 1
            else:
                who = self.traders[self.rng.randrange(TRADERS)]
                yield "identity:user:login", ("user", who), ("user", who), {"ip": "203.0.113.7"}
                made += 1


def references(
    actor: tuple[str, str], subject: tuple[str, str] | None, data: dict[str, Any]
) -> list[tuple[str, str]]:
    """The same places ledger/search/references.py reads (kept simple for these shapes)."""
    found: dict[tuple[str, str], None] = {}
    for party in (actor, subject):
        if party is not None and party[0] in {"account", "order"}:
            found[party] = None
    if "account_id" in data:
        found[("account", data["account_id"])] = None
    if "order_id" in data:
        found[("order", data["order_id"])] = None
    params = data.get("params")
    if isinstance(params, dict) and "account_id" in params:
        found[("account", params["account_id"])] = None
    return list(found)


async def schema_objects(conn: asyncpg.Connection, schema: str) -> tuple[list[str], list[str]]:
    """Statements recreating the tables' constraints and indexes, and dropping them."""
    constraints = await conn.fetch(
        "SELECT c.conname, t.relname, c.contype::text AS contype, "
        "pg_get_constraintdef(c.oid) AS def FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = $1 AND t.relname = ANY($2::text[]) AND c.contype IN ('p','u','f')",
        schema,
        list(TABLES),
    )
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 "
        "AND tablename = ANY($2::text[]) AND indexname <> ALL($3::text[])",
        schema,
        list(TABLES),
        [c["conname"] for c in constraints],
    )
    order = {"p": 0, "u": 1, "f": 3}
    create = sorted(
        [
            (
                order[c["contype"]],
                f"ALTER TABLE {c['relname']} ADD CONSTRAINT {c['conname']} {c['def']}",
            )
            for c in constraints
        ]
        + [(2, i["indexdef"]) for i in indexes]
    )
    drop = [
        f"ALTER TABLE {c['relname']} DROP CONSTRAINT {c['conname']}"
        for c in constraints
        if c["contype"] == "f"
    ]
    drop += [
        f"ALTER TABLE {c['relname']} DROP CONSTRAINT {c['conname']}"
        for c in constraints
        if c["contype"] != "f"
    ]
    drop += [f"DROP INDEX {i['indexname']}" for i in indexes]
    return [statement for _, statement in create], drop


async def fill(url: str, schema: str, total: int) -> tuple[Generator, dict[str, float]]:
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    timings: dict[str, float] = {}
    generator = Generator(total)
    try:
        create, drop = await schema_objects(conn, schema)
        for statement in drop:
            await conn.execute(statement)
        # Triggers (txid stamping, append-only) and foreign-key checks off for the load only.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET synchronous_commit = off")
        started = time.perf_counter()
        events, chain, refs = [], [], []
        pk = 0
        for event_type, actor, subject, data in generator.events():
            pk += 1
            ns = T0 + pk * generator.step + generator.rng.randrange(generator.step or 1)
            txid = 1_000 + pk // 2
            event_id = str(uuid.UUID(int=(ns // 1_000_000) << 80 | 0x7 << 76 | 0x8 << 60 | pk))
            document = {
                "v": 1,
                "id": event_id,
                "type": event_type,
                "ts": str(ns),
                "actor": {"kind": actor[0], "id": actor[1]},
                "subject": {"kind": subject[0], "id": subject[1]} if subject else None,
                "data": data,
            }
            body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
            events.append(
                (
                    pk,
                    event_id,
                    event_type,
                    ns,
                    actor[1],
                    subject[1] if subject else None,
                    body,
                    txid,
                )
            )
            chain.append((pk, pk, PLACEHOLDER_HASH, PLACEHOLDER_HASH, ns + 50_000_000))
            refs += [(kind, value, txid, pk) for kind, value in references(actor, subject, data)]
            if len(events) >= CHUNK:
                await copy(conn, events, chain, refs)
                events, chain, refs = [], [], []
        if events:
            await copy(conn, events, chain, refs)
        timings["load_s"] = round(time.perf_counter() - started, 1)
        await conn.execute("SET session_replication_role = origin")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        for statement in create:
            await conn.execute(statement)
        timings["index_s"] = round(time.perf_counter() - started, 1)
        await conn.execute(
            "UPDATE audit_sequencer_state SET last_seq = $1, cursor_txid = $2, cursor_pk = $1",
            pk,
            1_000 + pk // 2,
        )
        await conn.execute("SELECT setval(pg_get_serial_sequence('audit_event', 'pk'), $1)", pk)
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE audit_event")
        await conn.execute("VACUUM ANALYZE audit_chain")
        await conn.execute("VACUUM ANALYZE audit_event_ref")
        timings["analyze_s"] = round(time.perf_counter() - started, 1)
        sizes = await conn.fetch(
            "SELECT relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND relname = ANY($2::text[])",
            schema,
            list(TABLES),
        )
        timings.update({f"{s['relname']}_gib": round(s["bytes"] / 2**30, 2) for s in sizes})
    finally:
        await conn.close()
    return generator, timings


async def copy(
    conn: asyncpg.Connection, events: list[Any], chain: list[Any], refs: list[Any]
) -> None:
    await conn.copy_records_to_table(
        "audit_event",
        records=events,
        columns=[
            "pk",
            "event_id",
            "event_type",
            "occurred_ns",
            "actor_id",
            "subject_id",
            "body",
            "txid",
        ],
    )
    await conn.copy_records_to_table(
        "audit_chain",
        records=chain,
        columns=["seq", "event_pk", "leaf_hash", "chain_hash", "sequenced_ns"],
    )
    await conn.copy_records_to_table(
        "audit_event_ref", records=refs, columns=["kind", "value", "txid", "event_pk"]
    )


async def server_ms(conn: Any, where: EventFilter, cursor: str | None) -> float:
    """The database's own planning + execution time for the same page (EXPLAIN ANALYZE)."""
    through = await head(conn)
    if through is None:
        return 0.0
    after = decode_cursor(cursor, digest=where.digest(SortOrder.NEWEST)) if cursor else None
    query = search_query(
        "postgresql", where, sort=SortOrder.NEWEST, through=through, after=after, limit=51
    )
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    rows = await conn.execute(text("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql))
    [document] = rows.scalar_one()
    return float(document["Planning Time"]) + float(document["Execution Time"])


def summary(latencies: list[float]) -> dict[str, float]:
    latencies = sorted(latencies)
    return {
        "p50_ms": round(latencies[len(latencies) // 2], 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "max_ms": round(latencies[-1], 2),
    }


async def timed(
    engine: AsyncEngine,
    make: Callable[[random.Random], tuple[EventFilter, str | None]],
    samples: int,
) -> dict[str, Any]:
    """Wall time of search_page (what a request waits, scheduling included) and, for the
    same searches, the database's own time (what the indexes cost, whatever else runs)."""
    rng = random.Random(42)
    latencies: list[float] = []
    server: list[float] = []
    returned = 0
    async with engine.connect() as conn:
        await read_only(conn)
        for n in range(samples + samples // 10):
            where, cursor = make(rng)
            started = time.perf_counter_ns()
            async with conn.begin():
                page = await search_page(
                    conn, where, sort=SortOrder.NEWEST, limit=50, cursor=cursor
                )
            elapsed = time.perf_counter_ns() - started
            async with conn.begin():
                database = await server_ms(conn, where, cursor)
            if n >= samples // 10:  # the first tenth warms the cache and is not counted
                latencies.append(elapsed / 1e6)
                server.append(database)
                returned += len(page.items)
    return {
        "samples": len(latencies),
        **summary(latencies),
        "db": summary(server),
        "mean_results": round(returned / len(latencies), 1),
    }


async def plan_of(engine: AsyncEngine, where: EventFilter) -> list[str]:
    async with engine.connect() as conn:
        through = await head(conn)
        if through is None:
            return []
        sql = search_query("postgresql", where, sort=SortOrder.NEWEST, through=through, limit=51)
        compiled = str(sql.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        rows = await conn.execute(text("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + compiled))
        return [str(row[0]) for row in rows]


async def second_page(engine: AsyncEngine, where: EventFilter) -> str | None:
    async with engine.connect() as conn:
        return (await search_page(conn, where, limit=50)).next_cursor


async def measure(
    engine: AsyncEngine, generator: Generator, samples: int, plans: bool
) -> dict[str, Any]:
    day = 86_400 * NS_PER_SECOND

    def account(hot: bool) -> Callable[[random.Random], tuple[EventFilter, None]]:
        def make(rng: random.Random) -> tuple[EventFilter, None]:
            index = rng.randrange(HOT_ACCOUNTS) if hot else rng.randrange(HOT_ACCOUNTS, ACCOUNTS)
            return build_filter(account_id=generator.accounts[index]), None

        return make

    def order(rng: random.Random) -> tuple[EventFilter, None]:
        return build_filter(order_id=rng.choice(generator.order_sample)), None

    def actor_day(rng: random.Random) -> tuple[EventFilter, None]:
        start = T0 + rng.randrange(DAYS - 1) * day
        trader = generator.traders[rng.randrange(HOT_ACCOUNTS)]  # traders of busy accounts
        return build_filter(actor_id=trader, from_=str(start), to=str(start + day)), None

    def system_hour(rng: random.Random) -> tuple[EventFilter, None]:
        start = T0 + rng.randrange(DAYS * 24 - 1) * day // 24
        return build_filter(
            actor_id="tradeguard", from_=str(start), to=str(start + day // 24)
        ), None

    def staff_week(rng: random.Random) -> tuple[EventFilter, None]:
        start = T0 + rng.randrange(DAYS - 7) * day
        who = generator.staff[rng.randrange(STAFF)]
        return build_filter(actor_id=who, from_=str(start), to=str(start + 7 * day)), None

    def prefix(value: str) -> Callable[[random.Random], tuple[EventFilter, None]]:
        return lambda rng: (build_filter(event_type=value), None)

    hot_where = build_filter(account_id=generator.accounts[0])
    hot_cursor = await second_page(engine, hot_where)

    def hot_next(rng: random.Random) -> tuple[EventFilter, str | None]:
        return hot_where, hot_cursor

    kinds: dict[str, Callable[[random.Random], tuple[EventFilter, str | None]]] = {
        "by_account": account(hot=False),
        "by_account_busy": account(hot=True),
        "by_account_busy_page_2": hot_next,
        "by_order_id": order,
        "by_actor_day": actor_day,
        "by_staff_actor_week": staff_week,
        "by_system_actor_hour": system_hour,
        "by_type_prefix_trading_order": prefix("trading:order:"),
        "by_type_prefix_risk": prefix("risk:"),
        "by_type_prefix_identity": prefix("identity:"),
    }
    result: dict[str, Any] = {}
    for name, make in kinds.items():
        result[name] = await timed(engine, make, samples)
        if plans:
            result[name]["plan"] = await plan_of(engine, make(random.Random(7))[0])
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true", help="Keep the filled schema.")
    parser.add_argument("--reuse", help="Measure an existing schema filled with --keep.")
    parser.add_argument("--plans", action="store_true", help="Include EXPLAIN ANALYZE plans.")
    args = parser.parse_args()
    raw_url = (
        make_url(args.postgres).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    schema = args.reuse or "bench_search_" + secrets.token_hex(4)
    admin = create_engine(args.postgres, pool_size=1)
    timings: dict[str, float] = {}
    if args.reuse is None:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        engine = create_engine(args.postgres, pg_schema=schema, pool_size=2)
        if args.reuse is None:
            await upgrade(engine)
            generator, timings = await fill(raw_url, schema, args.events)
        else:
            async with engine.connect() as conn:
                args.events = int(await conn.scalar(text("SELECT max(pk) FROM audit_event")) or 0)
            generator = Generator(0)
            # The same seed draws the same accounts, traders and staff; order ids are sampled
            # afresh from the stored references.
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT value FROM audit_event_ref TABLESAMPLE SYSTEM (0.1) "
                        "WHERE kind = 'order' LIMIT 20000"
                    )
                )
                generator.order_sample = [row[0] for row in rows]
        queries = await measure(engine, generator, args.samples, args.plans)
        await engine.dispose()
    finally:
        if not (args.keep or args.reuse):
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
    print(
        json.dumps(
            {
                "benchmark": "audit_search",
                "events": args.events,
                "schema": schema if (args.keep or args.reuse) else None,
                "fill": timings,
                "page_size": 50,
                "queries": queries,
                "target": {"p99_ms_max": 50},
                "machine": machine_info(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
