"""Factories for pre-trade risk tests: a snapshot in which a plain buy is accepted.

Every factory takes keyword overrides, so a test states only what differs from the
baseline: an ACTIVE margin account with $100,000 settled cash, no positions and no history,
trading ACME (tick $0.01, lot 1, reference $100.00, LULD Tier 1) during the regular session,
under `RiskLimits.defaults()`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.risk.domain import (
    AccountState,
    AccountStatus,
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
    TradingState,
)

SYMBOL = "ACME"
# Tuesday 2026-01-06 15:00:00 UTC = 10:00 in New York: a regular session is running.
NOW_NS = int(datetime(2026, 1, 6, 15, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND
TODAY = date(2026, 1, 6)


def intent(**changes: Any) -> OrderIntent:
    """A DAY limit buy of 100 ACME at $100.00."""
    base = OrderIntent(
        account_id="acct-1",
        symbol=SYMBOL,
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.DAY,
        quantity=100,
        limit_price=Decimal("100.00"),
        client_order_id="c-1",
    )
    return dataclasses.replace(base, **changes)


def market_order(**changes: Any) -> OrderIntent:
    """A DAY market order (no limit price)."""
    return intent(order_type=OrderType.MARKET, limit_price=None, **changes)


def account(**changes: Any) -> AccountState:
    """Unless told otherwise, the day started at today's equity (no loss so far)."""
    base = AccountState(
        account_id="acct-1",
        account_type=AccountType.MARGIN,
        status=AccountStatus.ACTIVE,
        trading_state=TradingState.ACTIVE,
        cash_settled=Decimal("100000"),
        cash_unsettled=Decimal(0),
        cash_held=Decimal(0),
        long_market_value=Decimal(0),
        short_market_value=Decimal(0),
        start_of_day_equity=Decimal("100000"),
    )
    state = dataclasses.replace(base, **changes)
    if "start_of_day_equity" not in changes:
        state = dataclasses.replace(state, start_of_day_equity=state.equity)
    return state


def instrument(**changes: Any) -> InstrumentState:
    base = InstrumentState(
        symbol=SYMBOL,
        tick_size=Decimal("0.01"),
        lot_size=1,
        min_quantity=1,
        max_quantity=1_000_000,
        reference_price=Decimal("100.00"),
        band_tier=1,
        tradable=True,
        restricted=False,
        threshold_security=False,
        easy_to_borrow=False,
        halted=False,
    )
    return dataclasses.replace(base, **changes)


def market(**changes: Any) -> MarketState:
    base = MarketState(
        now_ns=NOW_NS,
        trading_date=TODAY,
        market_halted=False,
        session_open=True,
        enforce_session=True,
        best_bid=Decimal("99.99"),
        best_ask=Decimal("100.01"),
    )
    return dataclasses.replace(base, **changes)


def position(**changes: Any) -> PositionState:
    return dataclasses.replace(PositionState.flat(), **changes)


def long_position(shares: int, **changes: Any) -> PositionState:
    return position(quantity=shares, mark_price=Decimal("100.00"), **changes)


def short_position(shares: int, **changes: Any) -> PositionState:
    return position(quantity=-shares, mark_price=Decimal("100.00"), **changes)


def own_orders(**changes: Any) -> OwnOrders:
    return dataclasses.replace(OwnOrders(None, None, Decimal(0)), **changes)


def short_sale(**changes: Any) -> ShortSaleState:
    return dataclasses.replace(ShortSaleState(0, 0, False), **changes)


def day_trades(**changes: Any) -> DayTradeState:
    return dataclasses.replace(DayTradeState(0, 0, False), **changes)


def limits(**changes: Any) -> RiskLimits:
    return dataclasses.replace(RiskLimits.defaults(), **changes)


def recent(
    count: int,
    *,
    spacing_ns: int,
    age_ns: int = 0,
    accepted: bool = True,
    quantity: int = 100,
    side: Side = Side.BUY,
    limit_price: Decimal | None = Decimal("99.00"),
    symbol: str = SYMBOL,
) -> tuple[RecentOrder, ...]:
    """`count` earlier attempts, newest first: the newest `age_ns` old, then `spacing_ns` apart."""
    return tuple(
        RecentOrder(
            symbol=symbol,
            side=side,
            quantity=quantity,
            limit_price=limit_price,
            created_ns=NOW_NS - age_ns - i * spacing_ns,
            accepted=accepted,
        )
        for i in range(count)
    )


def snapshot(**changes: Any) -> RiskSnapshot:
    base = RiskSnapshot(
        account=account(),
        instrument=instrument(),
        market=market(),
        position=position(),
        own_orders=own_orders(),
        recent=(),
        short_sale=short_sale(),
        day_trades=day_trades(),
        limits=limits(),
        gross_exposure=Decimal(0),
    )
    return dataclasses.replace(base, **changes)
