"""Concurrent appends on PostgreSQL produce one gap-free, verifiable chain (AUD-1, AUD-2)."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.support.ledger import drain_waiting, settle, writer_in_flight
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import session_factory, unit_of_work
from tradeguard.ledger import repository
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.verify import verify_chain

WRITERS = 24
EVENTS_PER_WRITER = 15


async def chained_types(conn: AsyncConnection) -> list[str]:
    bodies = (
        await conn.execute(
            text(
                "SELECT e.body FROM audit_chain c JOIN audit_event e ON e.pk = c.event_pk "
                "ORDER BY c.seq"
            )
        )
    ).scalars()
    return [json.loads(body)["type"] for body in bodies]


@pytest.mark.postgres
class TestConcurrentAppends:
    @pytest.mark.spec("AUD-1", "AUD-2")
    async def test_many_transactions_yield_one_gap_free_verifiable_chain(
        self, pg_engine: AsyncEngine
    ) -> None:
        clock = SystemClock()
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        sessions = session_factory(pg_engine)
        rng = random.Random(6962)
        sequencer = LedgerSequencer(pg_engine, interval_ms=1, batch_size=7)
        slow_started = asyncio.Event()
        release_slow = asyncio.Event()

        async def writer(n: int) -> None:
            async with unit_of_work(sessions) as session:
                for i in range(EVENTS_PER_WRITER):
                    await ledger.append(
                        session,
                        LedgerEvent(
                            type="trading:order:placed",
                            actor=Party("user", f"w{n}"),
                            data={"writer": n, "i": i},
                        ),
                    )
                    await asyncio.sleep(rng.random() / 500)

        async def slow_writer() -> None:
            # Takes its transaction id first and commits last: it must still be chained.
            async with unit_of_work(sessions) as session:
                await ledger.append(session, LedgerEvent(type="test:slow:first", data={}))
                slow_started.set()
                await release_slow.wait()

        async def run_sequencer_until(done: asyncio.Event) -> int:
            total = 0
            while not done.is_set():
                total += await sequencer.sequence_once()
                await asyncio.sleep(0.001)
            return total

        writers_done = asyncio.Event()
        slow = asyncio.create_task(slow_writer())
        await slow_started.wait()
        seq_task = asyncio.create_task(run_sequencer_until(writers_done))
        await asyncio.gather(*(writer(n) for n in range(WRITERS)))
        chained_while_slow_open = await sequencer.sequence_once()
        release_slow.set()
        await slow
        writers_done.set()
        await seq_task
        await settle(pg_engine)

        total = WRITERS * EVENTS_PER_WRITER + 1
        report = await verify_chain(pg_engine)
        assert report.ok, report.detail
        assert report.verified == total
        assert report.unsequenced == 0
        # The slow transaction held the horizon back, so nothing after it was chained early.
        assert chained_while_slow_open == 0
        async with pg_engine.connect() as conn:
            seqs = (await conn.execute(text("SELECT seq FROM audit_chain ORDER BY seq"))).scalars()
            assert list(seqs) == list(range(1, total + 1))
            first = (
                await conn.execute(
                    text(
                        "SELECT e.body FROM audit_chain c JOIN audit_event e "
                        "ON e.pk = c.event_pk WHERE c.seq = 1"
                    )
                )
            ).scalar_one()
        assert json.loads(first)["type"] == "test:slow:first"

    @pytest.mark.spec("AUD-1", "AUD-2")
    async def test_sequencer_chains_everything_when_the_default_is_repeatable_read(
        self, pg_engine: AsyncEngine
    ) -> None:
        # The sequencer relies on each statement taking a fresh snapshot; a REPEATABLE READ
        # default (server or engine) must not leak into it.
        repeatable = pg_engine.execution_options(isolation_level="REPEATABLE READ")
        async with repeatable.connect() as conn:
            level = (await conn.execute(text("SHOW transaction_isolation"))).scalar_one()
        assert level == "repeatable read"
        clock = SystemClock()
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        sessions = session_factory(repeatable)
        rng = random.Random(8785)

        async def writer(n: int) -> None:
            for i in range(EVENTS_PER_WRITER):
                async with unit_of_work(sessions) as session:
                    await ledger.append(
                        session, LedgerEvent(type="trading:order:placed", data={"w": n, "i": i})
                    )
                await asyncio.sleep(rng.random() / 500)

        async def sequencer_loop(done: asyncio.Event) -> None:
            # sequence_once, not run_forever: a failed pass must fail the test.
            sequencer = LedgerSequencer(repeatable, batch_size=5)
            while not done.is_set():
                await sequencer.sequence_once()
                await asyncio.sleep(0.001)

        done = asyncio.Event()
        loops = [asyncio.create_task(sequencer_loop(done)) for _ in range(3)]
        try:
            await asyncio.gather(*(writer(n) for n in range(WRITERS)))
        finally:
            done.set()
            await asyncio.gather(*loops)
        await settle(repeatable)

        total = WRITERS * EVENTS_PER_WRITER
        report = await verify_chain(repeatable)
        assert report.ok, report.detail
        assert (report.verified, report.unsequenced) == (total, 0)
        async with pg_engine.connect() as conn:
            unchained = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM audit_event e WHERE NOT EXISTS "
                        "(SELECT 1 FROM audit_chain c WHERE c.event_pk = e.pk)"
                    )
                )
            ).scalar_one()
        assert unchained == 0


@pytest.mark.postgres
class TestWritersInFlight:
    """Other clients writing to the same database (requests, workers, another process) hold
    back only the events that committed after their own transaction began."""

    @pytest.mark.spec("AUD-1")
    async def test_events_committed_before_two_writers_in_flight_are_chained_at_once(
        self, pg_engine: AsyncEngine
    ) -> None:
        clock = SystemClock()
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        async with unit_of_work(session_factory(pg_engine)) as session:
            await ledger.append(session, LedgerEvent(type="test:fast:committed", data={}))
        async with writer_in_flight(pg_engine) as older, writer_in_flight(pg_engine):
            # The newer writer's id is above the snapshot's xmax (nothing newer finished):
            # it must not be read as an id of the previous epoch, which would put the
            # horizon below every event and chain nothing while two writers are busy.
            async with pg_engine.connect() as conn, conn.begin():
                horizon = await repository.transaction_horizon(conn)
                committed = (
                    await conn.execute(text("SELECT max(txid) FROM audit_event"))
                ).scalar_one()
            assert committed < horizon <= older
            assert await LedgerSequencer(pg_engine).sequence_once() == 1

    @pytest.mark.spec("AUD-1")
    async def test_drain_waits_for_an_older_writer_then_chains_both_in_transaction_order(
        self, pg_engine: AsyncEngine
    ) -> None:
        clock = SystemClock()
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        sessions = session_factory(pg_engine)
        with drain_waiting() as waiting:
            waited = asyncio.create_task(waiting.wait())
            try:
                async with sessions() as slow, slow.begin():
                    # The older writer takes its transaction id first and commits last.
                    await ledger.append(slow, LedgerEvent(type="test:slow:first", data={}))
                    async with unit_of_work(sessions) as session:
                        await ledger.append(
                            session, LedgerEvent(type="test:fast:committed", data={})
                        )
                    sequencer = LedgerSequencer(pg_engine, interval_ms=5)
                    drain = asyncio.create_task(sequencer.drain())
                    await asyncio.wait({drain, waited}, return_when=asyncio.FIRST_COMPLETED)
                    # Drain does not return while an event that committed before it was
                    # called is held back (the CLI's "chain what committed" relies on it).
                    assert not drain.done(), "drain returned with a committed event unchained"
                assert await drain == 2
            finally:
                waited.cancel()
        async with pg_engine.connect() as conn:
            assert await chained_types(conn) == ["test:slow:first", "test:fast:committed"]
