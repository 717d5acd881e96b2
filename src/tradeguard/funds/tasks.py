"""Background work of funds: withdrawals whose codes were not confirmed in time expire (their
cash comes back), and the processor is asked about deposits and withdrawals that are due.
Each item is its own transaction, so one failure never holds back the rest."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tradeguard.core.clock import Clock
from tradeguard.core.workers import (
    BackoffPolicy,
    FailureObserver,
    FailureTracker,
    run_until_stopped,
)
from tradeguard.db.availability import unavailable_reason
from tradeguard.db.engine import unit_of_work
from tradeguard.funds.container import FundsServices

logger = logging.getLogger("tradeguard.funds.tasks")

FUNDS_COMPONENT = "funds"
FUNDS_PASS_SECONDS = 5.0
COMPONENTS = (FUNDS_COMPONENT,)


@dataclass(frozen=True, slots=True)
class PassResult:
    expired: int = 0
    deposits: int = 0
    withdrawals: int = 0


async def run_funds_once(services: FundsServices) -> PassResult:
    """One pass over everything that is due; returns how many items changed."""
    async with unit_of_work(services.sessions) as session:
        expiring = await services.withdrawals.expired_due(session)
        deposits = await services.deposits.due(session)
        sent = await services.withdrawals.sent_due(session)
    expired = settled_deposits = settled_withdrawals = 0
    for withdrawal_id in expiring:
        async with unit_of_work(services.sessions) as session:
            expired += await services.withdrawals.expire(session, withdrawal_id)
    for deposit_id in deposits:
        async with unit_of_work(services.sessions) as session:
            settled_deposits += await services.deposits.settle(session, deposit_id) is not None
    for withdrawal_id in sent:
        async with unit_of_work(services.sessions) as session:
            settled_withdrawals += (
                await services.withdrawals.settle(session, withdrawal_id) is not None
            )
    return PassResult(expired, settled_deposits, settled_withdrawals)


def start_tasks(
    services: FundsServices,
    stop: asyncio.Event,
    *,
    clock: Clock,
    observer: FailureObserver | None = None,
) -> list[asyncio.Task[None]]:
    tracker = FailureTracker(
        FUNDS_COMPONENT,
        logger=logger,
        clock=clock,
        policy=BackoffPolicy(base_seconds=FUNDS_PASS_SECONDS, cap_seconds=60),
        observer=observer,
        describe=unavailable_reason,
    )

    async def one_pass() -> float:
        await run_funds_once(services)
        return FUNDS_PASS_SECONDS

    return [
        asyncio.create_task(
            run_until_stopped(one_pass, tracker=tracker, stop=stop), name=FUNDS_COMPONENT
        )
    ]
