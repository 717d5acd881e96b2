"""Indexed search of the audit ledger (AUD-2, AUD-3, AUD-4) on SQLite and PostgreSQL: every
filter alone and combined returns exactly the events seeded through Ledger.append and the
sequencer; pages never repeat or skip under concurrent appends; the queries are index walks.

Expected results are worked out here from what each seeded event is known to name, never by
calling the search's own reference rules."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.ledger import settle, smuggle_event_behind_cursor
from tradeguard.core.clock import FrozenClock, SystemClock, ns_to_iso
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import read_only, session_factory, unit_of_work
from tradeguard.ledger.domain import SYSTEM, LedgerEvent, Party
from tradeguard.ledger.search.query import (
    EventFilter,
    Position,
    SearchInputError,
    SortOrder,
    build_filter,
)
from tradeguard.ledger.search.repository import page_keys_query
from tradeguard.ledger.search.results import FoundEvent
from tradeguard.ledger.search.service import (
    ExportTooLarge,
    export_events,
    plan_export,
    search_page,
)
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger

ALICE, BOB, STAFF = "user-alice", "user-bob", "staff-sam"
A1, A2, A3 = "acc-1", "acc-2", "acc-3"


@dataclass
class Seeded:
    """An event as the test appended it, with what it is known to name."""

    n: int
    type: str
    actor_id: str
    subject_id: str | None
    ns: int
    accounts: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    event_id: str = ""
    seq: int = 0


def order_event(type_: str, actor: Party, account: str, order: str, **data: Any) -> LedgerEvent:
    return LedgerEvent(
        type=type_,
        actor=actor,
        subject=Party("account", account),
        data={"order_id": order, "account_id": account, "symbol": "ACME", **data},
    )


def seed_plan() -> list[tuple[LedgerEvent, set[str], set[str]]]:
    """A varied ledger: (event, accounts it names, orders it names)."""
    plan: list[tuple[LedgerEvent, set[str], set[str]]] = []
    for i in range(12):
        account = (A1, A2, A3)[i % 3]
        trader = Party("user", ALICE if i % 2 else BOB)
        order = f"ord-{i}"
        plan.append(
            (order_event("trading:order:placed", trader, account, order), {account}, {order})
        )
        if i % 3 == 0:
            plan.append(
                (
                    order_event("trading:execution:created", SYSTEM, account, order, qty=1),
                    {account},
                    {order},
                )
            )
        if i % 4 == 1:
            plan.append(
                (
                    order_event("trading:order:cancelled", trader, account, order),
                    {account},
                    {order},
                )
            )
        if i % 5 == 2:
            plan.append(
                (
                    order_event("risk:pretrade:rejected", trader, account, order, code="X"),
                    {account},
                    {order},
                )
            )
    # A replacement names the order it replaces; a halt the orders it cancelled.
    plan.append(
        (
            order_event(
                "trading:order:placed",
                Party("user", ALICE),
                A1,
                "ord-99",
                replaces_order_id="ord-1",
            ),
            {A1},
            {"ord-99", "ord-1"},
        )
    )
    plan.append(
        (
            LedgerEvent(
                type="trading:halt:started",
                actor=Party("staff", STAFF),
                subject=Party("market", "*"),
                data={"cancelled_orders": ["ord-2", "ord-5"], "reason": "acc-1 mentioned"},
            ),
            set(),
            {"ord-2", "ord-5"},
        )
    )
    # A staff member's permission check naming an account in its request parameters.
    plan.append(
        (
            LedgerEvent(
                type="access:permission:checked",
                actor=Party("user", STAFF),
                subject=Party("session", "sess-1"),
                data={"permission": "account:view", "params": {"account_id": A2}},
            ),
            {A2},
            set(),
        )
    )
    plan.append(
        (
            LedgerEvent(
                type="identity:user:login",
                actor=Party("user", ALICE),
                subject=Party("user", ALICE),
                data={"method": "password"},
            ),
            set(),
            set(),
        )
    )
    plan.append(
        (
            LedgerEvent(
                type="trading:account:opened",
                actor=Party("operator", "ops"),
                subject=Party("account", A3),
                data={"user_id": BOB},
            ),
            {A3},
            set(),
        )
    )
    return plan


async def seed(engine: AsyncEngine, clock: FrozenClock) -> list[Seeded]:
    ledger = Ledger(clock=clock, ids=IdGenerator(clock))
    sessions = session_factory(engine)
    seeded: list[Seeded] = []
    plan = seed_plan()
    # Several transactions, interleaved with the sequencer, so chain order spans batches.
    for start in range(0, len(plan), 5):
        async with unit_of_work(sessions) as session:
            for n, (event, accounts, orders) in enumerate(plan[start : start + 5], start):
                clock.advance(ns=1_000 + n)
                appended = await ledger.append(session, event)
                seeded.append(
                    Seeded(
                        n=n,
                        type=event.type,
                        actor_id=event.actor.id,
                        subject_id=event.subject.id if event.subject else None,
                        ns=appended.occurred_ns,
                        accounts=accounts,
                        orders=orders,
                        event_id=appended.event_id,
                    )
                )
        await LedgerSequencer(engine).drain()
    await settle(engine)
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT e.event_id, c.seq FROM audit_chain c JOIN audit_event e "
                "ON e.pk = c.event_pk"
            )
        )
        seqs = {event_id: seq for event_id, seq in rows}
    for item in seeded:
        item.seq = seqs[item.event_id]
    return seeded


@pytest.fixture
async def seeded(engine: AsyncEngine, clock: FrozenClock) -> list[Seeded]:
    return await seed(engine, clock)


async def everything(
    engine: AsyncEngine, where: EventFilter, sort: SortOrder, *, limit: int = 4
) -> list[FoundEvent]:
    """Every page of a search, following the cursors, each page on its own connection."""
    found: list[FoundEvent] = []
    cursor = None
    while True:
        async with engine.connect() as conn:
            await read_only(conn)
            async with conn.begin():
                page = await search_page(conn, where, sort=sort, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


Match = Callable[[Seeded], bool]
T0 = 1_767_225_600_000_000_000  # the FrozenClock's start

CASES: list[tuple[str, dict[str, str], Match]] = [
    ("nothing", {}, lambda e: True),
    (
        "type exact",
        {"event_type": "trading:order:placed"},
        lambda e: e.type == "trading:order:placed",
    ),
    (
        "type prefix 2",
        {"event_type": "trading:order:"},
        lambda e: e.type.startswith("trading:order:"),
    ),
    ("type prefix 1", {"event_type": "trading:"}, lambda e: e.type.startswith("trading:")),
    ("type unknown", {"event_type": "nobody:never:happened"}, lambda e: False),
    ("actor", {"actor_id": ALICE}, lambda e: e.actor_id == ALICE),
    ("actor system", {"actor_id": "tradeguard"}, lambda e: e.actor_id == "tradeguard"),
    ("subject", {"subject_id": A2}, lambda e: e.subject_id == A2),
    ("account", {"account_id": A2}, lambda e: A2 in e.accounts),
    ("account A3", {"account_id": A3}, lambda e: A3 in e.accounts),
    ("order", {"order_id": "ord-1"}, lambda e: "ord-1" in e.orders),
    ("order in list", {"order_id": "ord-5"}, lambda e: "ord-5" in e.orders),
    ("from", {"from_": str(T0 + 20_000)}, lambda e: e.ns >= T0 + 20_000),
    ("to", {"to": str(T0 + 20_000)}, lambda e: e.ns < T0 + 20_000),
    (
        "range",
        {"from_": str(T0 + 10_000), "to": str(T0 + 30_000)},
        lambda e: T0 + 10_000 <= e.ns < T0 + 30_000,
    ),
    (
        "account + prefix",
        {"account_id": A1, "event_type": "trading:order:"},
        lambda e: A1 in e.accounts and e.type.startswith("trading:order:"),
    ),
    (
        "account + order",
        {"account_id": A1, "order_id": "ord-0"},
        lambda e: A1 in e.accounts and "ord-0" in e.orders,
    ),
    (
        "account + other account's order",
        {"account_id": A2, "order_id": "ord-0"},
        lambda e: False,
    ),
    (
        "actor + range",
        {"actor_id": BOB, "from_": str(T0 + 5_000), "to": str(T0 + 40_000)},
        lambda e: e.actor_id == BOB and T0 + 5_000 <= e.ns < T0 + 40_000,
    ),
    (
        "order + type",
        {"order_id": "ord-3", "event_type": "trading:execution:created"},
        lambda e: "ord-3" in e.orders and e.type == "trading:execution:created",
    ),
    (
        "subject + account + actor",
        {"subject_id": A1, "account_id": A1, "actor_id": "tradeguard"},
        lambda e: e.subject_id == A1 and A1 in e.accounts and e.actor_id == "tradeguard",
    ),
    (
        "all",
        {
            "event_type": "trading:",
            "actor_id": ALICE,
            "subject_id": A1,
            "account_id": A1,
            "order_id": "ord-99",
            "from_": str(T0),
            "to": str(T0 + 10**12),
        },
        lambda e: (
            e.type.startswith("trading:")
            and e.actor_id == ALICE
            and e.subject_id == A1
            and A1 in e.accounts
            and "ord-99" in e.orders
            and T0 <= e.ns < T0 + 10**12
        ),
    ),
]


class TestFilters:
    @pytest.mark.spec("AUD-3", "AUD-4")
    async def test_each_filter_alone_and_combined_returns_exactly_the_matching_events(
        self, engine: AsyncEngine, seeded: list[Seeded]
    ) -> None:
        by_seq = {e.seq: e for e in seeded}
        wrong = []
        for name, filters, match in CASES:
            where = build_filter(**filters)
            expected = sorted((e.seq for e in seeded if match(e)), reverse=True)
            newest = await everything(engine, where, SortOrder.NEWEST)
            oldest = await everything(engine, where, SortOrder.OLDEST, limit=3)
            if [e.seq for e in newest] != expected:
                wrong.append(f"{name} newest: {[e.seq for e in newest]} != {expected}")
            if [e.seq for e in oldest] != expected[::-1]:
                wrong.append(f"{name} oldest: {[e.seq for e in oldest]} != {expected[::-1]}")
            for found in newest:
                document = json.loads(found.body)
                assert found.event_id == document["id"] == by_seq[found.seq].event_id
                assert found.type == document["type"]
                assert found.occurred_ns == int(document["ts"]) == by_seq[found.seq].ns
        assert wrong == [], "\n".join(wrong)

    async def test_the_seed_exercises_every_case(self, seeded: list[Seeded]) -> None:
        # A case that matches nothing by accident would prove nothing.
        empty = {"type unknown", "account + other account's order"}
        for name, _filters, match in CASES:
            assert any(match(e) for e in seeded) == (name not in empty), name
        assert len(seeded) > 20


class TestTimeRange:
    @pytest.mark.spec("AUD-3")
    async def test_from_is_inclusive_to_is_exclusive_to_the_nanosecond(
        self, engine: AsyncEngine, seeded: list[Seeded]
    ) -> None:
        middle = seeded[10]
        at = build_filter(from_=str(middle.ns), to=str(middle.ns + 1))
        before = build_filter(to=str(middle.ns))
        after = build_filter(from_=str(middle.ns + 1))
        assert [e.seq for e in await everything(engine, at, SortOrder.NEWEST)] == [middle.seq]
        assert middle.seq not in {e.seq for e in await everything(engine, before, SortOrder.NEWEST)}
        assert middle.seq not in {e.seq for e in await everything(engine, after, SortOrder.NEWEST)}
        # The same instants written in ISO-8601 with an offset select the same events.
        iso = build_filter(
            from_=ns_to_iso(middle.ns).replace("Z", "+00:00"), to=ns_to_iso(middle.ns + 1)
        )
        assert iso == at
        assert build_filter(from_=str(middle.ns), to=str(middle.ns)).from_ns == middle.ns
        empty = await everything(
            engine, build_filter(from_=str(middle.ns), to=str(middle.ns)), SortOrder.NEWEST
        )
        assert empty == []


class TestPages:
    async def test_a_cursor_continues_only_its_own_search(
        self, engine: AsyncEngine, seeded: list[Seeded]
    ) -> None:
        where = build_filter(account_id=A1)
        async with engine.connect() as conn:
            first = await search_page(conn, where, limit=2)
            assert first.next_cursor is not None
            with pytest.raises(SearchInputError, match="other filters or another order"):
                await search_page(
                    conn, build_filter(account_id=A2), limit=2, cursor=first.next_cursor
                )
            with pytest.raises(SearchInputError, match="other filters or another order"):
                await search_page(
                    conn, where, sort=SortOrder.OLDEST, limit=2, cursor=first.next_cursor
                )
            with pytest.raises(SearchInputError, match=r"^limit: "):
                await search_page(conn, where, limit=501)

    async def test_a_cursor_from_the_other_engine_is_refused(
        self, engine: AsyncEngine, seeded: list[Seeded]
    ) -> None:
        from tradeguard.ledger.search.query import encode_cursor  # noqa: PLC0415

        where = build_filter()
        postgres = engine.dialect.name == "postgresql"
        foreign = Position(seq=3, txid=None if postgres else 5, pk=3)
        cursor = encode_cursor(foreign, digest=where.digest(SortOrder.NEWEST))
        async with engine.connect() as conn:
            with pytest.raises(SearchInputError, match=r"^cursor: "):
                await search_page(conn, where, limit=2, cursor=cursor)

    async def test_only_chained_events_are_returned(
        self, engine: AsyncEngine, seeded: list[Seeded], clock: FrozenClock
    ) -> None:
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        async with unit_of_work(session_factory(engine)) as session:
            waiting = await ledger.append(
                session, order_event("trading:order:placed", Party("user", ALICE), A1, "ord-new")
            )
        where = build_filter(order_id="ord-new")
        assert await everything(engine, where, SortOrder.NEWEST) == []
        await settle(engine)
        [found] = await everything(engine, where, SortOrder.NEWEST)
        assert found.event_id == waiting.event_id
        assert found.seq == max(e.seq for e in seeded) + 1

    async def test_an_event_smuggled_behind_the_sequencer_is_never_a_result(
        self, engine: AsyncEngine, seeded: list[Seeded]
    ) -> None:
        # Inserted behind the sequencer's cursor with no chain row (audit verify names it):
        # the search leaves it out and still pages through everything else.
        await smuggle_event_behind_cursor(engine, event_id="0190a3b4-0000-7000-8000-00000000dead")
        for sort in SortOrder:
            found = await everything(engine, build_filter(), sort, limit=1)
            assert sorted(e.seq for e in found) == sorted(e.seq for e in seeded)
        typed = await everything(
            engine, build_filter(event_type="test:smuggled:event"), SortOrder.NEWEST
        )
        assert typed == []
        async with engine.connect() as conn:
            plan = await plan_export(conn, build_filter(), max_events=None)
        assert plan.count == len(seeded)

    async def test_a_rolled_back_event_leaves_no_reference(
        self, engine: AsyncEngine, seeded: list[Seeded], clock: FrozenClock
    ) -> None:
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))

        async def failing_change() -> None:
            async with unit_of_work(session_factory(engine)) as session:
                await ledger.append(
                    session,
                    order_event("trading:order:placed", Party("user", ALICE), A1, "ord-gone"),
                )
                raise RuntimeError("change failed")

        with pytest.raises(RuntimeError, match="change failed"):
            await failing_change()
        async with engine.connect() as conn:
            count = await conn.scalar(
                text("SELECT count(*) FROM audit_event_ref WHERE value = 'ord-gone'")
            )
        assert count == 0


async def writer(
    sessions: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    n: int,
    count: int,
    rng: random.Random,
) -> None:
    for i in range(count):
        async with unit_of_work(sessions) as session:
            for j in range(rng.randint(1, 3)):
                account = A1 if (i + j + n) % 2 else A2
                await ledger.append(
                    session,
                    order_event(
                        "trading:order:placed", Party("user", f"w{n}"), account, f"w{n}-{i}-{j}"
                    ),
                )
        await asyncio.sleep(rng.random() / 200)


class TestPagingUnderConcurrentAppends:
    @pytest.mark.spec("AUD-2", "AUD-3")
    async def test_pages_never_repeat_or_skip_while_events_are_appended_and_chained(
        self, engine: AsyncEngine
    ) -> None:
        clock = SystemClock()
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        sessions = session_factory(engine)
        rng = random.Random(9162)
        where = build_filter(account_id=A1)
        # Some history first, so the readers start in the middle of the chain.
        await writer(sessions, ledger, 99, 10, rng)
        await settle(engine)
        sequencer = LedgerSequencer(engine, interval_ms=1, batch_size=3)
        done = asyncio.Event()

        async def sequence() -> None:
            while not done.is_set():
                await sequencer.sequence_once()
                await asyncio.sleep(0.002)

        async def read(sort: SortOrder) -> list[int]:
            seen: list[int] = []
            cursor = None
            while True:
                async with engine.connect() as conn:
                    await read_only(conn)
                    async with conn.begin():
                        page = await search_page(conn, where, sort=sort, limit=3, cursor=cursor)
                seen += [e.seq for e in page.items]
                await asyncio.sleep(0.003)
                if page.next_cursor is None:
                    return seen
                cursor = page.next_cursor

        sequencing = asyncio.create_task(sequence())
        writers = [asyncio.create_task(writer(sessions, ledger, n, 12, rng)) for n in range(4)]
        newest_first = asyncio.create_task(read(SortOrder.NEWEST))
        oldest_first = asyncio.create_task(read(SortOrder.OLDEST))
        newest, oldest = await asyncio.gather(newest_first, oldest_first)
        await asyncio.gather(*writers)
        done.set()
        await sequencing
        await settle(engine)
        final = [e.seq for e in await everything(engine, where, SortOrder.OLDEST, limit=50)]

        assert newest == sorted(newest, reverse=True)
        assert len(set(newest)) == len(newest)
        # Newest first: everything matching at or below where the reader started, no gap.
        assert newest == [s for s in reversed(final) if s <= newest[0]]
        assert oldest == sorted(oldest)
        assert len(set(oldest)) == len(oldest)
        # Oldest first: a prefix of the final result (it may have stopped before new ones).
        assert oldest == final[: len(oldest)]
        assert len(final) > len(set(newest))  # events really were appended meanwhile


class TestExport:
    async def test_an_export_is_fixed_at_the_head_and_streams_in_pages(
        self, engine: AsyncEngine, seeded: list[Seeded], clock: FrozenClock
    ) -> None:
        where = build_filter(event_type="trading:")
        async with engine.connect() as conn:
            plan = await plan_export(conn, where, max_events=1000)
        # Chained after the plan: not part of this export.
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        async with unit_of_work(session_factory(engine)) as session:
            await ledger.append(
                session, order_event("trading:order:placed", Party("user", ALICE), A1, "ord-late")
            )
        await settle(engine)
        pages = [page async for page in export_events(engine, plan, batch=4)]
        seqs = [e.seq for page in pages for e in page]
        expected = sorted(e.seq for e in seeded if e.type.startswith("trading:"))
        assert seqs == expected
        assert plan.count == len(expected)
        assert plan.through is not None
        assert plan.through.seq == max(e.seq for e in seeded)
        assert all(len(page) <= 4 for page in pages)
        assert len(pages) == -(-len(expected) // 4)

    async def test_an_export_over_the_cap_is_refused_before_anything_is_read(
        self, engine: AsyncEngine, seeded: list[Seeded]
    ) -> None:
        where = build_filter(account_id=A1)
        matching = sum(1 for e in seeded if A1 in e.accounts)
        async with engine.connect() as conn:
            assert (await plan_export(conn, where, max_events=matching)).count == matching
            with pytest.raises(ExportTooLarge, match=f"more than {matching - 1} events match"):
                await plan_export(conn, where, max_events=matching - 1)

    async def test_an_empty_ledger_exports_nothing(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            plan = await plan_export(conn, build_filter(), max_events=10)
        assert plan.count == 0
        assert [page async for page in export_events(engine, plan)] == []


# The keys of a page must be read from index entries in result order: no scan, no sort.
# (The page's events are then fetched by primary key: at most a page of them.)
INDEXED = {
    "account": {"account_id": A1},
    "order": {"order_id": "ord-1"},
    "account + order": {"account_id": A1, "order_id": "ord-1"},
    "type": {"event_type": "trading:order:placed"},
    "actor": {"actor_id": ALICE},
    "actor + range": {"actor_id": ALICE, "from_": str(T0), "to": str(T0 + 10**9)},
    "subject": {"subject_id": A1},
    "everything": {},
}


async def plan_text(conn: AsyncConnection, where: EventFilter, sort: SortOrder) -> str:
    postgres = conn.dialect.name == "postgresql"
    after = Position(seq=10, txid=10**6 if postgres else None, pk=10)
    through = Position(seq=10**6, txid=10**9 if postgres else None, pk=10**6)
    query = page_keys_query(
        conn.dialect.name, where, sort=sort, through=through, after=after, limit=51
    )
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "postgresql":
        # Small tables make a sequential scan cheapest; forbid it, and sorting, to see
        # whether an index path in result order exists at all.
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        await conn.execute(text("SET LOCAL enable_sort = off"))
        await conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        rows = await conn.execute(text("EXPLAIN " + sql))
    else:
        rows = await conn.execute(text("EXPLAIN QUERY PLAN " + sql))
    return "\n".join(str(row[-1]) for row in rows)


class TestIndexedSearch:
    @pytest.mark.spec("AUD-3", "AUD-2")
    async def test_a_search_is_an_index_walk_in_result_order(
        self, engine: AsyncEngine, seeded: list[Seeded]
    ) -> None:
        postgres = engine.dialect.name == "postgresql"
        for name, filters in INDEXED.items():
            for sort in SortOrder:
                async with engine.connect() as conn, conn.begin():
                    plan = await plan_text(conn, build_filter(**filters), sort)
                where = f"{name} {sort.value}:\n{plan}"
                if postgres:
                    assert "Seq Scan" not in plan, where
                    assert "Sort" not in plan, where
                    assert "Index" in plan, where
                else:
                    assert "SCAN audit_event" not in plan, where
                    assert "SCAN r" not in plan, where
                    assert "TEMP B-TREE" not in plan, where
                    assert "USING" in plan, where
