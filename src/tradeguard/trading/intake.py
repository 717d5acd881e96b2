"""Group commit for order placement: many orders, one transaction, one disk flush.

A commit that survives a power cut costs a disk flush (about 4 ms here on SQLite with
`synchronous=FULL`, similar for PostgreSQL's WAL flush), and SQLite writes one transaction at
a time: one order per transaction caps a process at a few hundred orders a second however
fast the checks are. The intake queues the orders that arrive while a transaction is being
written and writes the next ones together, one commit for all of them, and only then is any
of them answered. One order's refusal or error undoes only its own work: each order stages
its rows and they join the transaction's only once it went through (`staged`; the order
desk's rows are then written together before the commit: trading/repository.py
`StagedWrites`), or, for work that writes as it goes, each runs in its own savepoint. So
"acknowledged means committed" still holds order by order: no caller hears of its order
before the transaction holding it is durable.

Locks every order needs (the trading-control row, taken shared) are taken once per
transaction, before the first order (`prologue`): a lock taken inside a savepoint that is
rolled back would be released on PostgreSQL while the later orders rely on it.

An order whose caller went away before its turn (the request was cancelled) is skipped, never
placed. When the batch's transaction itself fails (a database error, not a refusal), its
orders are tried again one transaction each, so a fault in one cannot fail the others.

Nobody is told "failed" for an order that stands, nor "placed" for one that does not. If the
writer is cancelled (the process stops): before its batch's commit, its callers hear
`WriterStopped` (not placed); during a SQLite commit, the commit runs to its end on the
connection's thread and its callers hear the outcome (db/sqlite_inloop.py); during a
PostgreSQL commit, whose answer may never come, they hear `CommitInDoubt`. Orders still
queued hear `WriterStopped`. The same order sent again (same client order id) is answered as
it stands.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.core.errors import ServiceUnavailable
from tradeguard.db.engine import holds_write_gate, is_sqlite, unit_of_work

logger = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[T]]

MAX_BATCH = 64


class ChangesLeftBehind(Exception):
    """Refused staged work left changes in the session (a bug in the work): the batch holding
    it cannot be committed."""


class WriterStopped(ServiceUnavailable):
    """The intake stopped (the process is shutting down) before this work was written."""

    slug = "intake-stopped"
    title = "Not placed: the service is stopping; send the order again"


class CommitInDoubt(ServiceUnavailable):
    """The transaction holding this work was interrupted while it committed: it may stand
    or not. Sending the same order again (same client order id) answers which."""

    slug = "outcome-unknown"
    title = "The outcome is unknown: send the order again with the same client_order_id"


@dataclass(slots=True)
class _Job(Generic[T]):
    work: Work[T]
    future: asyncio.Future[T]
    result: T | None = None
    error: BaseException | None = None


class GroupCommit(Generic[T]):
    """Runs units of work in shared transactions; `run` answers once its own is committed."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        on_commit: Callable[[T], None] | None = None,
        prologue: Work[object] | None = None,
        epilogue: Work[object] | None = None,
        staged: bool = False,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """`on_commit` runs for each result once its transaction committed, before anyone is
        answered (so the next batch already sees what this one left in memory). `prologue`
        runs at the start of every transaction, outside the orders' savepoints, `epilogue`
        at its end, before the commit.

        `staged`: the work writes nothing itself until the epilogue (it stages its rows and
        keeps them only once it went through), so a refusal leaves nothing to undo and needs
        no savepoint: two statements fewer per order."""
        self._sessions = sessions
        self._on_commit = on_commit
        self._prologue = prologue
        self._epilogue = epilogue
        self._staged = staged
        self._max_batch = max_batch
        self._pending: deque[_Job[T]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0
        self.jobs = 0

    async def run(self, work: Work[T]) -> T:
        bind = self._sessions.kw.get("bind")
        if isinstance(bind, AsyncEngine) and holds_write_gate(bind):
            # The caller is inside a transaction of its own: queueing behind it would wait
            # forever, so this one is written alone, as before group commit.
            async with unit_of_work(self._sessions) as session:
                await self._begin(session)
                result = await work(session)
                await self._end(session)
            if self._on_commit is not None:
                self._on_commit(result)
            return result
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(work, loop.create_future())
        self._pending.append(job)
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            # A fresh context: the writer serves many requests, none of whose context
            # (request id, held database turn) is its own.
            self._writer = loop.create_task(self._write(), context=contextvars.Context())
        return await job.future

    async def _write(self) -> None:
        try:
            while self._pending:
                batch: list[_Job[T]] = []
                while self._pending and len(batch) < self._max_batch:
                    job = self._pending.popleft()
                    if not job.future.done():  # its caller is gone: never placed
                        batch.append(job)
                if batch:
                    await self._write_batch(batch)
                # A cancellation that came while a commit ran was held back until its
                # callers heard the outcome (db/sqlite_inloop.py); honour it now.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError
        except asyncio.CancelledError:
            # The process is stopping: whoever is still queued was never placed.
            while self._pending:
                job = self._pending.popleft()
                job.error = WriterStopped()
                self._answer(job)
            raise

    async def _write_batch(self, batch: list[_Job[T]]) -> None:
        committing = committed = False
        try:
            async with unit_of_work(self._sessions) as session:
                await self._begin(session)
                for job in batch:
                    await self._attempt(session, job, alone=False)
                await self._end(session)
                committing = True
                await session.commit()
                # A cancellation that came while the COMMIT ran lands after it (as the session
                # closes): the batch stands and its callers are told so.
                committed = True
        except (DBAPIError, ChangesLeftBehind):
            # Before the commit, or at it. Tried again one transaction each: an order the
            # failed commit did write after all (PostgreSQL's answer lost with its
            # connection) is found by its client order id and answered as it stands.
            logger.warning("order intake: a batch of %d failed; retrying one by one", len(batch))
            await self._one_by_one(batch)
            return
        except asyncio.CancelledError:
            if committed:
                self._succeeded(batch)
            else:
                self._stopped(batch, committing=committing)
            raise
        except Exception as exc:  # the prologue or the commit failed: nobody's order stands
            for job in batch:
                job.error = exc
                self._answer(job)
            return
        self._succeeded(batch)

    def _succeeded(self, batch: list[_Job[T]]) -> None:
        self.batches += 1
        self.jobs += len(batch)
        for job in batch:
            self._committed(job)
        for job in batch:
            self._answer(job)

    async def _one_by_one(self, batch: list[_Job[T]]) -> None:
        for job in batch:
            job.error, job.result = None, None
            try:
                async with unit_of_work(self._sessions) as session:
                    await self._begin(session)
                    await self._attempt(session, job, alone=True)
                    if job.error is None:
                        await self._end(session)
                    else:  # refused: whatever it did is undone with its transaction
                        await session.rollback()
            except Exception as exc:  # a database error, or the prologue failed
                job.error = exc
            self._committed(job)
            self._answer(job)

    def _stopped(self, batch: list[_Job[T]], *, committing: bool) -> None:
        """Answer a batch whose writer was cancelled (the process is stopping)."""
        # SQLite's commit, once started, runs to its end and reports it (db/sqlite_inloop.py),
        # so a batch cancelled in it is answered by `_succeeded`: cancelled here, it never
        # started. A PostgreSQL commit cancelled before its answer
        # came may stand or not.
        bind = self._sessions.kw.get("bind")
        in_doubt = committing and not (isinstance(bind, AsyncEngine) and is_sqlite(bind))
        for job in batch:
            if not in_doubt:
                job.error = WriterStopped()
            elif job.error is None:  # a refusal wrote nothing: it holds either way
                job.error = CommitInDoubt()
            self._answer(job)

    async def _begin(self, session: AsyncSession) -> None:
        if self._prologue is not None:
            await self._prologue(session)

    async def _end(self, session: AsyncSession) -> None:
        if self._epilogue is not None:
            await self._epilogue(session)

    def _committed(self, job: _Job[T]) -> None:
        if self._on_commit is not None and job.error is None and job.result is not None:
            self._on_commit(job.result)

    async def _attempt(self, session: AsyncSession, job: _Job[T], *, alone: bool) -> None:
        if not self._staged:
            try:
                async with session.begin_nested():
                    job.result = await job.work(session)
            except DBAPIError:
                raise
            except Exception as exc:  # a refusal: its savepoint is undone, the batch goes on
                job.error = exc
            return
        try:
            job.result = await job.work(session)
        except DBAPIError:
            raise
        except Exception as exc:  # a refusal: it staged nothing that is kept
            job.error = exc
            if not alone and (session.new or session.dirty or session.deleted):
                # It changed the session's objects after all, which the commit would write:
                # the batch is undone and its work done again, each in a transaction alone.
                raise ChangesLeftBehind from exc

    @staticmethod
    def _answer(job: _Job[T]) -> None:
        if job.future.done():
            return
        if isinstance(job.error, asyncio.CancelledError):
            job.future.cancel()
        elif job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)  # type: ignore[arg-type]
