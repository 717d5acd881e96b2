"""Kill switches (HALT-2 actions 1-2): market-wide, per symbol, per account.

A halt takes the trading-control row exclusively, so no order can be checked before it and
committed after it; it cancels the resting orders it covers in the same transaction, and it
stays latched until an authorized user resumes it with a reason. Cancels always pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.errors import Conflict, NotFound
from tradeguard.ledger.domain import Party
from tradeguard.risk.domain import TradingState
from tradeguard.trading import repository
from tradeguard.trading.common import (
    AccountNotFound,
    InstrumentNotFound,
    TradingDeps,
    TradingInputError,
)
from tradeguard.trading.domain import MARKET_TARGET, CancelReason, HaltScope, OrderStatus
from tradeguard.trading.events import TradingEvent
from tradeguard.trading.models import Order, TradingHalt
from tradeguard.trading.orders import OrderService


class AlreadyHalted(Conflict):
    slug = "already-halted"
    title = "Already halted"


class HaltNotFound(NotFound):
    slug = "halt-not-found"
    title = "No such active halt"


@dataclass(frozen=True, slots=True)
class HaltOutcome:
    halt: TradingHalt
    cancelled: Sequence[Order]


def _reason(reason: str) -> str:
    text = " ".join(reason.split())
    if len(text) < 3:
        raise TradingInputError("a halt or resumption needs a reason")
    return text[:500]


def _target(scope: HaltScope, target: str) -> str:
    """What a halt of this scope is keyed by: `*` market-wide, the symbol in capitals, or the
    account id."""
    if scope is HaltScope.MARKET:
        return MARKET_TARGET
    return target.strip().upper() if scope is HaltScope.SYMBOL else target.strip()


class HaltService:
    def __init__(self, deps: TradingDeps, orders: OrderService) -> None:
        self.deps = deps
        self.orders = orders

    async def halt(
        self,
        session: AsyncSession,
        *,
        scope: HaltScope,
        target: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> HaltOutcome:
        why = _reason(reason)
        await repository.lock_control(session, exclusive=True)
        target = _target(scope, target)
        if scope is HaltScope.SYMBOL and await repository.instrument(session, target) is None:
            raise InstrumentNotFound("no such symbol")
        if scope is HaltScope.ACCOUNT and await repository.account(session, target) is None:
            raise AccountNotFound("no such account")
        if await repository.active_halt(session, scope.value, target) is not None:
            raise AlreadyHalted("this halt is already in force; resume it first")
        if scope is HaltScope.MARKET:
            affected = await repository.open_orders(session)
        elif scope is HaltScope.SYMBOL:
            affected = await repository.open_orders(session, symbol=target)
        else:
            affected = await repository.open_orders(session, account_id=target)
        for account_id in sorted(
            {o.account_id for o in affected} | ({target} if scope is HaltScope.ACCOUNT else set())
        ):
            account = await repository.account(session, account_id, lock=True)
            if scope is HaltScope.ACCOUNT and account is not None:
                repository.changed(account)
                account.trading_state = TradingState.HALTED.value
                account.updated_ns = self.deps.clock.now_ns()
        for order in affected:
            await self.orders.close_order(
                session,
                order,
                status=OrderStatus.CANCELLED,
                reason=CancelReason.HALT,
                actor=actor,
                request_id=request_id,
            )
        now = self.deps.clock.now_ns()
        halt = TradingHalt(
            id=self.deps.ids.new_str(),
            scope=scope.value,
            target=target,
            reason=why,
            halted_by=f"{actor.kind}:{actor.id}",
            halted_ns=now,
            cancelled_orders=len(affected),
            resumed_by=None,
            resumed_ns=None,
            resume_reason=None,
        )
        repository.add(session, halt)
        await repository.bump_control(session, now)
        await self.deps.audit(
            session,
            TradingEvent.HALT_STARTED,
            actor=actor,
            subject=Party(scope.value, target),
            data={
                "halt_id": halt.id,
                "scope": scope.value,
                "target": target,
                "reason": why,
                "cancelled_orders": [o.id for o in affected],
            },
            request_id=request_id,
        )
        return HaltOutcome(halt, affected)

    async def resume(
        self,
        session: AsyncSession,
        *,
        scope: HaltScope,
        target: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> TradingHalt:
        why = _reason(reason)
        await repository.lock_control(session, exclusive=True)
        target = _target(scope, target)
        halt = await repository.active_halt(session, scope.value, target)
        if halt is None:
            raise HaltNotFound("nothing to resume: no such halt is in force")
        now = self.deps.clock.now_ns()
        halt.resumed_by = f"{actor.kind}:{actor.id}"
        halt.resumed_ns = now
        halt.resume_reason = why
        if scope is HaltScope.ACCOUNT:
            account = await repository.account(session, target, lock=True)
            if account is not None:
                repository.changed(account)
                account.trading_state = TradingState.ACTIVE.value
                account.updated_ns = now
        await repository.bump_control(session, now)
        await self.deps.audit(
            session,
            TradingEvent.HALT_RESUMED,
            actor=actor,
            subject=Party(scope.value, target),
            data={"halt_id": halt.id, "scope": scope.value, "target": target, "reason": why},
            request_id=request_id,
        )
        return halt

    async def active(self, session: AsyncSession) -> Sequence[TradingHalt]:
        return await repository.active_halts(session)

    async def history(self, session: AsyncSession, limit: int = 100) -> Sequence[TradingHalt]:
        return await repository.halt_history(session, limit)
