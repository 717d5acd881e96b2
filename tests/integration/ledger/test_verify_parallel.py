"""`audit verify` in worker processes: whatever the tampering, the report is the serial one.

The chain of 60 events is verified by three workers (ranges 1-20, 21-40, 41-60) reading
runs of 7 rows (so run and range boundaries differ), and by this process alone; the two
reports must be equal, and name the sequence number a walk from the genesis names.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.ledger import (
    change_chain_behind_triggers,
    cut_chain_after,
    settle,
    tamper_event_body,
)
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.ledger import verify
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.verify import Failure, VerifyReport, verify_chain

EVENTS = 60
WORKERS = 3  # ranges 1-20, 21-40, 41-60


def order_event(n: int) -> LedgerEvent:
    return LedgerEvent(
        type="trading:order:placed",
        actor=Party("user", f"u{n % 3}"),
        subject=Party("order", f"o{n}"),
        data={"symbol": "AAPL", "quantity": n, "limit_price": "187.25"},
    )


@pytest.fixture(autouse=True)
def short_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "CHUNK", 7)


@pytest.fixture
async def chained(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> AsyncEngine:
    ledger = Ledger(clock=clock, ids=IdGenerator(clock))
    async with unit_of_work(sessions) as session:
        for n in range(EVENTS):
            await ledger.append(session, order_event(n))
    assert await settle(engine) == EVENTS
    return engine


async def body_at(engine: AsyncEngine, seq: int) -> bytes:
    async with engine.connect() as conn:
        body = (
            await conn.execute(
                text(
                    "SELECT e.body FROM audit_event e JOIN audit_chain c ON c.event_pk = e.pk "
                    "WHERE c.seq = :seq"
                ),
                {"seq": seq},
            )
        ).scalar_one()
    return bytes(body)


async def alter_body(engine: AsyncEngine, seq: int) -> None:
    original = await body_at(engine, seq)
    forged = original.replace(b'"limit_price":"187.25"', b'"limit_price":"1.25"')
    assert forged != original
    await tamper_event_body(engine, seq=seq, new_body=forged)


async def swap_bodies(engine: AsyncEngine, a: int, b: int) -> None:
    body_a, body_b = await body_at(engine, a), await body_at(engine, b)
    await tamper_event_body(engine, seq=a, new_body=body_b)
    await tamper_event_body(engine, seq=b, new_body=body_a)


async def swap_positions(engine: AsyncEngine, a: int, b: int) -> None:
    """Reorder: the chain rows at a and b trade sequence numbers (hashes and events kept)."""
    move = "UPDATE audit_chain SET seq = :to WHERE seq = :from"
    await change_chain_behind_triggers(
        engine,
        [
            (move, {"from": a, "to": -1}),
            (move, {"from": b, "to": a}),
            (move, {"from": -1, "to": b}),
        ],
    )


async def delete_row(engine: AsyncEngine, seq: int) -> None:
    await change_chain_behind_triggers(
        engine, [("DELETE FROM audit_chain WHERE seq = :seq", {"seq": seq})]
    )


async def forge_chain_hash(engine: AsyncEngine, seq: int) -> None:
    await change_chain_behind_triggers(
        engine,
        [("UPDATE audit_chain SET chain_hash = :h WHERE seq = :seq", {"h": bytes(32), "seq": seq})],
    )


Tamper = Callable[[AsyncEngine], Awaitable[None]]


async def two_altered(engine: AsyncEngine) -> None:
    await alter_body(engine, 45)
    await alter_body(engine, 25)


CASES: dict[str, tuple[Tamper, int, Failure]] = {
    "first event altered": (lambda e: alter_body(e, 1), 1, Failure.EVENT_ALTERED),
    "last event of a range altered": (lambda e: alter_body(e, 20), 20, Failure.EVENT_ALTERED),
    "first event of a range altered": (lambda e: alter_body(e, 21), 21, Failure.EVENT_ALTERED),
    "last event altered": (lambda e: alter_body(e, 60), 60, Failure.EVENT_ALTERED),
    "altered in two ranges": (two_altered, 25, Failure.EVENT_ALTERED),
    "chain hash forged at a boundary": (
        lambda e: forge_chain_hash(e, 20),
        20,
        Failure.CHAIN_BROKEN,
    ),
    "chain hash forged after a boundary": (
        lambda e: forge_chain_hash(e, 21),
        21,
        Failure.CHAIN_BROKEN,
    ),
    "pair reordered across a boundary": (
        lambda e: swap_positions(e, 20, 21),
        20,
        Failure.CHAIN_BROKEN,
    ),
    "bodies swapped across a boundary": (
        lambda e: swap_bodies(e, 40, 41),
        40,
        Failure.EVENT_ALTERED,
    ),
    "row deleted at the end of a range": (
        lambda e: delete_row(e, 20),
        20,
        Failure.MISSING_SEQUENCE,
    ),
    "row deleted at the start of a range": (
        lambda e: delete_row(e, 21),
        21,
        Failure.MISSING_SEQUENCE,
    ),
    "first row deleted": (lambda e: delete_row(e, 1), 1, Failure.MISSING_SEQUENCE),
    "row deleted at the end of a run": (lambda e: delete_row(e, 7), 7, Failure.MISSING_SEQUENCE),
    "run deleted inside a range": (
        lambda e: change_chain_behind_triggers(
            e, [("DELETE FROM audit_chain WHERE seq >= 29 AND seq <= 35", {})]
        ),
        29,
        Failure.MISSING_SEQUENCE,
    ),
    "last row deleted": (lambda e: cut_chain_after(e, seq=59), 60, Failure.MISSING_SEQUENCE),
}


LedgerRows = tuple[dict[int, tuple[int, bytes, bytes, int]], dict[int, bytes]]


async def ledger_rows(engine: AsyncEngine) -> LedgerRows:
    """Every chain row by seq, and every event body by pk: what a tampering changes."""
    async with engine.connect() as conn:
        chain = (
            await conn.execute(
                text("SELECT seq, event_pk, leaf_hash, chain_hash, sequenced_ns FROM audit_chain")
            )
        ).all()
        bodies = (await conn.execute(text("SELECT pk, body FROM audit_event"))).all()
    return (
        {int(r[0]): (int(r[1]), bytes(r[2]), bytes(r[3]), int(r[4])) for r in chain},
        {int(pk): bytes(body) for pk, body in bodies},
    )


async def restore_ledger_rows(engine: AsyncEngine, rows: LedgerRows) -> None:
    """Put back, behind the append-only triggers, the chain rows and bodies that differ from
    `rows` (and drop chain rows `rows` does not hold)."""
    chain, bodies = rows
    now_chain, now_bodies = await ledger_rows(engine)
    changed = sorted(s for s in chain.keys() | now_chain.keys() if chain.get(s) != now_chain.get(s))
    altered = [pk for pk, body in bodies.items() if now_bodies.get(pk) != body]
    tables = ("audit_chain", "audit_event")
    async with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        saved: list[str] = []
        if postgres:
            for table in tables:
                await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            triggers = (
                await conn.execute(
                    text(
                        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                        "AND tbl_name IN ('audit_chain', 'audit_event')"
                    )
                )
            ).all()
            for name, sql in triggers:
                await conn.execute(text(f'DROP TRIGGER "{name}"'))
                saved.append(sql)
        for seq in changed:
            await conn.execute(text("DELETE FROM audit_chain WHERE seq = :seq"), {"seq": seq})
        for seq in changed:
            if seq in chain:
                event_pk, leaf, chain_hash, sequenced_ns = chain[seq]
                await conn.execute(
                    text(
                        "INSERT INTO audit_chain (seq, event_pk, leaf_hash, chain_hash, "
                        "sequenced_ns) VALUES (:seq, :pk, :leaf, :chain, :ns)"
                    ),
                    {
                        "seq": seq,
                        "pk": event_pk,
                        "leaf": leaf,
                        "chain": chain_hash,
                        "ns": sequenced_ns,
                    },
                )
        for pk in altered:
            await conn.execute(
                text("UPDATE audit_event SET body = :body WHERE pk = :pk"),
                {"body": bodies[pk], "pk": pk},
            )
        if postgres:
            for table in tables:
                await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        else:
            for sql in saved:
                await conn.execute(text(sql))


async def serial_and_parallel(engine: AsyncEngine) -> tuple[VerifyReport, VerifyReport]:
    return await verify_chain(engine, workers=1), await verify_chain(engine, workers=WORKERS)


class TestParallelVerifyNamesWhatSerialNames:
    @pytest.mark.spec("AUD-2")
    async def test_untouched_chain_verifies_with_progress_to_the_end(
        self, chained: AsyncEngine
    ) -> None:
        seen: list[tuple[int, int]] = []
        parallel = await verify_chain(
            chained, workers=WORKERS, progress=lambda done, total: seen.append((done, total))
        )
        serial = await verify_chain(chained, workers=1)
        assert parallel.ok, parallel.detail
        assert parallel == serial
        assert parallel.verified == EVENTS
        assert seen[-1] == (EVENTS, EVENTS)
        assert all(total == EVENTS for _, total in seen)

    @pytest.mark.spec("AUD-2")
    async def test_tampering_is_named_exactly_as_the_serial_walk_names_it(
        self, chained: AsyncEngine
    ) -> None:
        """Every case of CASES, one at a time, on the same chain: the rows a case touched are
        put back before the next, and the chain is shown whole again."""
        untouched = await ledger_rows(chained)
        failures: list[str] = []
        for case, (tamper, first_bad, failure) in CASES.items():
            await tamper(chained)
            serial, parallel = await serial_and_parallel(chained)
            if parallel != serial:
                failures.append(f"{case}: parallel {parallel} != serial {serial}")
            named = (parallel.ok, parallel.first_bad_seq, parallel.failure, parallel.verified)
            if named != (False, first_bad, failure, first_bad - 1):
                failures.append(
                    f"{case}: wanted sequence {first_bad} {failure} after {first_bad - 1} "
                    f"verified, got {named}"
                )
            if f"sequence {first_bad}" not in parallel.detail:
                failures.append(f"{case}: detail {parallel.detail!r} names no sequence {first_bad}")
            await restore_ledger_rows(chained, untouched)
            if await ledger_rows(chained) != untouched:
                pytest.fail(f"{case}: the chain could not be restored")
            whole = await verify_chain(chained, workers=1)
            if not whole.ok or whole.verified != EVENTS:
                pytest.fail(f"{case}: the restored chain does not verify: {whole.detail}")
        assert not failures, "\n".join(failures)

    @pytest.mark.spec("AUD-2")
    async def test_head_not_matching_the_recorded_one_fails_in_parallel(
        self, chained: AsyncEngine
    ) -> None:
        async with chained.begin() as conn:
            await conn.execute(
                text("UPDATE audit_sequencer_state SET last_chain_hash = :h"), {"h": bytes(32)}
            )
        serial, parallel = await serial_and_parallel(chained)
        assert parallel == serial
        assert (parallel.first_bad_seq, parallel.failure) == (EVENTS, Failure.HEAD_MISMATCH)

    @pytest.mark.parametrize("interpreter", ["/bin/false", "/nonexistent/python"])
    async def test_a_worker_that_dies_or_never_starts_has_its_range_verified_in_process(
        self,
        chained: AsyncEngine,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        interpreter: str,
    ) -> None:
        await alter_body(chained, 30)
        serial = await verify_chain(chained, workers=1)
        # Every worker exits at once with status 1 and no result, or cannot be started.
        monkeypatch.setattr(sys, "executable", interpreter)
        with caplog.at_level(logging.WARNING, logger="tradeguard.ledger.verification"):
            parallel = await verify_chain(chained, workers=WORKERS)
        assert parallel == serial
        assert (parallel.first_bad_seq, parallel.failure) == (30, Failure.EVENT_ALTERED)
        warned = {
            r.getMessage().split(" failed")[0].split(" not started")[0] for r in caplog.records
        }
        # The walk stops in the second range; the third worker may be ended before it reports.
        assert {
            "verification worker for sequence 1..20",
            "verification worker for sequence 21..40",
        } <= warned


class TestWhenWorkersAreUsed:
    async def test_small_chains_stay_in_process_and_large_ones_use_the_cores(self) -> None:
        assert verify._worker_count(None, verify.PARALLEL_MIN_EVENTS - 1) == 1
        assert verify._worker_count(None, verify.PARALLEL_MIN_EVENTS) == min(
            os.cpu_count() or 1, verify.MAX_WORKERS
        )
        assert verify._worker_count(8, 3) == 3
        assert verify._worker_count(0, 100) == 1

    async def test_an_in_memory_sqlite_ledger_is_verified_in_process(self) -> None:
        engine = create_engine("sqlite:///:memory:")
        try:
            await upgrade(engine)
            clock = FrozenClock()
            ledger = Ledger(clock=clock, ids=IdGenerator(clock))
            async with unit_of_work(session_factory(engine)) as session:
                for n in range(5):
                    await ledger.append(session, order_event(n))
            await settle(engine)
            report = await verify_chain(engine, workers=WORKERS)
            assert report.ok, report.detail
            assert report.verified == 5
        finally:
            await engine.dispose()


@pytest.mark.postgres
class TestPostgresEventsChainedOutOfPkOrder:
    async def test_a_run_whose_events_spread_wide_is_read_by_key_and_verifies(
        self, pg_engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        """A transaction that took its id first but appended last is chained first
        (events go in transaction order): its pk lies far from the rest of its run."""
        sessions = session_factory(pg_engine)
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        async with unit_of_work(sessions) as early:
            await early.execute(text("SELECT pg_current_xact_id()"))
            async with unit_of_work(sessions) as late:
                for n in range(40):
                    await ledger.append(late, order_event(n))
            await ledger.append(early, order_event(99))
        await settle(pg_engine)
        async with pg_engine.connect() as conn:
            first_pk, max_pk = (
                await conn.execute(
                    text(
                        "SELECT (SELECT event_pk FROM audit_chain WHERE seq = 1), "
                        "max(event_pk) FROM audit_chain"
                    )
                )
            ).one()
        assert first_pk == max_pk  # the late event leads the chain
        serial, parallel = await serial_and_parallel(pg_engine)
        assert parallel.ok, parallel.detail
        assert parallel == serial
        await alter_body(pg_engine, 2)
        serial, parallel = await serial_and_parallel(pg_engine)
        assert parallel == serial
        assert (parallel.first_bad_seq, parallel.failure) == (2, Failure.EVENT_ALTERED)
