"""Price-time priority limit order book for one symbol, with self-trade prevention.

Prices are integer ticks and quantities integer shares (`venue.ticks` converts Decimal
prices with the instrument's tick size), so matching never rounds. A trade prints at the
resting (maker) order's price. Orders at a better price always trade first; at one price,
the order that arrived first trades first, and a quantity reduction keeps its place.

Self-trade prevention (STP): two orders of the same owner never trade with each other. When
an incoming order reaches a resting order of its own owner, the incoming order's `StpMode`
decides what is cancelled (`core.orders.StpMode`); whatever is cancelled is reported, never
silently dropped, so the caller can release reservations and audit it.

Layout, chosen by measurement (`bench/matching.py`): each side keeps its price levels in a
dict keyed by price, each level an `OrderedDict` (FIFO with O(1) removal of any order), and
a plain list of the occupied prices kept sorted with `bisect` so the best level is always
the last element (bids by price, asks by negated price). A plain list beats a balanced
structure here because a book has at most a few thousand occupied prices inside the price
collars, and inserting near the touch moves only the few pointers above it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from tradeguard.core.errors import Conflict, InvalidInput
from tradeguard.core.orders import BookSide, StpMode, TimeInForce

# Below every possible key: a market order without price protection may reach any price.
_UNBOUNDED = -(1 << 63)


class CancelReason(StrEnum):
    """Why (the last part of) an incoming order's quantity was cancelled instead of resting."""

    IOC = "ioc"  # an immediate-or-cancel remainder
    NO_LIQUIDITY = "no_liquidity"  # a market order found no more resting orders
    PRICE_PROTECTION = "price_protection"  # a market order reached its protection price
    SELF_TRADE = "self_trade"  # self-trade prevention cancelled or decremented it


@dataclass(frozen=True, slots=True)
class IncomingOrder:
    """A new order for the book; `limit_ticks=None` makes it a market order."""

    order_id: str
    owner: str
    side: BookSide
    quantity: int
    limit_ticks: int | None
    tif: TimeInForce
    # The furthest price a market order may trade at (the caller's collar band edge): a buy
    # never pays more, a sell never receives less. Limit orders are bounded by their limit.
    protection_ticks: int | None = None
    stp: StpMode = StpMode.CANCEL_NEWEST


class Fill(NamedTuple):
    """One trade between the incoming (taker) order and a resting (maker) order."""

    taker_order_id: str
    taker_owner: str
    maker_order_id: str
    maker_owner: str
    price_ticks: int
    quantity: int


class MatchResult(NamedTuple):
    """What one submission did: quantity filled + rested + cancelled = quantity submitted."""

    fills: tuple[Fill, ...]
    rested: int
    cancelled: int
    cancel_reason: CancelReason | None
    # Resting orders STP cancelled or decremented, with the quantity taken from each.
    stp_cancelled: tuple[tuple[str, int], ...]
    # The part of `cancelled` removed by STP (the rest, if any, by `cancel_reason`).
    self_trade_cancelled: int

    @property
    def filled(self) -> int:
        """Total quantity of the incoming order that traded."""
        return sum(fill.quantity for fill in self.fills)


class RestingOrder(NamedTuple):
    """A snapshot of an order resting on the book."""

    order_id: str
    owner: str
    side: BookSide
    price_ticks: int
    remaining: int


class Depth(NamedTuple):
    """Aggregated price levels, best first: `(price_ticks, total_quantity)` per level."""

    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


class _Resting:
    """An order on the book; mutable so a fill or reduction keeps its place in the queue."""

    __slots__ = ("half", "order_id", "owner", "price", "remaining")

    def __init__(self, order_id: str, owner: str, remaining: int, price: int, half: _Half) -> None:
        self.order_id = order_id
        self.owner = owner
        self.remaining = remaining
        self.price = price
        self.half = half


class _Half:
    """One side of the book."""

    __slots__ = ("keys", "levels", "side", "sign", "sizes")

    def __init__(self, side: BookSide) -> None:
        self.side = side
        # key = sign * price, so on both sides the best price has the largest key.
        self.sign = 1 if side is BookSide.BID else -1
        self.keys: list[int] = []  # ascending; the best level is keys[-1]
        self.levels: dict[int, OrderedDict[str, _Resting]] = {}
        self.sizes: dict[int, int] = {}  # total remaining quantity per price

    def best(self) -> tuple[int, int] | None:
        if not self.keys:
            return None
        price = self.keys[-1] * self.sign
        return price, self.sizes[price]

    def remove_level(self, price: int) -> None:
        del self.levels[price]
        del self.sizes[price]
        keys = self.keys
        key = price * self.sign
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]


_NO_FILLS: tuple[Fill, ...] = ()
_NO_STP: tuple[tuple[str, int], ...] = ()
# Enum members bound to module names: on Python 3.11 `Enum.MEMBER` is an attribute lookup
# through the enum's metaclass (~100 ns), several per order on the hot path.
_BID = BookSide.BID
_IOC_TIF = TimeInForce.IOC
_CANCEL_NEWEST = StpMode.CANCEL_NEWEST
_CANCEL_BOTH = StpMode.CANCEL_BOTH
_DECREMENT = StpMode.DECREMENT
_IOC = CancelReason.IOC
_NO_LIQUIDITY = CancelReason.NO_LIQUIDITY
_PRICE_PROTECTION = CancelReason.PRICE_PROTECTION
_SELF_TRADE = CancelReason.SELF_TRADE


class OrderBook:
    """The limit order book of one symbol; single writer (the venue shards by symbol)."""

    __slots__ = ("_asks", "_bids", "_by_owner", "_orders", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._bids = _Half(BookSide.BID)
        self._asks = _Half(BookSide.ASK)
        self._orders: dict[str, _Resting] = {}
        # owner -> their resting orders in arrival order, for listing and mass cancel.
        self._by_owner: dict[str, dict[str, _Resting]] = {}

    # -- queries -------------------------------------------------------------------------

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def __len__(self) -> int:
        return len(self._orders)

    def remaining(self, order_id: str) -> int | None:
        """Quantity still resting for `order_id`, or None if it is not on the book."""
        rec = self._orders.get(order_id)
        return None if rec is None else rec.remaining

    def best_bid(self) -> tuple[int, int] | None:
        """`(price_ticks, total_quantity)` of the highest bid, or None."""
        return self._bids.best()

    def best_ask(self) -> tuple[int, int] | None:
        """`(price_ticks, total_quantity)` of the lowest ask, or None."""
        return self._asks.best()

    def depth(self, levels: int) -> Depth:
        """The best `levels` price levels of each side."""
        if levels < 0:
            raise InvalidInput("depth needs a non-negative number of levels")
        return Depth(_top(self._bids, levels), _top(self._asks, levels))

    def open_orders(self, owner: str | None = None) -> list[RestingOrder]:
        """Resting orders of `owner` (of everyone if None), oldest first."""
        recs = self._orders if owner is None else self._by_owner.get(owner, {})
        return [
            RestingOrder(r.order_id, r.owner, r.half.side, r.price, r.remaining)
            for r in recs.values()
        ]

    # -- commands ------------------------------------------------------------------------

    def cancel(self, order_id: str) -> int | None:
        """Remove a resting order; the quantity removed, or None if it was not resting."""
        rec = self._orders.get(order_id)
        if rec is None:
            return None
        self._remove(rec)
        return rec.remaining

    def reduce(self, order_id: str, new_remaining: int) -> int | None:
        """Lower a resting order's quantity in place (it keeps its time priority).

        Returns the quantity removed, or None if the order is not resting. An increase is
        refused: more quantity must queue behind the orders already waiting at that price.
        """
        rec = self._orders.get(order_id)
        if rec is None:
            return None
        if new_remaining < 1:
            raise InvalidInput("a reduction must leave at least 1; cancel the order instead")
        removed = rec.remaining - new_remaining
        if removed < 0:
            raise InvalidInput("an order's quantity can only be reduced in place")
        rec.remaining = new_remaining
        rec.half.sizes[rec.price] -= removed
        return removed

    def submit(self, order: IncomingOrder) -> MatchResult:  # noqa: C901, PLR0912, PLR0915
        """Match an incoming order against the book, then rest, or cancel, its remainder."""
        # One function on purpose: this is the hot path, and splitting it into helpers
        # costs a call and a result object per price level.
        quantity = order.quantity
        limit = order.limit_ticks
        protection = order.protection_ticks
        # Exact type checks: a float or Decimal here would match without the caller noticing
        # that it skipped the tick conversion.
        if type(quantity) is not int or quantity < 1:
            raise InvalidInput("quantity must be a whole number of at least 1")
        if limit is not None:
            if type(limit) is not int or limit < 1:
                raise InvalidInput("limit price must be a whole number of ticks, at least 1")
            if protection is not None:
                raise InvalidInput("price protection applies to market orders only")
        elif protection is not None and (type(protection) is not int or protection < 1):
            raise InvalidInput("protection price must be a whole number of ticks, at least 1")
        order_id = order.order_id
        if order_id in self._orders:
            raise Conflict("an order with this id is already on the book")

        if order.side is _BID:
            own, opposite = self._bids, self._asks
        else:
            own, opposite = self._asks, self._bids
        osign = opposite.sign
        if limit is not None:
            bound = limit * osign
        elif protection is not None:
            bound = protection * osign
        else:
            bound = _UNBOUNDED
        keys = opposite.keys
        levels = opposite.levels
        sizes = opposite.sizes
        orders = self._orders
        owner = order.owner

        remaining = quantity
        fills: list[Fill] | None = None
        stp_hits: list[tuple[str, int]] | None = None
        self_trade = 0
        stop: CancelReason | None = None
        while remaining:
            if not keys:
                stop = _NO_LIQUIDITY
                break
            key = keys[-1]
            if key < bound:
                stop = _PRICE_PROTECTION
                break
            price = key * osign
            level = levels[price]
            size = sizes[price]
            while remaining and level:
                rec = next(iter(level.values()))
                if rec.owner == owner:
                    # Self-trade prevention: this pair must not trade (wash trade, PRE-3).
                    mode = order.stp
                    if mode is _CANCEL_NEWEST:
                        stop = _SELF_TRADE
                        break
                    if stp_hits is None:
                        stp_hits = []
                    if mode is _DECREMENT:
                        overlap = min(remaining, rec.remaining)
                        remaining -= overlap
                        self_trade += overlap
                        size -= overlap
                        stp_hits.append((rec.order_id, overlap))
                        if overlap == rec.remaining:
                            self._unlink(rec, level)
                        rec.remaining -= overlap
                        continue
                    stp_hits.append((rec.order_id, rec.remaining))
                    size -= rec.remaining
                    self._unlink(rec, level)
                    if mode is _CANCEL_BOTH:
                        stop = _SELF_TRADE
                        break
                    continue  # CANCEL_OLDEST: the incoming order keeps matching
                traded = remaining if remaining < rec.remaining else rec.remaining
                if fills is None:
                    fills = []
                fills.append(Fill(order_id, owner, rec.order_id, rec.owner, price, traded))
                remaining -= traded
                size -= traded
                if traded == rec.remaining:
                    # Inline of _unlink: a full fill is the commonest removal.
                    level.popitem(last=False)
                    del orders[rec.order_id]
                    owned = self._by_owner[rec.owner]
                    del owned[rec.order_id]
                    if not owned:
                        del self._by_owner[rec.owner]
                    rec.remaining = 0
                else:
                    rec.remaining -= traded
            if level:
                sizes[price] = size
            else:
                keys.pop()
                del levels[price]
                del sizes[price]
            if stop is not None:
                break

        rested = 0
        cancelled = self_trade
        reason: CancelReason | None = _SELF_TRADE if self_trade else None
        if remaining:
            if stop is _SELF_TRADE:
                self_trade += remaining
                cancelled += remaining
                reason = stop
            elif limit is None:
                # A market order never rests, whatever its time in force.
                cancelled += remaining
                reason = stop
            elif order.tif is _IOC_TIF:
                cancelled += remaining
                reason = _IOC
            else:
                rested = remaining
                rec = _Resting(order_id, owner, remaining, limit, own)
                own_level = own.levels.get(limit)
                if own_level is None:
                    own.levels[limit] = OrderedDict(((order_id, rec),))
                    own.sizes[limit] = remaining
                    insort(own.keys, limit * own.sign)
                else:
                    own_level[order_id] = rec
                    own.sizes[limit] += remaining
                orders[order_id] = rec
                mine = self._by_owner.get(owner)
                if mine is None:
                    self._by_owner[owner] = {order_id: rec}
                else:
                    mine[order_id] = rec
        return MatchResult(
            _NO_FILLS if fills is None else tuple(fills),
            rested,
            cancelled,
            reason,
            _NO_STP if stp_hits is None else tuple(stp_hits),
            self_trade,
        )

    # -- internals -----------------------------------------------------------------------

    def _unlink(self, rec: _Resting, level: OrderedDict[str, _Resting]) -> None:
        """Take a resting order out of its level and the indexes (the level may empty)."""
        del level[rec.order_id]
        del self._orders[rec.order_id]
        owned = self._by_owner[rec.owner]
        del owned[rec.order_id]
        if not owned:
            del self._by_owner[rec.owner]

    def _remove(self, rec: _Resting) -> None:
        """Take a resting order off the book outside matching, dropping an emptied level."""
        half = rec.half
        level = half.levels[rec.price]
        self._unlink(rec, level)
        if level:
            half.sizes[rec.price] -= rec.remaining
        else:
            half.remove_level(rec.price)


def _top(half: _Half, levels: int) -> list[tuple[int, int]]:
    keys = half.keys
    sign = half.sign
    sizes = half.sizes
    return [(k * sign, sizes[k * sign]) for k in reversed(keys[max(0, len(keys) - levels) :])]
