"""The takeover defence's background job: the unusual-trading sweep (ATO-1) as a worker of
the server, or once from the command line (`tradeguard takeover sweep`)."""

from __future__ import annotations

import asyncio
import logging

from tradeguard.core.clock import Clock
from tradeguard.core.workers import (
    BackoffPolicy,
    FailureObserver,
    FailureTracker,
    run_until_stopped,
)
from tradeguard.db.availability import unavailable_reason
from tradeguard.fraud.container import FraudServices

log = logging.getLogger(__name__)

COMPONENT = "takeover-sweep"


async def sweep_once(fraud: FraudServices) -> int:
    """One sweep in its own unit of work; returns how many users' trading was flagged."""
    async with fraud.unit_of_work() as session:
        return await fraud.defence.sweep_trading(session)


def start_sweep(
    fraud: FraudServices,
    stop: asyncio.Event,
    *,
    clock: Clock,
    observer: FailureObserver | None = None,
) -> asyncio.Task[None]:
    """The sweep every interval as a task of the running server, stopped by `stop`."""
    interval = float(fraud.sweep_interval_seconds)
    tracker = FailureTracker(
        COMPONENT,
        logger=log,
        clock=clock,
        policy=BackoffPolicy(base_seconds=interval, cap_seconds=max(60.0, 10 * interval)),
        observer=observer,
        describe=unavailable_reason,
    )

    async def one_pass() -> float:
        await sweep_once(fraud)
        return interval

    return asyncio.create_task(
        run_until_stopped(one_pass, tracker=tracker, stop=stop), name=COMPONENT
    )
