"""The checkpointer: a background worker of the server that signs a checkpoint once the tree
has grown by N events or T ms have passed since the last one with the tree grown, and
publishes every checkpoint to the configured witness.

Several processes may run one: signing is serialized (an advisory lock on PostgreSQL, the
write lock on SQLite) and skips a size already signed with the active key; publication is
idempotent (write-once files; the witness protocol's old size).
"""

from __future__ import annotations

import asyncio
import logging

from tradeguard.core.clock import Clock
from tradeguard.core.errors import TradeguardError
from tradeguard.core.workers import (
    BackoffPolicy,
    FailureObserver,
    FailureTracker,
    run_until_stopped,
)
from tradeguard.db.availability import unavailable_reason
from tradeguard.ledger.tree.service import LedgerTree, SignedCheckpoint
from tradeguard.ledger.tree.witness import Witness, publish_pending

log = logging.getLogger(__name__)

COMPONENT = "ledger-checkpointer"
BACKOFF = BackoffPolicy(base_seconds=1.0, cap_seconds=60.0)
# The tree is looked at this often at most (and at least once per checkpoint interval).
MAX_POLL_SECONDS = 1.0


class Checkpointer:
    def __init__(
        self,
        tree: LedgerTree,
        *,
        every_events: int,
        interval_ms: int,
        witness: Witness | None = None,
    ) -> None:
        self._tree = tree
        self._every = every_events
        self._interval_ns = interval_ms * 1_000_000
        self._poll = min(interval_ms / 1000, MAX_POLL_SECONDS)
        self._witness = witness

    @property
    def clock(self) -> Clock:
        return self._tree.clock

    def due(self, size: int, latest: SignedCheckpoint | None) -> bool:
        """Whether the tree at `size` should be signed now (never when it has not grown)."""
        signed = latest.size if latest is not None else 0
        if size <= signed:
            return False
        if size - signed >= self._every or latest is None:
            return True
        return self.clock.now_ns() - latest.signed_ns >= self._interval_ns

    async def run_once(self) -> SignedCheckpoint | None:
        """Sign if due, then publish what the witness lacks; the checkpoint signed, if any."""
        size, latest = await self._tree.head()
        signed = None
        if self.due(size, latest):
            signed, created = await self._tree.sign_checkpoint()
            if created:
                log.info(
                    "audit ledger checkpoint signed",
                    extra={"tree_size": signed.size, "key_id": signed.key_id},
                )
        if self._witness is not None:
            await publish_pending(self._tree, self._witness)
        return signed

    async def run_forever(
        self, stop: asyncio.Event | None = None, *, tracker: FailureTracker | None = None
    ) -> None:
        async def one_pass() -> float:
            await self.run_once()
            return self._poll

        await run_until_stopped(one_pass, tracker=tracker or self.failure_tracker(), stop=stop)

    def failure_tracker(self, observer: FailureObserver | None = None) -> FailureTracker:
        return FailureTracker(
            COMPONENT,
            logger=log,
            clock=self.clock,
            policy=BACKOFF,
            observer=observer,
            describe=_describe,
        )


def _describe(error: BaseException) -> str | None:
    # Our own errors (a witness down, a witness refusing a fork) are expected outcomes with
    # a message that names the cause; a traceback is kept for the unexpected.
    if isinstance(error, TradeguardError):
        return f"{type(error).__name__}: {error.detail}"
    return unavailable_reason(error)
