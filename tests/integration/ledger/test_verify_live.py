"""`audit verify` on a live ledger: the sequencer keeps committing while verification runs."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.ledger import settle
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.ledger import repository
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.verify import verify_chain

# Every repository read verify_chain makes: a sequencer commit is slipped in before each.
VERIFY_READS = (
    "load_state",
    "count_after_cursor",
    "count_through_cursor",
    "first_unchained_behind_cursor",
    "chain_range",
)


def ledger_for_tests() -> Ledger:
    clock = SystemClock()
    return Ledger(clock=clock, ids=IdGenerator(clock))


async def append(sessions: async_sessionmaker[AsyncSession], ledger: Ledger, n: int) -> None:
    async with unit_of_work(sessions) as session:
        for i in range(n):
            await ledger.append(
                session,
                LedgerEvent(type="trading:order:placed", actor=Party("user", "u"), data={"i": i}),
            )


def interleave_before_each_read(
    monkeypatch: pytest.MonkeyPatch, between: Callable[[], Awaitable[None]]
) -> list[str]:
    """Run `between` (on other connections) before every read verify makes; log the reads."""
    calls: list[str] = []
    busy = False

    def wrap(name: str, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            nonlocal busy
            if not busy:  # the sequencer reads through the same module: no recursion
                busy = True
                try:
                    calls.append(name)
                    await between()
                finally:
                    busy = False
            return await original(*args, **kwargs)

        return wrapped

    for name in VERIFY_READS:
        monkeypatch.setattr(repository, name, wrap(name, getattr(repository, name)))
    return calls


class TestVerifyWhileSequencing:
    @pytest.mark.spec("AUD-2")
    async def test_sequencer_commits_between_verify_reads_raise_no_false_alarm(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        ledger = ledger_for_tests()
        sequencer = LedgerSequencer(engine)
        await append(sessions, ledger, 5)
        await settle(engine)

        async def append_and_sequence() -> None:
            await append(sessions, ledger, 3)
            assert await sequencer.drain() >= 3

        calls = interleave_before_each_read(monkeypatch, append_and_sequence)
        report = await verify_chain(engine)
        monkeypatch.undo()

        assert "load_state" in calls
        assert "chain_range" in calls
        assert report.ok, report.detail
        # Exactly the chain as it stood when verification read the sequencer's state.
        assert report.verified == 5 + 3
        assert (await verify_chain(engine)).verified == 5 + 3 * len(calls)

    @pytest.mark.spec("AUD-2")
    async def test_verify_runs_clean_against_a_busy_sequencer(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        ledger = ledger_for_tests()
        sequencer = LedgerSequencer(engine, batch_size=3)
        stop = asyncio.Event()

        async def writer_and_sequencer() -> None:
            while not stop.is_set():
                await append(sessions, ledger, 2)
                await sequencer.sequence_once()
                await asyncio.sleep(0)

        await append(sessions, ledger, 10)
        await settle(engine)
        background = asyncio.create_task(writer_and_sequencer())
        try:
            reports = []
            for _ in range(40):
                reports.append(await verify_chain(engine))
                await asyncio.sleep(0.002)
        finally:
            stop.set()
            await background
        assert [r.detail for r in reports if not r.ok] == []
        assert reports[-1].verified > reports[0].verified >= 10


@pytest.fixture
async def sqlite_file(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, Path]]:
    path = tmp_path / "ledger.db"
    eng = create_engine(f"sqlite:///{path}")
    await upgrade(eng)
    yield eng, path
    await eng.dispose()


class TestSqliteVerifyDoesNotBlockWriters:
    @pytest.mark.spec("AUD-2")
    async def test_a_writer_commits_while_verify_is_reading(
        self, sqlite_file: tuple[AsyncEngine, Path]
    ) -> None:
        engine, path = sqlite_file
        await append(session_factory(engine), ledger_for_tests(), 3)
        await settle(engine)
        committed: list[int] = []

        def write_from_another_connection(done: int, _total: int) -> None:
            # Called inside verify's transaction. A short busy timeout: if verify held the
            # write lock (BEGIN IMMEDIATE) this fails with "database is locked".
            other = sqlite3.connect(path, timeout=0.5, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute(
                    "INSERT INTO audit_event (event_id, event_type, occurred_ns, body) "
                    "VALUES (?, 'test:writer:committed', 1, x'7b7d')",
                    (f"w-{done}-{len(committed)}",),
                )
                other.execute("COMMIT")
                committed.append(done)
            finally:
                other.close()

        report = await verify_chain(engine, progress=write_from_another_connection)
        assert report.ok, report.detail
        assert committed == [3]
        # The write landed after verify's snapshot: counted from the next run on.
        assert report.unsequenced == 0
        assert (await verify_chain(engine)).unsequenced == 1
