"""Builds the immutable pre-trade snapshot (risk/domain.py) from committed state.

Read inside the order's transaction, after the account row is locked, so the buying-power
check and the reservation that follows are atomic: no concurrent order of the same account
can spend the same money (SQLite serializes writers; PostgreSQL queues on the row lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.orders import Side
from tradeguard.risk.domain import (
    AccountType,
    DayTradeState,
    InstrumentState,
    MarketState,
    OrderIntent,
    OwnOrders,
    PositionState,
    RecentOrder,
    RiskLimits,
    RiskSnapshot,
    ShortSaleState,
)
from tradeguard.trading import repository
from tradeguard.trading.accounts import AccountService, balances_from, effective_limits
from tradeguard.trading.common import InstrumentInfo, TradingDeps
from tradeguard.trading.domain import ZERO, HaltScope, OrderStatus
from tradeguard.trading.models import Order, TradingAccount

RECENT_ORDERS = 64


def instrument_state(
    info: InstrumentInfo, reference: Decimal | None, halted: bool
) -> InstrumentState:
    return InstrumentState(
        symbol=info.symbol,
        tick_size=info.tick_size,
        lot_size=info.lot_size,
        min_quantity=info.min_quantity,
        max_quantity=info.max_quantity,
        reference_price=reference,
        band_tier=info.band_tier,
        tradable=info.tradable,
        restricted=info.restricted,
        threshold_security=info.threshold_security,
        easy_to_borrow=info.easy_to_borrow,
        halted=halted,
    )


def remaining(order: Order) -> int:
    return order.quantity - order.filled_quantity


def order_price(order: Order, mark: Decimal | None) -> Decimal:
    if order.limit_price is not None:
        return order.limit_price
    return mark if mark is not None else ZERO


class SnapshotBuilder:
    def __init__(self, deps: TradingDeps, accounts: AccountService) -> None:
        self.deps = deps
        self.accounts = accounts

    def reference_price(self, info: InstrumentInfo) -> Decimal | None:
        live = self.deps.market.reference_price(info.symbol)
        return live if live is not None else info.reference_price

    async def build(
        self,
        session: AsyncSession,
        *,
        account: TradingAccount,
        info: InstrumentInfo,
        intent: OrderIntent,
    ) -> RiskSnapshot:
        deps = self.deps
        now = deps.clock.now_ns()
        trading_date = deps.calendar.trading_date(now)
        limits = effective_limits(deps.policy.limits, account)
        balances = balances_from(
            account.id, account.currency, await repository.balances(session, account.id)
        )
        positions = await repository.positions(session, account.id)
        state = await self.accounts.account_state(session, account, balances, positions)
        open_orders = await repository.open_orders_of_account(session, account.id)
        halts = await repository.halts_affecting(session, info.symbol)
        market_halted = any(scope == HaltScope.MARKET for scope, _ in halts)
        symbol_halted = any(scope == HaltScope.SYMBOL for scope, _ in halts)

        position_row = next((p for p in positions if p.symbol == info.symbol), None)
        open_buy = open_sell = 0
        own_bid: Decimal | None = None
        own_ask: Decimal | None = None
        open_notional = ZERO
        for order in open_orders:
            left = remaining(order)
            mark = self.accounts.mark(order.symbol)
            open_notional += order_price(order, mark) * left
            if order.symbol != info.symbol:
                continue
            if order.side == Side.BUY:
                open_buy += left
                if order.limit_price is not None and (
                    own_bid is None or order.limit_price > own_bid
                ):
                    own_bid = order.limit_price
            else:
                open_sell += left
                if order.limit_price is not None and (
                    own_ask is None or order.limit_price < own_ask
                ):
                    own_ask = order.limit_price
        # A market order rests nowhere, but until the venue has answered it can still trade:
        # treat it as crossing everything on its side.
        gross = open_notional
        for pos in positions:
            if pos.quantity:
                mark = self.accounts.mark(pos.symbol) or abs(pos.cost_basis / pos.quantity)
                gross += abs(pos.quantity) * mark
        held_for_sale = balances.shares_held.get(info.symbol, 0)
        position = PositionState(
            quantity=position_row.quantity if position_row else 0,
            held_for_sale=held_for_sale,
            open_buy_quantity=open_buy,
            open_sell_quantity=open_sell,
            opened_today_long=self._opened_today(position_row, trading_date.isoformat(), True),
            opened_today_short=self._opened_today(position_row, trading_date.isoformat(), False),
            mark_price=self.accounts.mark(info.symbol),
        )
        recent = tuple(
            RecentOrder(
                symbol=row.symbol,
                side=Side(row.side),
                quantity=row.quantity,
                limit_price=row.limit_price,
                created_ns=row.created_ns,
                accepted=row.status != OrderStatus.REJECTED,
            )
            for row in await repository.recent_orders(session, account.id, RECENT_ORDERS)
        )
        short_sale = await self._short_sale(session, account.id, info.symbol, intent, now)
        day_trades = await self._day_trades(session, account, limits, trading_date)
        bid, ask = deps.market.nbbo(info.symbol)
        snapshot = RiskSnapshot(
            account=state,
            instrument=instrument_state(info, self.reference_price(info), symbol_halted),
            market=MarketState(
                now_ns=now,
                trading_date=trading_date,
                market_halted=market_halted,
                session_open=deps.calendar.is_open(now),
                enforce_session=deps.policy.enforce_session,
                best_bid=bid,
                best_ask=ask,
            ),
            position=position,
            own_orders=OwnOrders(best_bid=own_bid, best_ask=own_ask, open_notional=open_notional),
            recent=recent,
            short_sale=short_sale,
            day_trades=day_trades,
            limits=limits,
            gross_exposure=gross,
        )
        return snapshot

    @staticmethod
    def _opened_today(row: object, day: str, long: bool) -> int:
        if row is None or getattr(row, "activity_date", None) != day:
            return 0
        return int(getattr(row, "opened_today_long" if long else "opened_today_short"))

    async def _short_sale(
        self, session: AsyncSession, account_id: str, symbol: str, intent: OrderIntent, now: int
    ) -> ShortSaleState:
        if intent.side is not Side.SELL_SHORT:
            return ShortSaleState(locate_available=0, preborrow_available=0, penalty_box=False)
        locate = preborrow = 0
        for row in await repository.locates_for(session, account_id, symbol, now):
            left = row.quantity - row.used_quantity
            if row.kind == "preborrow":
                preborrow += left
            else:
                locate += left
        fails = await repository.open_fails(session, account_id=account_id, symbol=symbol)
        penalty = any(f.deadline_ns <= now for f in fails)
        return ShortSaleState(
            locate_available=locate, preborrow_available=preborrow, penalty_box=penalty
        )

    async def _day_trades(
        self,
        session: AsyncSession,
        account: TradingAccount,
        limits: RiskLimits,
        trading_date: object,
    ) -> DayTradeState:
        if account.account_type != AccountType.MARGIN:
            return DayTradeState(day_trades=0, total_trades=0, pdt_flagged=False)
        days = [
            d.isoformat()
            for d in self.deps.calendar.business_days_ending(trading_date, limits.pdt_window_days)  # type: ignore[arg-type]
        ]
        count = await repository.day_trades_in(session, account.id, days)
        total = await repository.executed_orders_in(session, account.id, days)
        flagged = (
            count >= limits.pdt_day_trades
            and total > 0
            and Decimal(count) / Decimal(total) > limits.pdt_min_share
        )
        return DayTradeState(day_trades=count, total_trades=total, pdt_flagged=flagged)


def open_orders_notional(orders: Sequence[Order]) -> Decimal:
    return sum((o.limit_price or ZERO) * remaining(o) for o in orders) or ZERO
