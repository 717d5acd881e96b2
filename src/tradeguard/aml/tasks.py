"""Background work of AML: the monitor tails the ledger behind its checkpoint (restart-safe:
it resumes from the stored checkpoint), and the SAR deadline job sends each case's
reminders (once each) and its overdue notice."""

from __future__ import annotations

import asyncio
import logging

from tradeguard.aml.container import AmlServices
from tradeguard.core.clock import Clock
from tradeguard.core.workers import (
    BackoffPolicy,
    FailureObserver,
    FailureTracker,
    run_until_stopped,
)
from tradeguard.db.availability import unavailable_reason
from tradeguard.db.engine import unit_of_work

logger = logging.getLogger("tradeguard.aml.tasks")

MONITOR_COMPONENT = "aml-monitor"
DEADLINES_COMPONENT = "aml-deadlines"
COMPONENTS = (MONITOR_COMPONENT, DEADLINES_COMPONENT)
DEADLINES_SECONDS = 300.0


async def run_deadlines_once(services: AmlServices) -> int:
    """One pass over open cases: reminders and overdue notices due now (each its own
    transaction)."""
    async with unit_of_work(services.sessions) as session:
        due = await services.cases.due_case_ids(session)
    sent = 0
    for case_id in due:
        async with unit_of_work(services.sessions) as session:
            sent += await services.cases.remind(session, case_id)
    return sent


def _tracker(
    component: str, clock: Clock, base: float, observer: FailureObserver | None
) -> FailureTracker:
    return FailureTracker(
        component,
        logger=logger,
        clock=clock,
        policy=BackoffPolicy(base_seconds=base, cap_seconds=max(60.0, 10 * base)),
        observer=observer,
        describe=unavailable_reason,
    )


def start_tasks(
    services: AmlServices,
    stop: asyncio.Event,
    *,
    interval_ms: int,
    clock: Clock,
    observer: FailureObserver | None = None,
) -> list[asyncio.Task[None]]:
    interval = interval_ms / 1000

    async def monitor_pass() -> float:
        result = await services.consumer.run_once()
        return 0.0 if result.events >= services.consumer.batch_size else interval

    async def deadlines_pass() -> float:
        await run_deadlines_once(services)
        return DEADLINES_SECONDS

    return [
        asyncio.create_task(
            run_until_stopped(
                monitor_pass,
                tracker=_tracker(MONITOR_COMPONENT, clock, interval, observer),
                stop=stop,
            ),
            name=MONITOR_COMPONENT,
        ),
        asyncio.create_task(
            run_until_stopped(
                deadlines_pass,
                tracker=_tracker(DEADLINES_COMPONENT, clock, DEADLINES_SECONDS, observer),
                stop=stop,
            ),
            name=DEADLINES_COMPONENT,
        ),
    ]
