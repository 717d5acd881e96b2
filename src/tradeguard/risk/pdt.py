"""Pattern day trader rules, FINRA Rule 4210(f)(8)(B).

A day trade is the purchase and sale (or the short sale and purchase) of the same security
on the same day in a margin account, 4210(f)(8)(B)(i). A customer who makes four or more day
trades within five business days is a pattern day trader, provided those day trades are
more than six percent of the customer's trades in the margin account over the same five
days, 4210(f)(8)(B)(ii). A pattern day trader must keep at least $25,000 equity in the
account before day trading, 4210(f)(8)(B)(iv)(a). Cash accounts are not subject to the rule.
The thresholds live in `RiskLimits` because FINRA has proposed replacing them.

Counting method (the one most brokers publish): an order that closes shares opened today
creates one day trade, however many shares and however many executions it takes; several
purchases followed by one sale count once, one purchase followed by two sales counts
twice. A sale is matched against today's purchases first, so selling shares held overnight
is a day trade as soon as shares bought today are part of the position.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from tradeguard.core.orders import Side
from tradeguard.risk.domain import DayTradeState, PositionState, RiskLimits


def would_day_trade(side: Side, position: PositionState) -> bool:
    """Whether executing an order of this side would close shares opened today."""
    if side is Side.BUY:
        return position.quantity < 0 and position.opened_today_short > 0
    return position.quantity > 0 and position.opened_today_long > 0


def is_pattern_day_trader(day_trades: int, total_trades: int, limits: RiskLimits) -> bool:
    """4210(f)(8)(B)(ii): enough day trades in the window, and more than the minimum share."""
    if day_trades < limits.pdt_day_trades or total_trades <= 0:
        return False
    # Integer-exact: day_trades / total_trades > pdt_min_share.
    return day_trades > limits.pdt_min_share * total_trades


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One executed order in a margin account, for the rolling PDT count."""

    trade_date: date
    day_trade: bool


def tally_day_trades(
    records: Iterable[TradeRecord], window: tuple[date, ...], *, flagged: bool
) -> DayTradeState:
    """Count the day trades and all trades whose dates fall in the business-day window."""
    days = frozenset(window)
    day_trades = 0
    total = 0
    for record in records:
        if record.trade_date in days:
            total += 1
            day_trades += record.day_trade
    return DayTradeState(day_trades=day_trades, total_trades=total, pdt_flagged=flagged)
