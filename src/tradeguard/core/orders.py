"""Order vocabulary shared by trading, risk and the venue: sides, types, time in force, STP."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """The direction of an order as the customer enters it."""

    BUY = "buy"
    SELL = "sell"
    SELL_SHORT = "sell_short"


class OrderType(StrEnum):
    """Market orders take liquidity at any price inside protection; limit orders cap it."""

    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    """How long an order's unfilled remainder may rest on the book."""

    DAY = "day"
    IOC = "ioc"
    GTC = "gtc"


class StpMode(StrEnum):
    """Self-trade prevention, decided by the incoming order (FIX 2964, CME, Nasdaq semantics)."""

    CANCEL_NEWEST = "cancel_newest"  # cancel the incoming remainder; the resting order stays
    CANCEL_OLDEST = "cancel_oldest"  # cancel the resting order, keep matching the incoming one
    CANCEL_BOTH = "cancel_both"  # cancel the resting order and the incoming remainder
    DECREMENT = "decrement"  # reduce both by the overlap; cancel whichever reaches zero


class BookSide(StrEnum):
    """The side of the order book an order rests on: bids buy, asks sell."""

    BID = "bid"
    ASK = "ask"


def book_side(side: Side) -> BookSide:
    """The book side of an order side; a short sale is an ask like any other sale."""
    return BookSide.BID if side is Side.BUY else BookSide.ASK
