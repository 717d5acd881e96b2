"""Background work of funds: withdrawals whose codes were not confirmed in time expire (their
cash comes back), and the processor is asked about deposits and withdrawals that are due,
and, every `funds_return_check_seconds`, about settled deposits still inside their return
window (late returns and chargebacks). Each item is its own transaction, so one failure
never holds back the rest."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tradeguard.core.clock import NS_PER_SECOND, Clock
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
    late_returns: int = 0


async def watch_returns(services: FundsServices) -> int:
    """Ask again about every settled deposit inside its return window; how many came back."""
    returned = 0
    after: str | None = None
    while True:
        async with unit_of_work(services.sessions) as session:
            page = await services.deposits.in_return_window(session, after_id=after)
        for deposit_id in page:
            async with unit_of_work(services.sessions) as session:
                returned += await services.deposits.watch_settled(session, deposit_id) is not None
        if len(page) < 500:
            return returned
        after = page[-1]


async def run_funds_once(services: FundsServices, *, late_returns: bool = True) -> PassResult:
    """One pass over everything that is due (with `late_returns`, the settled deposits in
    their return window too); returns how many items changed."""
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
    returned = await watch_returns(services) if late_returns else 0
    return PassResult(expired, settled_deposits, settled_withdrawals, returned)


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

    check_ns = services.return_check_seconds * NS_PER_SECOND
    next_check = clock.now_ns()

    async def one_pass() -> float:
        nonlocal next_check
        now = clock.now_ns()
        await run_funds_once(services, late_returns=now >= next_check)
        if now >= next_check:
            next_check = now + check_ns
        return FUNDS_PASS_SECONDS

    return [
        asyncio.create_task(
            run_until_stopped(one_pass, tracker=tracker, stop=stop), name=FUNDS_COMPONENT
        )
    ]
