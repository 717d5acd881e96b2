"""T+1 settlement (SEC Rule 15c6-1), Reg SHO Rule 204 fails to deliver, and DAY-order expiry.

Settlement moves each account's net of a settlement date's trades from unsettled to settled
cash in one journal movement. A short sale must be delivered with borrowed shares: the
stock-loan source lends them at settlement (easy-to-borrow symbols always deliver; a locate
is only reasonable grounds to believe, not a borrow). What cannot be borrowed is a fail to
deliver, tracked against its Rule 204 close-out deadline; a missed deadline raises an alert
and puts the account in the penalty box for that symbol until it buys in.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.orders import Side
from tradeguard.ledger.domain import SYSTEM, Party
from tradeguard.risk.regsho import FailOrigin, close_out_deadline_ns
from tradeguard.trading import journal, repository
from tradeguard.trading.common import TradingDeps
from tradeguard.trading.domain import ZERO, CancelReason, OrderStatus, cash_effect
from tradeguard.trading.events import RiskEvent, TradingEvent
from tradeguard.trading.models import Execution, Order, RiskAlert, SettlementFail
from tradeguard.trading.orders import OrderService


@dataclass(frozen=True, slots=True)
class SettlementReport:
    settled_executions: int
    accounts: int
    fails_opened: int


class SettlementService:
    def __init__(self, deps: TradingDeps, orders: OrderService) -> None:
        self.deps = deps
        self.orders = orders

    def today(self) -> date:
        return self.deps.calendar.trading_date(self.deps.clock.now_ns())

    async def settle_due(
        self, session: AsyncSession, *, through: date | None = None
    ) -> SettlementReport:
        """Settle every execution whose settlement date has come (business days only)."""
        day = through or self.today()
        if not self.deps.calendar.is_business_day(day):
            day = self.deps.calendar.previous_business_day(day)
        due = await repository.unsettled_executions(session, day.isoformat())
        if not due:
            return SettlementReport(0, 0, 0)
        now = self.deps.clock.now_ns()
        groups: dict[tuple[str, str], list[Execution]] = defaultdict(list)
        for execution in due:
            groups[(execution.account_id, execution.settlement_date)].append(execution)
        fails = 0
        for account_id in sorted({key[0] for key in groups}):
            locked = await repository.account(session, account_id, lock=True)
            if locked is not None:
                repository.changed(locked)
        for (account_id, settlement_date), executions in sorted(groups.items()):
            account = await repository.account(session, account_id)
            assert account is not None  # noqa: S101 - locked above
            net = sum((cash_effect(e.side, e.notional, e.fee) for e in executions), ZERO)
            if net:
                move = journal.settlement(account_id, account.currency, net, settlement_date)
                await repository.post(session, self.deps.ids.new_str(), move, now)
            for execution in executions:
                execution.settled_ns = now
                if execution.side == Side.SELL_SHORT and not await self._deliver(
                    session, execution
                ):
                    await self._open_fail(session, execution, now)
                    fails += 1
            await self.deps.audit(
                session,
                TradingEvent.SETTLEMENT_POSTED,
                subject=Party("account", account_id),
                actor=SYSTEM,
                data={
                    "settlement_date": settlement_date,
                    "net": str(net),
                    "executions": [e.id for e in executions],
                },
            )
        return SettlementReport(len(due), len({k[0] for k in groups}), fails)

    async def _deliver(self, session: AsyncSession, execution: Execution) -> bool:
        """Borrow the shares a short sale must deliver; False is a fail to deliver."""
        info = self.deps.reference.get(execution.symbol)
        if info is not None and info.easy_to_borrow and not info.threshold_security:
            return True
        # Pre-borrowed shares were borrowed (taken from inventory) when the pre-borrow was granted.
        order = await repository.order(session, execution.order_id)
        if order is not None and order.preborrow_quantity >= order.filled_quantity:
            return True
        inventory = await repository.stock_loan(session, execution.symbol, lock=True)
        if inventory is None or inventory.available < execution.quantity:
            return False
        inventory.available -= execution.quantity
        inventory.updated_ns = self.deps.clock.now_ns()
        return True

    async def _open_fail(self, session: AsyncSession, execution: Execution, now: int) -> None:
        fail = SettlementFail(
            id=self.deps.ids.new_str(),
            account_id=execution.account_id,
            symbol=execution.symbol,
            kind="short",
            quantity=execution.quantity,
            closed_quantity=0,
            trade_date=execution.trading_date,
            settlement_date=execution.settlement_date,
            deadline_ns=close_out_deadline_ns(
                self.deps.calendar,
                trade_date=date.fromisoformat(execution.trading_date),
                origin=FailOrigin.SHORT_SALE,
            ),
            status="open",
            alerted_ns=None,
            created_ns=now,
            closed_ns=None,
        )
        repository.add(session, fail)
        await self.deps.audit(
            session,
            RiskEvent.FAIL_OPENED,
            actor=SYSTEM,
            subject=Party("account", execution.account_id),
            data={
                "fail_id": fail.id,
                "symbol": fail.symbol,
                "quantity": fail.quantity,
                "settlement_date": fail.settlement_date,
                "close_out_deadline_ns": str(fail.deadline_ns),
            },
        )

    async def alerts(
        self, session: AsyncSession, *, limit: int, open_only: bool
    ) -> Sequence[RiskAlert]:
        return await repository.alerts(session, limit=limit, open_only=open_only)

    async def check_fail_deadlines(self, session: AsyncSession) -> int:
        """Alert on every open fail past its close-out deadline (once); returns the count."""
        now = self.deps.clock.now_ns()
        raised = 0
        for fail in await repository.open_fails(session):
            if fail.deadline_ns > now or fail.alerted_ns is not None:
                continue
            fail.alerted_ns = now
            await raise_alert(
                self.deps,
                session,
                kind="REGSHO_CLOSE_OUT_MISSED",
                severity="high",
                account_id=fail.account_id,
                symbol=fail.symbol,
                detail={
                    "fail_id": fail.id,
                    "open_quantity": fail.quantity - fail.closed_quantity,
                    "deadline_ns": str(fail.deadline_ns),
                    "rule": "17 CFR 242.204(a)",
                    "consequence": "new short sales in this symbol need a pre-borrow",
                },
            )
            await self.deps.audit(
                session,
                RiskEvent.FAIL_DEADLINE_MISSED,
                actor=SYSTEM,
                subject=Party("account", fail.account_id),
                data={"fail_id": fail.id, "symbol": fail.symbol},
            )
            raised += 1
        return raised

    async def expiring_day_orders(self, session: AsyncSession) -> list[Order]:
        """Open DAY orders whose trading day is over (at the close, or at the date change in an
        always-open market)."""
        session_day = self.deps.session_date(self.deps.clock.now_ns()).isoformat()
        return list(await repository.open_day_orders_before(session, session_day))

    async def expire(self, session: AsyncSession, order_ids: list[str]) -> list[Order]:
        # Lock order: account rows by id, then the orders.
        unlocked = await repository.orders_by_ids(session, order_ids, lock=False)
        for account_id in sorted({o.account_id for o in unlocked.values()}):
            await repository.account(session, account_id, lock=True)
        rows = await repository.orders_by_ids(session, order_ids)
        expired = []
        for order_id in order_ids:
            order = rows.get(order_id)
            if order is None or not order.open:
                continue
            await self.orders.close_order(
                session,
                order,
                status=OrderStatus.EXPIRED,
                reason=CancelReason.EXPIRED,
                actor=SYSTEM,
            )
            expired.append(order)
        return expired


async def raise_alert(
    deps: TradingDeps,
    session: AsyncSession,
    *,
    kind: str,
    severity: str,
    account_id: str | None,
    symbol: str | None,
    detail: dict[str, object],
) -> RiskAlert:
    alert = RiskAlert(
        id=deps.ids.new_str(),
        kind=kind,
        severity=severity,
        account_id=account_id,
        symbol=symbol,
        detail=json.dumps(detail, sort_keys=True),
        created_ns=deps.clock.now_ns(),
        resolved_by=None,
        resolved_ns=None,
    )
    repository.add(session, alert)
    await deps.audit(
        session,
        RiskEvent.ALERT_RAISED,
        actor=SYSTEM,
        subject=Party("account", account_id) if account_id else None,
        data={"alert_id": alert.id, "kind": kind, "severity": severity, "symbol": symbol},
    )
    return alert
