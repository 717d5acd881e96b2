"""Identity housekeeping: expired one-time tickets and unconfirmed enrolments do not pile up."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.core.clock import NS_PER_SECOND, Clock
from tradeguard.core.workers import pause
from tradeguard.db.engine import unit_of_work
from tradeguard.identity import repository

log = logging.getLogger(__name__)

# Keep spent and expired tickets for an hour: long enough to investigate a burst, short
# enough that unauthenticated ceremony starts cannot grow the table without bound.
TICKET_RETENTION_NS = 3600 * NS_PER_SECOND


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


async def run_housekeeping(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    interval_seconds: float = 60,
    stop: asyncio.Event | None = None,
    pending_factor_seconds: int = 900,
) -> None:
    while stop is None or not stop.is_set():
        try:
            await purge_expired_tickets(sessions, clock)
            await expire_pending_factors(sessions, clock, pending_seconds=pending_factor_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("identity housekeeping failed; retrying")
        if await pause(stop, interval_seconds):
            return
