"""Executions: the venue's reports recorded in one transaction each (orders, journal,
positions, day trades, Reg SHO close-outs and their audit events), then pushed to clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.core.orders import Side, StpMode, TimeInForce
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import SYSTEM, Party
from tradeguard.risk.bands import price_collar
from tradeguard.trading import journal, repository
from tradeguard.trading.common import TradingDeps
from tradeguard.trading.domain import (
    OPEN_STATUSES,
    ZERO,
    CancelReason,
    OrderStatus,
    apply_execution,
    round_money,
)
from tradeguard.trading.events import RiskEvent, TradingEvent
from tradeguard.trading.metrics import TradingMetrics
from tradeguard.trading.models import DayTrade, Execution, Order, Position, TradingAccount
from tradeguard.trading.orders import OrderService, order_data
from tradeguard.trading.snapshots import remaining
from tradeguard.venue.adapter import STREET, StaleBook, VenueOrder, VenueReport

RELEASE_QUANTUM = Decimal("0.000001")

Publisher = Callable[[list["Notice"]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a client's stream should hear about, once its transaction committed."""

    account_id: str
    kind: str
    payload: dict[str, Any]


@dataclass(slots=True)
class _Batch:
    notices: list[Notice] = field(default_factory=list)
    executions: int = 0


def venue_order(order: Order, *, stp: StpMode, protection: Decimal | None) -> VenueOrder:
    return VenueOrder(
        order_id=order.id,
        account_id=order.account_id,
        symbol=order.symbol,
        side=Side(order.side),
        quantity=remaining(order),
        limit_price=order.limit_price,
        time_in_force=TimeInForce(order.time_in_force),
        protection_price=protection,
        stp=stp,
    )


def order_payload(order: Order) -> dict[str, Any]:
    data = order_data(order)
    data.update(
        {
            "filled_notional": str(order.filled_notional),
            "fees": str(order.fees),
            "cancel_reason": order.cancel_reason,
            "reject_code": order.reject_code,
            "updated_ns": str(order.updated_ns),
        }
    )
    return data


class ExecutionRecorder:
    """The ExecutionSink of the trading core."""

    def __init__(
        self,
        deps: TradingDeps,
        orders: OrderService,
        sessions: async_sessionmaker[AsyncSession],
        metrics: TradingMetrics,
        publish: Publisher | None = None,
    ) -> None:
        self.deps = deps
        self.orders = orders
        self.sessions = sessions
        self.metrics = metrics
        self.publish = publish

    def protection_price(self, order: Order) -> Decimal | None:
        """A market order never trades beyond the collar band edge (price protection)."""
        if order.limit_price is not None:
            return None
        info = self.deps.reference.get(order.symbol)
        reference = self.deps.market.reference_price(order.symbol) or (
            info.reference_price if info else None
        )
        if reference is None or info is None:
            return None
        lower, upper = price_collar(reference, info.band_tier, info.tick_size)
        return upper if order.side == Side.BUY else lower

    def to_venue(self, order: Order) -> VenueOrder:
        return venue_order(
            order, stp=self.deps.policy.limits.stp_mode, protection=self.protection_price(order)
        )

    async def resting_orders(self, symbol: str) -> Sequence[VenueOrder]:
        async with unit_of_work(self.sessions) as session:
            rows = await repository.open_orders(session, symbol=symbol)
            return [self.to_venue(row) for row in rows]

    async def apply(self, report: VenueReport) -> None:
        batch = _Batch()
        async with unit_of_work(self.sessions) as session:
            await self._apply(session, report, batch)
        self.metrics.executions(batch.executions)
        if self.publish is not None and batch.notices:
            await self.publish(batch.notices)

    async def _apply(self, session: AsyncSession, report: VenueReport, batch: _Batch) -> None:
        accounts, orders = await self._lock_and_check(session, report)
        now = self.deps.clock.now_ns()
        for fill in report.fills:
            for order_id, account_id, liquidity, contra in (
                (fill.taker_order_id, fill.taker_account, "taker", fill.maker_account),
                (fill.maker_order_id, fill.maker_account, "maker", fill.taker_account),
            ):
                if account_id == STREET:
                    continue
                await self._fill(
                    session,
                    accounts[account_id],
                    orders[order_id],
                    quantity=fill.quantity,
                    price=fill.price,
                    liquidity=liquidity,
                    contra="street" if contra == STREET else "internal",
                    match_id=fill.match_id,
                    now=now,
                    batch=batch,
                )
        for cancel in report.cancels:
            order = orders[cancel.order_id]
            await self._venue_cancel(session, order, cancel.quantity, cancel.reason, batch)

    async def _lock_and_check(
        self, session: AsyncSession, report: VenueReport
    ) -> tuple[dict[str, TradingAccount], dict[str, Order]]:
        """Lock the accounts (by id) and orders a report touches, and prove the database agrees
        with the venue: every order open with at least the quantity the venue used."""
        customers = {f.taker_account for f in report.fills} | {
            f.maker_account for f in report.fills
        }
        customers |= {c.account_id for c in report.cancels}
        accounts: dict[str, TradingAccount] = {}
        for account_id in sorted(customers - {STREET}):
            row = await repository.account(session, account_id, lock=True)
            if row is None:
                raise StaleBook(f"unknown account in book {report.symbol}")
            repository.changed(row)
            accounts[account_id] = row
        needed: dict[str, int] = {}
        for fill in report.fills:
            for order_id, account in (
                (fill.taker_order_id, fill.taker_account),
                (fill.maker_order_id, fill.maker_account),
            ):
                if account != STREET:
                    needed[order_id] = needed.get(order_id, 0) + fill.quantity
        for cancel in report.cancels:
            needed[cancel.order_id] = needed.get(cancel.order_id, 0) + cancel.quantity
        orders = await repository.orders_by_ids(session, sorted(needed))
        for order_id, quantity in needed.items():
            order = orders.get(order_id)
            if order is None or order.status not in OPEN_STATUSES or remaining(order) < quantity:
                raise StaleBook(f"order {order_id} is not open for {quantity} in the database")
        return accounts, orders

    async def _fill(
        self,
        session: AsyncSession,
        account: TradingAccount,
        order: Order,
        *,
        quantity: int,
        price: Decimal,
        liquidity: str,
        contra: str,
        match_id: str,
        now: int,
        batch: _Batch,
    ) -> None:
        deps = self.deps
        buy = order.side == Side.BUY
        notional = price * quantity
        fee = round_money(deps.policy.commission_per_share * quantity)
        left = remaining(order)
        if quantity == left:
            release_cash, release_shares = order.hold_cash, order.hold_shares
        else:
            release_cash = (order.hold_cash * quantity / left).quantize(RELEASE_QUANTUM)
            release_shares = min(order.hold_shares, quantity)
        execution_id = deps.ids.new_str()
        trading_date = deps.session_date(now)
        settlement_date = deps.calendar.settlement_date(trading_date)
        trade = journal.fill(
            account_id=account.id,
            currency=account.currency,
            symbol=order.symbol,
            buy=buy,
            quantity=quantity,
            notional=notional,
            fee=fee,
            released_cash=release_cash,
            released_shares=release_shares,
            order_id=order.id,
            execution_id=execution_id,
        )
        await repository.post(session, deps.ids.new_str(), trade, now)
        order.filled_quantity += quantity
        order.filled_notional += notional
        order.fees += fee
        order.hold_cash -= release_cash
        order.hold_shares -= release_shares
        order.updated_ns = now
        if order.filled_quantity == order.quantity:
            order.status = OrderStatus.FILLED.value
            order.open = False
            # Price improvement leaves cash reserved that nothing will use: give it back.
            if order.hold_cash or order.hold_shares:
                leftover = journal.release(
                    account_id=account.id,
                    currency=account.currency,
                    symbol=order.symbol,
                    cash=order.hold_cash,
                    shares=order.hold_shares,
                    order_id=order.id,
                )
                await repository.post(session, deps.ids.new_str(), leftover, now)
                order.hold_cash, order.hold_shares = ZERO, 0
        else:
            order.status = OrderStatus.PARTIALLY_FILLED.value
        execution = Execution(
            id=execution_id,
            order_id=order.id,
            account_id=account.id,
            symbol=order.symbol,
            side=order.side,
            quantity=quantity,
            price=price,
            notional=notional,
            fee=fee,
            liquidity=liquidity,
            contra=contra,
            match_id=match_id,
            executed_ns=now,
            trading_date=trading_date.isoformat(),
            settlement_date=settlement_date.isoformat(),
            settled_ns=None,
        )
        repository.add(session, execution)
        day_trade = await self._position(
            session, account=account, order=order, buy=buy, quantity=quantity, price=price, now=now
        )
        await self._close_out_fails(
            session, account=account, order=order, buy=buy, quantity=quantity, now=now
        )
        batch.executions += 1
        data = {
            "execution_id": execution_id,
            "order_id": order.id,
            "symbol": order.symbol,
            "side": order.side,
            "quantity": quantity,
            "price": str(price),
            "notional": str(notional),
            "fee": str(fee),
            "liquidity": liquidity,
            "contra": contra,
            "match_id": match_id,
            "trading_date": execution.trading_date,
            "settlement_date": execution.settlement_date,
            "day_trade": day_trade,
        }
        await deps.audit(
            session,
            TradingEvent.EXECUTION_CREATED,
            actor=SYSTEM,
            subject=Party("account", account.id),
            data=data,
        )
        if order.status == OrderStatus.FILLED:
            await deps.audit(
                session,
                TradingEvent.ORDER_FILLED,
                actor=SYSTEM,
                subject=Party("account", account.id),
                data=order_data(order),
            )
        batch.notices.append(Notice(account.id, "execution", data))
        batch.notices.append(Notice(account.id, "order", order_payload(order)))

    async def _position(
        self,
        session: AsyncSession,
        *,
        account: TradingAccount,
        order: Order,
        buy: bool,
        quantity: int,
        price: Decimal,
        now: int,
    ) -> bool:
        """Average-cost position update and FINRA 4210 day-trade counting (one per order)."""
        today = self.deps.session_date(now).isoformat()
        row = await repository.position(session, account.id, order.symbol)
        if row is None:
            row = Position(
                account_id=account.id,
                symbol=order.symbol,
                quantity=0,
                cost_basis=ZERO,
                realized_pnl=ZERO,
                activity_date=today,
                opened_today_long=0,
                opened_today_short=0,
                updated_ns=now,
            )
            repository.add(session, row)
        if row.activity_date != today:
            row.activity_date = today
            row.opened_today_long = row.opened_today_short = 0
        change = apply_execution(
            row.quantity, row.cost_basis, buy=buy, shares=quantity, price=price
        )
        # A day trade: this order closes shares that were opened on the same trading day
        # (buy then sell, or sell short then buy to cover). Each order counts once.
        closes_today = (change.reduced_long and row.opened_today_long) or (
            change.reduced_short and row.opened_today_short
        )
        row.opened_today_long = (
            max(0, row.opened_today_long - change.reduced_long) + change.opened_long
        )
        row.opened_today_short = (
            max(0, row.opened_today_short - change.reduced_short) + change.opened_short
        )
        row.quantity = change.quantity
        row.cost_basis = change.cost_basis
        row.realized_pnl = row.realized_pnl + change.realized
        row.updated_ns = now
        if closes_today and not order.day_trade and account.account_type == "margin":
            order.day_trade = True
            repository.add(
                session,
                DayTrade(
                    order_id=order.id,
                    account_id=account.id,
                    symbol=order.symbol,
                    trading_date=today,
                    created_ns=now,
                ),
            )
            return True
        return bool(order.day_trade)

    async def _close_out_fails(
        self,
        session: AsyncSession,
        *,
        account: TradingAccount,
        order: Order,
        buy: bool,
        quantity: int,
        now: int,
    ) -> None:
        """A purchase of like kind and quantity closes out an open fail (Rule 204(a))."""
        if not buy:
            return
        left = quantity
        for fail in await repository.open_fails(
            session, account_id=account.id, symbol=order.symbol
        ):
            take = min(left, fail.quantity - fail.closed_quantity)
            fail.closed_quantity += take
            left -= take
            if fail.closed_quantity == fail.quantity:
                fail.status = "closed"
                fail.closed_ns = now
                await self.deps.audit(
                    session,
                    RiskEvent.FAIL_CLOSED,
                    actor=SYSTEM,
                    subject=Party("account", account.id),
                    data={
                        "fail_id": fail.id,
                        "symbol": fail.symbol,
                        "quantity": fail.quantity,
                        "closed_by_order": order.id,
                    },
                )
            if left == 0:
                return

    async def _venue_cancel(
        self, session: AsyncSession, order: Order, quantity: int, reason: str, batch: _Batch
    ) -> None:
        cause = (
            CancelReason(reason)
            if reason in CancelReason.__members__.values()
            else CancelReason.IOC
        )
        if quantity >= remaining(order):
            await self.orders.close_order(
                session, order, status=OrderStatus.CANCELLED, reason=cause, actor=SYSTEM
            )
        else:
            await self._reduce(session, order, quantity, cause)
        batch.notices.append(Notice(order.account_id, "order", order_payload(order)))

    async def _reduce(
        self, session: AsyncSession, order: Order, quantity: int, reason: CancelReason
    ) -> None:
        """Self-trade prevention by decrement: part of a resting order is cancelled."""
        account = await repository.account(session, order.account_id)
        assert account is not None  # noqa: S101 - locked above
        left = remaining(order)
        cash = (order.hold_cash * quantity / left).quantize(RELEASE_QUANTUM)
        shares = min(order.hold_shares, quantity)
        now = self.deps.clock.now_ns()
        if cash or shares:
            move = journal.release(
                account_id=account.id,
                currency=account.currency,
                symbol=order.symbol,
                cash=cash,
                shares=shares,
                order_id=order.id,
            )
            await repository.post(session, self.deps.ids.new_str(), move, now)
        order.hold_cash -= cash
        order.hold_shares -= shares
        order.quantity -= quantity
        order.updated_ns = now
        await self.deps.audit(
            session,
            TradingEvent.ORDER_CANCELLED,
            actor=SYSTEM,
            subject=Party("account", order.account_id),
            data={**order_data(order), "reason": reason.value, "cancelled_quantity": quantity},
        )
