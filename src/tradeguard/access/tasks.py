"""Access housekeeping: record the expiry of grants and of requests nobody decided.

Access itself ends on time without it (every request checks the clock); this pass writes
the status, the ledger event and the notice to the grantee.
"""

from __future__ import annotations

import asyncio
import logging

from tradeguard.access.container import AccessServices
from tradeguard.core.clock import Clock
from tradeguard.core.workers import (
    BackoffPolicy,
    FailureObserver,
    FailureTracker,
    run_until_stopped,
)
from tradeguard.db.availability import unavailable_reason

log = logging.getLogger(__name__)

COMPONENT = "access-expiry"
EXPIRY_INTERVAL_SECONDS = 15.0
BATCH = 200


async def record_expiries(services: AccessServices) -> int:
    """One pass: every grant and request due; returns how many were recorded."""
    return await services.run(lambda session: services.grants.expire_due(session, limit=BATCH))


def expiry_tracker(
    clock: Clock,
    interval_seconds: float = EXPIRY_INTERVAL_SECONDS,
    observer: FailureObserver | None = None,
) -> FailureTracker:
    return FailureTracker(
        COMPONENT,
        logger=log,
        clock=clock,
        policy=BackoffPolicy(base_seconds=interval_seconds, cap_seconds=10 * interval_seconds),
        observer=observer,
        describe=unavailable_reason,
    )


async def run_expiry(
    services: AccessServices,
    *,
    stop: asyncio.Event | None = None,
    interval_seconds: float = EXPIRY_INTERVAL_SECONDS,
    tracker: FailureTracker | None = None,
) -> None:
    async def one_pass() -> float:
        recorded = await record_expiries(services)
        return 0.0 if recorded >= BATCH else interval_seconds

    await run_until_stopped(
        one_pass,
        tracker=tracker or expiry_tracker(services.deps.clock, interval_seconds),
        stop=stop,
    )
