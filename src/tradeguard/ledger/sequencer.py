"""The sequencer: gives committed events their place in the hash chain, in order.

On PostgreSQL an event is chained only once every transaction that could still insert an
event ordered before it has finished: events are ordered by (inserting transaction id, pk)
and only those below the transaction horizon (the oldest running writer) are taken, under
READ COMMITTED so the events read after the horizon include everything below it. So a slow
transaction that commits late is never skipped, and nothing waits on a lock while a request
is open. The delay is bounded by the sequencer interval plus the longest open transaction.
On SQLite the sequencer takes the single write lock, so every lower pk has committed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tradeguard.core.clock import Clock, SystemClock
from tradeguard.core.workers import (
    BackoffPolicy,
    FailureObserver,
    FailureTracker,
    run_until_stopped,
)
from tradeguard.db.availability import unavailable_reason
from tradeguard.db.engine import write_gate
from tradeguard.ledger import repository
from tradeguard.ledger.chain import chain_hash, leaf_hash
from tradeguard.ledger.tree.store import extend_tree

log = logging.getLogger(__name__)

DEFAULT_BATCH = 5_000
COMPONENT = "ledger-sequencer"
# A failed pass is retried after 0.5 s, 1 s, 2 s, ... and at most every 30 s: events keep
# committing meanwhile and are chained in one go once the database answers again.
BACKOFF = BackoffPolicy(base_seconds=0.5, cap_seconds=30.0)


class LedgerSequencer:
    """Integrates committed events into the chain; safe to run in several processes."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        interval_ms: int = 50,
        batch_size: int = DEFAULT_BATCH,
        clock: Clock | None = None,
    ) -> None:
        self._engine = engine
        self._interval = interval_ms / 1000
        self._batch = batch_size
        self._clock = clock or SystemClock()

    async def sequence_once(self) -> int:
        """Chain up to one batch of committed events; return how many were chained."""
        async with write_gate(self._engine), self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # Each statement must take a fresh snapshot: the horizon is computed from the
                # running transactions, and the events read after it must include everything
                # that finished before. REPEATABLE READ (a server or engine default) would
                # freeze the snapshot at the advisory lock and silently skip such events.
                await conn.execution_options(isolation_level="READ COMMITTED")
            async with conn.begin():
                return await self._sequence(conn)

    async def _sequence(self, conn: AsyncConnection) -> int:
        await repository.lock_sequencer(conn)
        state = await repository.load_state(conn)
        horizon = None
        if conn.dialect.name == "postgresql":
            horizon = await repository.transaction_horizon(conn)
        events = await repository.unsequenced_events(
            conn, state, horizon=horizon, limit=self._batch
        )
        if not events:
            return 0
        now = self._clock.now_ns()
        seq, previous = state.last_seq, state.last_chain_hash
        rows = []
        for event in events:
            seq += 1
            body = event.body
            if not isinstance(body, bytes | bytearray | memoryview):
                # Only a row typed in by hand on SQLite holds TEXT (or a number) there: it is
                # chained as its text, so the ledger goes on and `audit verify` names it
                # (ledger/chain.py stored_body), instead of every later event waiting.
                body = str(body).encode()
            leaf = leaf_hash(bytes(body))
            previous = chain_hash(previous, seq, leaf)
            rows.append(
                {
                    "seq": seq,
                    "event_pk": event.pk,
                    "leaf_hash": leaf,
                    "chain_hash": previous,
                    "sequenced_ns": now,
                }
            )
        await repository.insert_chain_rows(conn, rows)
        # The Merkle tree grows in the same transaction: every chained event is in the tree.
        await extend_tree(conn, state.last_seq, [row["leaf_hash"] for row in rows])
        last = events[-1]
        await repository.save_state(
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

    async def drain(self) -> int:
        """Chain everything that has committed so far (used by CLI commands and tests).

        On PostgreSQL an event that has committed is held back while an older transaction of
        the database is still running (it may yet add an event ordered before it): another
        request, worker or process writing to the same database. Drain waits for those to
        finish, looking again every interval, so that every event committed before the call
        is chained when it returns. (A caller must not hold a write transaction of its own
        open while it drains: that one would be waited for.)
        """
        target = await self._newest_committed()
        total = 0
        waited = False
        while True:
            count = await self.sequence_once()
            total += count
            if count >= self._batch:
                continue
            if target is None or not await self._held_back(target):
                return total
            if not waited:
                waited = True
                log.info(
                    "ledger sequencer: waiting for older transactions of the database to "
                    "finish before chaining the events committed after them"
                )
            await asyncio.sleep(self._interval)

    async def _newest_committed(self) -> int | None:
        """PostgreSQL: the newest transaction id of a committed event; None on SQLite, where
        the sequencer's write lock means every committed event is chained by one pass."""
        if self._engine.dialect.name != "postgresql":
            return None
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="READ COMMITTED")
            async with conn.begin():
                return await repository.newest_txid(conn)

    async def _held_back(self, txid: int) -> bool:
        """Whether a committed event of a transaction up to `txid` is still unchained."""
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="READ COMMITTED")
            async with conn.begin():
                state = await repository.load_state(conn)
                return await repository.unchained_through(conn, state, txid)

    async def run_forever(
        self, stop: asyncio.Event | None = None, *, tracker: FailureTracker | None = None
    ) -> None:
        """Sequence until `stop` is set (or cancelled); a failing pass is retried with
        exponential back-off, and logged when the state changes (failing / recovered).

        Setting `stop` lets the current pass finish: cancelling one mid-query would leave the
        database driver's work running after its event loop is gone.
        """

        async def one_pass() -> float:
            count = await self.sequence_once()
            return 0.0 if count >= self._batch else self._interval

        await run_until_stopped(one_pass, tracker=tracker or self.failure_tracker(), stop=stop)

    def failure_tracker(self, observer: FailureObserver | None = None) -> FailureTracker:
        """A tracker with this worker's name, back-off and logger, reporting to `observer`."""
        return FailureTracker(
            COMPONENT,
            logger=log,
            clock=self._clock,
            policy=BACKOFF,
            observer=observer,
            describe=unavailable_reason,
        )
