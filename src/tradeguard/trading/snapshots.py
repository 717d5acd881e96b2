"""Builds the immutable pre-trade snapshot (risk/domain.py) from committed state.

Read inside the order's transaction, after the account row is locked, so the buying-power
check and the reservation that follows are atomic: no concurrent order of the same account
can spend the same money (SQLite serializes writers; PostgreSQL queues on the row lock).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
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
from tradeguard.trading.accounts import AccountService, Balances, balances_from, effective_limits
from tradeguard.trading.common import InstrumentInfo, TradingDeps
from tradeguard.trading.domain import ZERO, OrderStatus
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


@dataclass(frozen=True, slots=True)
class PositionMemo:
    symbol: str
    quantity: int
    cost_basis: Decimal
    activity_date: str
    opened_today_long: int
    opened_today_short: int


@dataclass(frozen=True, slots=True)
class OpenOrderMemo:
    order_id: str
    symbol: str
    side: Side
    remaining: int
    limit_price: Decimal | None


@dataclass(frozen=True, slots=True)
class SymbolOrders:
    """An account's open orders in one symbol, summed."""

    buy: int = 0
    sell: int = 0
    best_bid: Decimal | None = None  # its highest limit buy
    best_ask: Decimal | None = None  # its lowest limit sell (or short sale)

    def plus(self, order: OpenOrderMemo) -> SymbolOrders:
        price = order.limit_price
        if order.side is Side.BUY:
            best = self.best_bid
            if price is not None and (best is None or price > best):
                best = price
            return replace(self, buy=self.buy + order.remaining, best_bid=best)
        best = self.best_ask
        if price is not None and (best is None or price < best):
            best = price
        return replace(self, sell=self.sell + order.remaining, best_ask=best)


NO_ORDERS = SymbolOrders()


@dataclass(frozen=True, slots=True)
class OpenOrders:
    """What the checks need of an account's open orders, summed as they are read or added: an
    order's checks cost the same however many orders rest (summing them on every order cost
    more than the checks once an account had a hundred)."""

    # Limit price times quantity left, over the open limit orders.
    limit_notional: Decimal = ZERO
    # (symbol, quantity left) of open market orders: valued at the mark when read.
    market: tuple[tuple[str, int], ...] = ()
    # Never changed once built (`plus` makes a new one).
    by_symbol: Mapping[str, SymbolOrders] = field(default_factory=dict)

    @classmethod
    def of(cls, orders: Iterable[OpenOrderMemo]) -> OpenOrders:
        totals = cls()
        for order in orders:
            totals = totals.plus(order)
        return totals

    def plus(self, order: OpenOrderMemo) -> OpenOrders:
        by_symbol = dict(self.by_symbol)
        by_symbol[order.symbol] = by_symbol.get(order.symbol, NO_ORDERS).plus(order)
        if order.limit_price is None:
            return OpenOrders(
                self.limit_notional, (*self.market, (order.symbol, order.remaining)), by_symbol
            )
        notional = self.limit_notional + order.limit_price * order.remaining
        return OpenOrders(notional, self.market, by_symbol)

    def notional(self, mark: Callable[[str], Decimal | None]) -> Decimal:
        """Price times quantity left over every open order, a market order at the mark."""
        total = self.limit_notional
        for symbol, left in self.market:
            total += order_price(None, mark(symbol)) * left
        return total


@dataclass(frozen=True, slots=True)
class AccountMemo:
    """What the checks need of one account, as of the account row's `version`.

    Every writer that changes an account bumps its version in the same transaction; an order
    reads the version under the account lock and uses the memo only if it matches, so a
    memo is never stale when it is used (another process's change just costs a reload).
    """

    version: int
    balances: Balances
    positions: tuple[PositionMemo, ...]
    open_orders: OpenOrders
    recent: tuple[RecentOrder, ...]
    start_equity: tuple[str, Decimal] | None


def order_price(price: Decimal | None, mark: Decimal | None) -> Decimal:
    if price is not None:
        return price
    return mark if mark is not None else ZERO


MEMO_LIMIT = 50_000


class SnapshotBuilder:
    def __init__(self, deps: TradingDeps, accounts: AccountService) -> None:
        self.deps = deps
        self.accounts = accounts
        self._memos: dict[str, AccountMemo] = {}

    def reference_price(self, info: InstrumentInfo) -> Decimal | None:
        live = self.deps.market.reference_price(info.symbol)
        return live if live is not None else info.reference_price

    # The account memo ------------------------------------------------------------------------

    async def memo_for(self, session: AsyncSession, account: TradingAccount) -> AccountMemo:
        staged = repository.staging(session)
        if staged is not None:
            # An earlier order of this transaction changed the account: its memo, not yet
            # committed, is the one that holds here.
            memo = staged.memos.get(account.id)
            if memo is not None and memo.version == account.version:
                return memo  # type: ignore[no-any-return]
        memo = self._memos.get(account.id)
        if memo is not None and memo.version == account.version:
            return memo
        return await self._load(session, account)

    async def _load(self, session: AsyncSession, account: TradingAccount) -> AccountMemo:
        # What earlier orders of the transaction staged is part of what is read here.
        await self.deps.write_staged(session)
        balances = balances_from(
            account.id, account.currency, await repository.balances(session, account.id)
        )
        positions = tuple(
            PositionMemo(
                p.symbol,
                p.quantity,
                p.cost_basis,
                p.activity_date,
                p.opened_today_long,
                p.opened_today_short,
            )
            for p in await repository.positions(session, account.id)
        )
        open_orders = OpenOrders.of(
            OpenOrderMemo(row[0], row[1], Side(row[2]), row[3], row[4])
            for row in await repository.open_order_summaries(session, account.id)
        )
        recent = tuple(
            RecentOrder(
                symbol=row.symbol,
                side=Side(row.side),
                quantity=row.quantity,
                limit_price=row.limit_price,
                created_ns=row.created_ns,
                # A refused order, or one a halt cancelled, is no repeat to guard against.
                accepted=row.status != OrderStatus.REJECTED and row.cancel_reason != "halt",
            )
            for row in await repository.recent_orders(session, account.id, RECENT_ORDERS)
        )
        # Not remembered here: read inside a transaction that may still roll back, it would
        # outlive it. The order's own memo is remembered once its transaction committed.
        return AccountMemo(account.version, balances, positions, open_orders, recent, None)

    def remember(self, account_id: str, memo: AccountMemo) -> None:
        """Keep the newest memo of an account (called after its transaction committed)."""
        current = self._memos.get(account_id)
        if current is not None and current.version >= memo.version:
            return
        if len(self._memos) >= MEMO_LIMIT:
            self._memos.clear()
        self._memos[account_id] = memo

    def forget(self, account_id: str) -> None:
        self._memos.pop(account_id, None)

    @staticmethod
    def after_order(memo: AccountMemo, order: Order, *, version: int) -> AccountMemo:
        """The memo once this order (accepted or refused) is committed."""
        recent = (
            RecentOrder(
                symbol=order.symbol,
                side=Side(order.side),
                quantity=order.quantity,
                limit_price=order.limit_price,
                created_ns=order.created_ns,
                accepted=order.status != OrderStatus.REJECTED,
            ),
            *memo.recent[: RECENT_ORDERS - 1],
        )
        if order.status == OrderStatus.REJECTED:
            return replace(memo, version=version, recent=recent)
        balances = memo.balances
        shares_held = dict(balances.shares_held)
        if order.hold_shares:
            shares_held[order.symbol] = shares_held.get(order.symbol, 0) + order.hold_shares
        return replace(
            memo,
            version=version,
            recent=recent,
            balances=replace(
                balances, cash_held=balances.cash_held + order.hold_cash, shares_held=shares_held
            ),
            open_orders=memo.open_orders.plus(
                OpenOrderMemo(
                    order.id, order.symbol, Side(order.side), order.quantity, order.limit_price
                )
            ),
        )

    # The snapshot -------------------------------------------------------------------------------

    async def build(
        self,
        session: AsyncSession,
        *,
        account: TradingAccount,
        info: InstrumentInfo,
        intent: OrderIntent,
        rows: repository.StagedWrites | None = None,
    ) -> tuple[RiskSnapshot, AccountMemo]:
        """The snapshot the checks decide on, and the account's memo it came from. A
        start-of-day row recorded on the way is staged in `rows`, if given."""
        deps = self.deps
        now = deps.clock.now_ns()
        trading_date = deps.session_date(now)
        today = trading_date.isoformat()
        limits = effective_limits(deps.policy.limits, account)
        memo = await self.memo_for(session, account)
        state = self.accounts.state_from(account, memo.balances, memo.positions)
        if memo.start_equity is None or memo.start_equity[0] != today:
            await self.deps.write_staged(session)
            start = await self.accounts.start_of_day_equity(
                session, account.id, state.equity, rows=rows
            )
            memo = replace(memo, start_equity=(today, start))
        state = replace(state, start_of_day_equity=memo.start_equity[1])  # type: ignore[index]
        market_halted, symbol_halted = deps.reference.halted(info.symbol)

        open_notional = memo.open_orders.notional(self.accounts.mark)
        mine = memo.open_orders.by_symbol.get(info.symbol, NO_ORDERS)
        open_buy, open_sell, own_bid, own_ask = mine.buy, mine.sell, mine.best_bid, mine.best_ask
        gross = open_notional
        position_row: PositionMemo | None = None
        for pos in memo.positions:
            if pos.symbol == info.symbol:
                position_row = pos
            if pos.quantity:
                mark = self.accounts.mark(pos.symbol) or abs(pos.cost_basis / pos.quantity)
                gross += abs(pos.quantity) * mark
        position = PositionState(
            quantity=position_row.quantity if position_row else 0,
            held_for_sale=memo.balances.shares_held.get(info.symbol, 0),
            open_buy_quantity=open_buy,
            open_sell_quantity=open_sell,
            opened_today_long=(
                position_row.opened_today_long
                if position_row and position_row.activity_date == today
                else 0
            ),
            opened_today_short=(
                position_row.opened_today_short
                if position_row and position_row.activity_date == today
                else 0
            ),
            mark_price=self.accounts.mark(info.symbol),
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
            recent=memo.recent,
            short_sale=short_sale,
            day_trades=day_trades,
            limits=limits,
            gross_exposure=gross,
        )
        return snapshot, memo

    async def _short_sale(
        self, session: AsyncSession, account_id: str, symbol: str, intent: OrderIntent, now: int
    ) -> ShortSaleState:
        if intent.side is not Side.SELL_SHORT:
            return ShortSaleState(locate_available=0, preborrow_available=0, penalty_box=False)
        await self.deps.write_staged(session)  # the locates earlier orders used
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
        trading_date: date,
    ) -> DayTradeState:
        if account.account_type != AccountType.MARGIN:
            return DayTradeState(day_trades=0, total_trades=0, pdt_flagged=False)
        await self.deps.write_staged(session)
        days = [
            d.isoformat()
            for d in self.deps.calendar.business_days_ending(trading_date, limits.pdt_window_days)
        ]
        count = await repository.day_trades_in(session, account.id, days)
        total = await repository.executed_orders_in(session, account.id, days)
        flagged = (
            count >= limits.pdt_day_trades
            and total > 0
            and Decimal(count) / Decimal(total) > limits.pdt_min_share
        )
        return DayTradeState(day_trades=count, total_trades=total, pdt_flagged=flagged)
