"""MAN-1 wash trading: one beneficial owner on both sides of a symbol, changing nothing.

The model (after FINRA Rule 6140(b) and the SEC's wash-sale definition in Exchange Act
section 9(a)(1): transactions "involving no change in beneficial ownership"; and RedDeer
Surveillance's wash-trade rule: net the buys against the sells within a window and cluster
the prices). For each beneficial owner (an account's user, or a group compliance linked)
and symbol it keeps the fills of the last `window`, and raises a finding at a fill when either

- at least `min_quantity` shares traded between the owner's own accounts in the window (an
  internal match with the owner on both sides: no change of beneficial ownership at all,
  whatever else the owner traded), or

- the owner's trades with others were round trips that changed nothing:

1. the owner both bought and sold at least `min_quantity` shares in the window;
2. the net change is small: |bought - sold| <= `max_net_fraction` x the larger side;
3. the prices are near: |average buy - average sell| <= `price_tolerance` x average sell,
   or at least `min_round_trips` round trips were each that near however the aggressive
   orders pair up (`_near_round_trips`: a market jump between one buy and its sale does not
   hide the others);
4. the trades had no economic purpose beyond volume: the owner took liquidity with at least
   `min_round_trips` buy orders and as many sell orders, and such aggressive fills are at
   least `min_aggressive_share` of its volume: paying the spread both ways, again and again,
   to print volume (one buy and one sell is ordinary trading, and a market maker's resting
   quotes earn the spread);

and for round trips the volume matters: the artificial volume (the owner's netted volume)
is at least `min_volume_share` of the symbol's volume recorded in the window. (A cross
between the owner's own accounts is a wash however busy the symbol: its share is evidence,
not a condition.)

A trader who buys and sells the same stock days apart is outside the window; a day trader
who takes a profit moves the price past the tolerance or makes one round trip; a market
maker buys and sells all day at near prices, but with others and as the resting side.

Volume counts each match once: an internal match is two fills (buyer and seller) with one
match id, a trade with the street one. Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from tradeguard.surveillance.book import BookTracker
from tradeguard.surveillance.domain import (
    PATTERN_EXECUTIONS_KEY,
    AlertType,
    Finding,
    WashParameters,
    ratio,
    score,
)
from tradeguard.surveillance.events import Fill

MAX_EVIDENCE_IDS = 100


class _Leg:
    __slots__ = (
        "account_id",
        "buy",
        "execution_id",
        "match_id",
        "notional",
        "order_id",
        "quantity",
        "self_match",
        "seq",
        "t",
        "taker",
    )

    def __init__(self, fill: Fill, t: int, *, self_match: bool) -> None:
        self.t = t
        self.seq = fill.seq
        self.buy = fill.buy
        self.quantity = fill.quantity
        self.notional = fill.price * fill.quantity
        self.execution_id = fill.execution_id
        self.match_id = fill.match_id
        self.order_id = fill.order_id
        self.account_id = fill.account_id
        self.taker = not fill.maker
        # The second fill of a match between the owner's own accounts (its quantity is
        # counted once in the owner's volume).
        self.self_match = self_match


class _Position:
    """One owner's fills in one symbol within the window, with running sums."""

    __slots__ = (
        "aggressive",
        "bought",
        "buy_notional",
        "buy_orders",
        "legs",
        "self_matched",
        "sell_notional",
        "sell_orders",
        "sold",
    )

    def __init__(self) -> None:
        self.legs: deque[_Leg] = deque()
        self.bought = 0
        self.sold = 0
        self.buy_notional = Decimal(0)
        self.sell_notional = Decimal(0)
        self.self_matched = 0
        # Shares of the fills that took liquidity.
        self.aggressive = 0
        # Fills per order that took liquidity in the window: how many distinct aggressive
        # orders traded on each side.
        self.buy_orders: dict[str, int] = {}
        self.sell_orders: dict[str, int] = {}

    def add(self, leg: _Leg) -> None:
        self.legs.append(leg)
        if leg.taker:
            self.aggressive += leg.quantity
            orders = self.buy_orders if leg.buy else self.sell_orders
            orders[leg.order_id] = orders.get(leg.order_id, 0) + 1
        if leg.buy:
            self.bought += leg.quantity
            self.buy_notional += leg.notional
        else:
            self.sold += leg.quantity
            self.sell_notional += leg.notional
        if leg.self_match:
            self.self_matched += leg.quantity

    def evict_before(self, t: int) -> None:
        legs = self.legs
        while legs and legs[0].t < t:
            leg = legs.popleft()
            if leg.taker:
                self.aggressive -= leg.quantity
                orders = self.buy_orders if leg.buy else self.sell_orders
                left = orders[leg.order_id] - 1
                if left:
                    orders[leg.order_id] = left
                else:
                    del orders[leg.order_id]
            if leg.buy:
                self.bought -= leg.quantity
                self.buy_notional -= leg.notional
            else:
                self.sold -= leg.quantity
                self.sell_notional -= leg.notional
            if leg.self_match:
                self.self_matched -= leg.quantity


class _SymbolVolume:
    __slots__ = ("fills", "total")

    def __init__(self) -> None:
        self.fills: deque[tuple[int, int]] = deque()
        self.total = 0

    def evict_before(self, t: int) -> None:
        fills = self.fills
        while fills and fills[0][0] < t:
            self.total -= fills.popleft()[1]


def _pattern_executions(legs: deque[_Leg], crossed: bool) -> list[str]:
    if not crossed:
        return [leg.execution_id for leg in legs][-MAX_EVIDENCE_IDS:]
    crosses = {leg.match_id for leg in legs if leg.self_match}
    return [leg.execution_id for leg in legs if leg.match_id in crosses][-MAX_EVIDENCE_IDS:]


class WashTradeDetector:
    def __init__(self, params: WashParameters, book: BookTracker, *, lookback_ns: int) -> None:
        self.params = params
        self._book = book
        self._lookback = lookback_ns
        self._positions: dict[tuple[str, str], _Position] = {}
        self._volume: dict[str, _SymbolVolume] = {}
        # The first fill of an internal match, by match id, until its other side arrives.
        self._open_matches: dict[str, tuple[int, str]] = {}
        self._open_order: deque[tuple[int, str]] = deque()

    def fill(self, event: Fill, t: int) -> Finding | None:
        params = self.params
        self_match = False
        counted = True
        if event.internal:
            first = self._open_matches.pop(event.match_id, None)
            if first is None:
                self._open_matches[event.match_id] = (t, event.owner)
                self._open_order.append((t, event.match_id))
            else:
                counted = False  # the match's volume was counted with its first side
                self_match = first[1] == event.owner
        self._forget_open_matches(t - self._lookback)
        volume = self._volume.get(event.symbol)
        if volume is None:
            volume = self._volume[event.symbol] = _SymbolVolume()
        start = t - params.window_ns
        if counted:
            volume.fills.append((t, event.quantity))
            volume.total += event.quantity
        volume.evict_before(start)
        key = (event.owner, event.symbol)
        position = self._positions.get(key)
        if position is None:
            position = self._positions[key] = _Position()
        position.add(_Leg(event, t, self_match=self_match))
        position.evict_before(start)
        if position.self_matched >= params.min_quantity:
            # Trades between the owner's own accounts: no change of beneficial ownership at
            # all, whatever else the owner did, and however busy the symbol (a market maker's
            # turnover hid crosses of a few hundred shares). The crossed shares are the
            # artificial volume.
            share = min(Decimal(1), ratio(position.self_matched, volume.total))
        else:
            found = self._round_trips(position, volume)
            if found is None or found < params.min_volume_share:
                return None
            share = found
        round_trips = min(len(position.buy_orders), len(position.sell_orders))
        return self._finding(event, t, position, share=share, round_trips=round_trips)

    def _round_trips(self, position: _Position, volume: _SymbolVolume) -> Decimal | None:
        """The artificial-volume share of aggressive round trips at near prices with little
        net change (criteria 1-4), or None when they are not that."""
        params = self.params
        matched = min(position.bought, position.sold)
        if matched < params.min_quantity:
            return None
        larger = max(position.bought, position.sold)
        net = larger - matched
        if net > params.max_net_fraction * larger:
            return None
        traded = position.bought + position.sold
        round_trips = min(len(position.buy_orders), len(position.sell_orders))
        if (
            round_trips < params.min_round_trips
            or position.aggressive < params.min_aggressive_share * traded
        ):
            return None
        average_buy = position.buy_notional / position.bought
        average_sell = position.sell_notional / position.sold
        if (
            abs(average_buy - average_sell) > params.price_tolerance * average_sell
            and _near_round_trips(position, params.price_tolerance) < params.min_round_trips
        ):
            return None
        owner_volume = traded - position.self_matched
        # The part of the owner's volume that netted out: it moved no shares anywhere.
        netted = Decimal(owner_volume) * (1 - ratio(net, traded))
        return min(Decimal(1), ratio(netted, volume.total))

    def _forget_open_matches(self, before: int) -> None:
        order = self._open_order
        while order and order[0][0] < before:
            self._open_matches.pop(order.popleft()[1], None)

    def _finding(
        self, event: Fill, t: int, position: _Position, *, share: Decimal, round_trips: int
    ) -> Finding:
        params = self.params
        legs = position.legs
        accounts = tuple(sorted({leg.account_id for leg in legs}))
        average_buy = position.buy_notional / position.bought
        average_sell = position.sell_notional / position.sold
        matched = min(position.bought, position.sold)
        larger = max(position.bought, position.sold)
        orders = sorted({leg.order_id for leg in legs})
        crossed = position.self_matched >= params.min_quantity
        excesses = [ratio(position.self_matched if crossed else matched, params.min_quantity)]
        if params.min_volume_share:
            excesses.append(share / params.min_volume_share)
        if not crossed:
            excesses.append(ratio(round_trips, params.min_round_trips))
        window_start = legs[0].t
        seconds = (t - window_start) / 1e9
        summary = (
            f"bought {position.bought} and sold {position.sold} {event.symbol} in "
            f"{seconds:.0f}s at average prices {_money(average_buy)} and "
            f"{_money(average_sell)}; {_percent(share)} of the symbol's volume"
        )
        if position.self_matched:
            summary += f"; {position.self_matched} shares between the owner's own accounts"
        return Finding(
            alert_type=AlertType.WASH_TRADE,
            symbol=event.symbol,
            owner=event.owner,
            accounts=accounts,
            score=score(*excesses),
            trigger_seq=event.seq,
            trigger_ns=t,
            window_start_ns=window_start,
            window_end_ns=t,
            summary=summary,
            order_ids=tuple(orders[:MAX_EVIDENCE_IDS]),
            execution_ids=tuple(leg.execution_id for leg in legs)[-MAX_EVIDENCE_IDS:],
            evidence={
                "bought": position.bought,
                "sold": position.sold,
                "average_buy_price": _money(average_buy),
                "average_sell_price": _money(average_sell),
                "net_fraction": _fraction(ratio(larger - matched, larger)),
                "price_difference_fraction": _fraction(
                    ratio(abs(average_buy - average_sell), average_sell)
                ),
                "self_matched_quantity": position.self_matched,
                "aggressive_quantity": position.aggressive,
                "aggressive_buy_orders": len(position.buy_orders),
                "aggressive_sell_orders": len(position.sell_orders),
                "artificial_volume_share": _fraction(share),
                "symbol_volume": self._volume[event.symbol].total,
                "window_seconds": params.window_ns // 1_000_000_000,
                "book": self._book.snapshot(event.symbol, suspects=orders),
                # The executions the pattern consists of: with crosses between the owner's
                # own accounts, both sides of each cross (the owner's other trades in the
                # window are context, not the wash); otherwise every round trip's.
                PATTERN_EXECUTIONS_KEY: _pattern_executions(legs, crossed),
            },
        )

    def sweep(self, now: int) -> None:
        """Drop owners and symbols with nothing left in the window (memory only: a key with
        only stale fills behaves exactly like a missing one)."""
        start = now - self.params.window_ns
        for key in [k for k, p in self._positions.items() if not p.legs or p.legs[-1].t < start]:
            del self._positions[key]
        for symbol in [s for s, v in self._volume.items() if not v.fills or v.fills[-1][0] < start]:
            del self._volume[symbol]


def _near_round_trips(position: _Position, tolerance: Decimal) -> int:
    """How many round trips were at near prices, however the owner's liquidity-taking orders
    are paired: each with the next one, on the other side, in time (a buy and the sale that
    follows it, or the reverse), pairs not sharing an order, counted from the first order
    in the window and from the second, the fewer of the two.

    What the window's average prices miss when the market jumps between one buy and its
    sale: the other round trips are still each at one price. A trader taking a profit on
    every round trip has none near, however they are paired (a sale and the next purchase
    at one price is not a round trip: pairing from the other order shows it)."""
    orders: list[tuple[bool, int, Decimal]] = []  # (buy, shares, value) per order
    last = ""
    for leg in position.legs:
        if not leg.taker:
            continue
        if leg.order_id == last:
            buy, shares, value = orders[-1]
            orders[-1] = (buy, shares + leg.quantity, value + leg.notional)
        else:
            orders.append((leg.buy, leg.quantity, leg.notional))
            last = leg.order_id
    counts = []
    for start in (0, 1):
        near = 0
        index = start
        while index + 1 < len(orders):
            (buy, shares, value), (other, other_shares, other_value) = orders[index : index + 2]
            if buy != other:
                price, other_price = value / shares, other_value / other_shares
                sell = other_price if buy else price
                if abs(price - other_price) <= tolerance * sell:
                    near += 1
                index += 2
            else:
                index += 1
        counts.append(near)
    return min(counts)


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))


def _fraction(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))


def _percent(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.1'))}%"
