"""Order vocabulary shared by trading, risk and the venue."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """Which way an order trades; SELL_SHORT is a sale marked short (Reg SHO Rule 200(g))."""

    BUY = "buy"
    SELL = "sell"
    SELL_SHORT = "sell_short"


class OrderType(StrEnum):
    """How an order is priced."""

    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    """How long an order stays working."""

    DAY = "day"
    IOC = "ioc"
    GTC = "gtc"


class StpMode(StrEnum):
    """What the venue does when an order would trade against the same account's order."""

    CANCEL_NEWEST = "cancel_newest"
    CANCEL_OLDEST = "cancel_oldest"
    CANCEL_BOTH = "cancel_both"
    DECREMENT = "decrement"


class BookSide(StrEnum):
    """The side of the order book an order rests on."""

    BID = "bid"
    ASK = "ask"


def book_side(side: Side) -> BookSide:
    """The book side an order of this side rests on."""
    return BookSide.BID if side is Side.BUY else BookSide.ASK
