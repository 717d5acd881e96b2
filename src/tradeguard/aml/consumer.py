"""The AML monitor's stream: tails the ledger by sequence number behind a stored checkpoint.

One pass is one transaction: lock the checkpoint, read the next batch of chained events,
record their movements, alerts and CTRs (each with its ledger event), move the checkpoint.
They commit together, so a crash mid-pass loses and repeats nothing. The rules' state is the
movements table itself (not memory), so a restarted monitor needs no replay: it goes on from
the checkpoint, and a movement read twice is recognised by its id and counted once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.aml import repository
from tradeguard.aml.service import AmlMonitor
from tradeguard.core.clock import Clock
from tradeguard.db.engine import read_only, unit_of_work
from tradeguard.ledger.service import chained_after, events_after

CONSUMER_NAME = "aml"
DEFAULT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class PassResult:
    events: int
    movements: int = 0
    alerts: int = 0
    folded: int = 0
    ctrs: int = 0
    skipped: int = 0


class AmlConsumer:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        monitor: AmlMonitor,
        batch_size: int = DEFAULT_BATCH,
        name: str = CONSUMER_NAME,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._monitor = monitor
        self._batch = batch_size
        self._name = name
        # The checkpoint this process last committed (None: not known yet).
        self._covered: int | None = None

    @property
    def batch_size(self) -> int:
        return self._batch

    async def run_once(self) -> PassResult:
        """Judge one batch of events after the checkpoint and move the checkpoint past it."""
        if await self._caught_up():
            return PassResult(0)
        async with unit_of_work(self._sessions) as session:
            now = self._clock.now_ns()
            mark = await repository.lock_checkpoint(session, self._name, now)
            batch = await events_after(session, after_seq=mark.last_seq, limit=self._batch)
            if not batch:
                self._covered = mark.last_seq
                return PassResult(0)
            self._covered = None
            result = await self._monitor.ingest(session, batch)
            mark.last_seq = batch[-1].seq
            mark.events_read += len(batch)
            mark.updated_ns = now
            committed = mark.last_seq
        self._covered = committed
        return PassResult(
            len(batch), result.movements, result.alerts, result.folded, result.ctrs, result.skipped
        )

    async def _caught_up(self) -> bool:
        """Nothing chained after what this process last read: a read-only look, so an idle
        monitor polling every second never takes SQLite's write lock. (If a monitor in
        another process moved the checkpoint, there are events after ours: we go on, and
        the locked checkpoint says where.)"""
        bind = self._sessions.kw.get("bind")
        if self._covered is None or not isinstance(bind, AsyncEngine):
            return False
        async with bind.connect() as conn:
            await read_only(conn)
            async with conn.begin():
                return not await chained_after(conn, self._covered)

    async def run(self) -> PassResult:
        """Pass until caught up with the chained ledger."""
        totals = [0, 0, 0, 0, 0, 0]
        while True:
            result = await self.run_once()
            for i, value in enumerate(
                (
                    result.events,
                    result.movements,
                    result.alerts,
                    result.folded,
                    result.ctrs,
                    result.skipped,
                )
            ):
                totals[i] += value
            if result.events < self._batch:
                return PassResult(*totals)
