"""Reg SHO Rule 204 close-out deadlines (17 CFR 242.204(a), (a)(1), (a)(2), (b)).

A participant of a registered clearing agency with a fail to deliver must close it out by
purchasing or borrowing securities of like kind and quantity:

- from a short sale: by no later than the beginning of regular trading hours on the
  settlement day following the settlement date, 204(a);
- from a long sale: by the beginning of regular trading hours on the third consecutive
  settlement day following the settlement date, 204(a)(1);
- from bona-fide market making: the same third settlement day, 204(a)(2).

A fail not closed out in time puts the security in the "penalty box", 204(b): short sales
in it may only be accepted against shares already borrowed (a pre-borrow) until the fail is
closed out by a purchase and that purchase has cleared and settled.

"Settlement day" is a day on which the clearing agency settles (the calendar's settlement
days: business days less Columbus Day and Veterans Day).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from tradeguard.core.calendar import SETTLEMENT_CYCLE, ExchangeCalendar


class FailOrigin(StrEnum):
    """What sale a fail to deliver came from; it sets the close-out period."""

    SHORT_SALE = "short_sale"
    LONG_SALE = "long_sale"
    MARKET_MAKING = "market_making"


_SETTLEMENT_DAYS_AFTER = {
    FailOrigin.SHORT_SALE: 1,  # 204(a)
    FailOrigin.LONG_SALE: 3,  # 204(a)(1)
    FailOrigin.MARKET_MAKING: 3,  # 204(a)(2)
}


def close_out_date(calendar: ExchangeCalendar, settlement_date: date, origin: FailOrigin) -> date:
    """The settlement day by whose market open the fail must be closed out."""
    return calendar.next_settlement_day(settlement_date, _SETTLEMENT_DAYS_AFTER[origin])


def close_out_deadline_ns(
    calendar: ExchangeCalendar,
    *,
    trade_date: date,
    origin: FailOrigin,
    cycle: int = SETTLEMENT_CYCLE,
) -> int:
    """The instant (epoch ns) by which a fail from a trade on `trade_date` must be closed out."""
    settlement = calendar.settlement_date(trade_date, cycle)
    return calendar.session_open_ns(close_out_date(calendar, settlement, origin))


def in_penalty_box(
    *, now_ns: int, deadline_ns: int, closed_out_ns: int | None, close_out_settled: bool
) -> bool:
    """204(b): the deadline passed without a close-out, and the late one has not settled yet."""
    if closed_out_ns is not None and closed_out_ns <= deadline_ns:
        return False  # closed out in time ("no later than the beginning" of the session)
    if now_ns <= deadline_ns:
        return False
    return not close_out_settled
