"""Identity housekeeping: expired one-time tickets and unconfirmed enrolments do not pile up."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.core.clock import NS_PER_SECOND, Clock
from tradeguard.core.workers import (
    BackoffPolicy,
    FailureObserver,
    FailureTracker,
    run_until_stopped,
)
from tradeguard.db.availability import unavailable_reason
from tradeguard.db.engine import unit_of_work
from tradeguard.identity import repository

log = logging.getLogger(__name__)

# Keep spent and expired tickets for an hour: long enough to investigate a burst, short
# enough that unauthenticated ceremony starts cannot grow the table without bound.
TICKET_RETENTION_NS = 3600 * NS_PER_SECOND
COMPONENT = "identity-housekeeping"
HOUSEKEEPING_INTERVAL_SECONDS = 60.0


async def purge_expired_tickets(sessions: async_sessionmaker[AsyncSession], clock: Clock) -> int:
    async with unit_of_work(sessions) as session:
        return await repository.delete_tickets_expired_before(
            session, clock.now_ns() - TICKET_RETENTION_NS
        )


async def expire_pending_factors(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, *, pending_seconds: int
) -> int:
    """Retire enrolments not confirmed in time (they can no longer be confirmed anyway)."""
    now = clock.now_ns()
    async with unit_of_work(sessions) as session:
        return await repository.expire_pending_factors(
            session, started_before_ns=now - pending_seconds * NS_PER_SECOND, now_ns=now
        )


def housekeeping_tracker(
    clock: Clock,
    interval_seconds: float = HOUSEKEEPING_INTERVAL_SECONDS,
    observer: FailureObserver | None = None,
) -> FailureTracker:
    """Back-off from one interval up to ten while the purge keeps failing."""
    return FailureTracker(
        COMPONENT,
        logger=log,
        clock=clock,
        policy=BackoffPolicy(base_seconds=interval_seconds, cap_seconds=10 * interval_seconds),
        observer=observer,
        describe=unavailable_reason,
    )


async def run_housekeeping(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    interval_seconds: float = HOUSEKEEPING_INTERVAL_SECONDS,
    stop: asyncio.Event | None = None,
    pending_factor_seconds: int = 900,
    tracker: FailureTracker | None = None,
) -> None:
    """Purge expired tickets and retire unconfirmed enrolments every interval until `stop`."""

    async def one_pass() -> float:
        await purge_expired_tickets(sessions, clock)
        await expire_pending_factors(sessions, clock, pending_seconds=pending_factor_seconds)
        return interval_seconds

    await run_until_stopped(
        one_pass, tracker=tracker or housekeeping_tracker(clock, interval_seconds), stop=stop
    )
