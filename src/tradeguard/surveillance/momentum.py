"""Momentum ignition (PRE-3, unusual order patterns): one owner's burst of aggressive orders
moves the price, and the owner trades out the other way at the moved price.

The model (after FINRA's description of momentum ignition among the manipulative
strategies its cross-market surveillance looks for, and the indicators of manipulative
behaviour in Commission Delegated Regulation (EU) 2016/522, Annex II, under MAR Article 12,
which name momentum ignition; the exact paragraph is not checked here): a trader sends a
series of marketable orders in one direction to start or exaggerate a price move, so that
others (algorithms among them) follow, and then trades in the opposite direction at the
price the move reached. Per symbol, at each liquidity-taking
fill of an owner:

1. **the burst**: the owner's liquidity-taking fills on that side within `window` come from
   at least `min_orders` orders or add up to at least `min_quantity` shares;
2. **levels taken out**: they printed at `min_levels` distinct prices or more;
3. **the move**: from the reference (the symbol's last price before the burst, if it printed
   within `window` of it; else the burst's first price) to the burst's furthest price, the
   price moved at least `min_move_bps` basis points the owner's way;
4. **the owner's weight**: the owner's shares are at least `min_owner_share` of the symbol's
   liquidity-taking volume on that side in the window (the owner made the move);

which makes an *ignition*; then, within `unwind_window` of the ignition's last fill:

5. **the unwind**: the owner traded at least `min_unwind_fraction` of the ignition's shares
   the other way (passive orders resting at the moved price, or aggressive ones), at an
   average price at least `min_profit_bps` better than the ignition's average price.

Honest near-misses: an institution working a large order aggressively with no reversal (5
never happens); a trader buying hard on news and holding (the same); a trader who sells
days later (outside the unwind window); a trader who sells at a loss (5 fails on profit).

**Incremental.** Per symbol: a queue of the liquidity-taking fills within `window` with
running totals per side; per owner and side, the owner's own liquidity-taking fills within
`window` with running totals (shares, and per-order and per-price counts, so distinct
orders and levels are O(1)) and a monotonic queue of its furthest price. A fill leaving the
window leaves both (the symbol's queue names its owner's burst), and an emptied burst is
forgotten, so memory is bounded by the window's fills. An ignition is
built once from the owner's window (at most once per `window` per owner and side: a fill
within `window` of the ignition's start extends it instead), and an unwind only adds to its
totals: nothing rescans a window per event.

**Restart.** An ignition starts within `unwind_window + window` of any fill it is judged at;
its fills and references reach `2 * window` before that; so the state is a function of the
last `MomentumParameters.reach_ns` of events (surveillance/engine.py). Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import TypeVar

from tradeguard.surveillance.book import BookTracker
from tradeguard.surveillance.domain import (
    AlertType,
    Finding,
    MomentumParameters,
    ratio,
    score,
)
from tradeguard.surveillance.events import Fill

MAX_EVIDENCE_IDS = 100
_BPS = Decimal(10_000)
_Key = TypeVar("_Key", str, Decimal)


# One liquidity-taking fill of an owner: (its time, the fill, the symbol's price before it
# if that printed within the window, else None).
_Take = tuple[int, Fill, Decimal | None]


class _Burst:
    """One owner's liquidity-taking fills on one side of one symbol within the window."""

    __slots__ = ("extremes", "orders", "prices", "quantity", "takes")

    def __init__(self) -> None:
        self.takes: deque[_Take] = deque()
        self.quantity = 0
        # Fills per order and per price within the window: distinct orders and levels.
        self.orders: dict[str, int] = {}
        self.prices: dict[Decimal, int] = {}
        # Monotonic queue of (time, price): the furthest price the owner's way at the front.
        self.extremes: deque[tuple[int, Decimal]] = deque()

    def add(self, take: _Take, buy: bool) -> None:
        t, fill, _ = take
        self.takes.append(take)
        self.quantity += fill.quantity
        orders, prices, price = self.orders, self.prices, fill.price
        orders[fill.order_id] = orders.get(fill.order_id, 0) + 1
        prices[price] = prices.get(price, 0) + 1
        extremes = self.extremes
        if buy:
            while extremes and extremes[-1][1] <= price:
                extremes.pop()
        else:
            while extremes and extremes[-1][1] >= price:
                extremes.pop()
        extremes.append((t, price))

    def evict_oldest(self) -> None:
        """Its oldest fill left the window."""
        fill = self.takes.popleft()[1]
        self.quantity -= fill.quantity
        _decrement(self.orders, fill.order_id)
        _decrement(self.prices, fill.price)
        takes, extremes = self.takes, self.extremes
        if not takes:
            extremes.clear()
            return
        oldest = takes[0][0]
        while extremes[0][0] < oldest:
            extremes.popleft()

    @property
    def reference(self) -> Decimal:
        _, fill, reference = self.takes[0]
        return reference if reference is not None else fill.price


class _Ignition:
    """A burst that met criteria 1-4, extended by the owner's further fills that side
    within `window` of its start, and what the owner traded the other way since."""

    __slots__ = (
        "accounts",
        "buy",
        "execution_ids",
        "extreme",
        "last_t",
        "levels",
        "notional",
        "order_ids",
        "orders",
        "quantity",
        "reference",
        "share",
        "start_t",
        "unwind_execution_ids",
        "unwind_notional",
        "unwind_order_ids",
        "unwind_passive",
        "unwound",
    )

    def __init__(self, burst: _Burst, buy: bool, share: Decimal, t: int) -> None:
        fills = [take[1] for take in burst.takes]
        self.buy = buy
        self.start_t = burst.takes[0][0]
        self.last_t = t
        self.reference = burst.reference
        self.extreme = burst.extremes[0][1]
        self.quantity = burst.quantity
        self.notional = sum((fill.price * fill.quantity for fill in fills), Decimal(0))
        self.orders = len(burst.orders)
        self.levels = len(burst.prices)
        self.share = share
        self.accounts = {fill.account_id for fill in fills}
        self.order_ids = list(dict.fromkeys(fill.order_id for fill in fills))
        self.execution_ids = [fill.execution_id for fill in fills][:MAX_EVIDENCE_IDS]
        self.unwound = 0
        self.unwind_passive = 0
        self.unwind_notional = Decimal(0)
        self.unwind_order_ids: list[str] = []
        self.unwind_execution_ids: list[str] = []

    def extend(self, fill: Fill, t: int, burst: _Burst, share: Decimal) -> None:
        self.last_t = t
        self.quantity += fill.quantity
        self.notional += fill.price * fill.quantity
        if (fill.price > self.extreme) if self.buy else (fill.price < self.extreme):
            self.extreme = fill.price
        self.orders = max(self.orders, len(burst.orders))
        self.levels = max(self.levels, len(burst.prices))
        self.share = max(self.share, share)
        self.accounts.add(fill.account_id)
        if fill.order_id not in self.order_ids[-1:]:
            self.order_ids.append(fill.order_id)
        if len(self.execution_ids) < MAX_EVIDENCE_IDS:
            self.execution_ids.append(fill.execution_id)

    def unwind(self, fill: Fill) -> None:
        self.unwound += fill.quantity
        self.unwind_notional += fill.price * fill.quantity
        if fill.maker:
            self.unwind_passive += fill.quantity
        self.accounts.add(fill.account_id)
        if fill.order_id not in self.unwind_order_ids[-1:]:
            self.unwind_order_ids.append(fill.order_id)
        if len(self.unwind_execution_ids) < MAX_EVIDENCE_IDS:
            self.unwind_execution_ids.append(fill.execution_id)


class _Tape:
    """One symbol: its last price, the liquidity-taking volume per side within the window,
    and each owner's bursts and live ignitions."""

    __slots__ = ("bursts", "ignitions", "last_price", "last_t", "taken", "volume")

    def __init__(self) -> None:
        # The last fill's time and price (-1 and None before the first).
        self.last_t = -1
        self.last_price: Decimal | None = None
        # (time, side, shares, the owner's burst key) of each liquidity-taking fill.
        self.taken: deque[tuple[int, int, int, tuple[str, bool]]] = deque()
        self.volume = [0, 0]  # liquidity-taking shares bought, sold within the window
        self.bursts: dict[tuple[str, bool], _Burst] = {}
        self.ignitions: dict[tuple[str, bool], _Ignition] = {}


class MomentumIgnitionDetector:
    def __init__(self, params: MomentumParameters, book: BookTracker) -> None:
        self.params = params
        self._book = book
        self._tapes: dict[str, _Tape] = {}
        # min_owner_share as a fraction of integers: the per-fill test stays in integers.
        self._share = params.min_owner_share.as_integer_ratio()

    def fill(self, event: Fill, t: int) -> Finding | None:
        params = self.params
        tape = self._tapes.get(event.symbol)
        if tape is None:
            tape = self._tapes[event.symbol] = _Tape()
        start = t - params.window_ns
        # The symbol's price before this fill, if it printed within the window.
        reference = tape.last_price if tape.last_t >= start else None
        tape.last_t, tape.last_price = t, event.price
        taken = tape.taken
        if taken and taken[0][0] < start:
            # Fills leaving the window leave the symbol's totals and their owner's burst
            # (an owner whose burst empties is forgotten: memory bounded by the window).
            volume, bursts = tape.volume, tape.bursts
            while taken and taken[0][0] < start:
                _, side, quantity, key = taken.popleft()
                volume[side] -= quantity
                burst = bursts[key]
                burst.evict_oldest()
                if not burst.takes:
                    del bursts[key]
        # (5) a fill the other way unwinds the owner's live ignition, if any.
        found = self._unwind(tape, event, t) if tape.ignitions else None
        if not event.maker:
            self._take(tape, event, t, reference)
        return found

    def _unwind(self, tape: _Tape, event: Fill, t: int) -> Finding | None:
        key = (event.owner, not event.buy)
        ignition = tape.ignitions.get(key)
        if ignition is None:
            return None
        if t - ignition.last_t > self.params.unwind_window_ns:
            del tape.ignitions[key]
            return None
        ignition.unwind(event)
        found = self._judge(event, t, ignition)
        if found is not None:
            del tape.ignitions[key]
        return found

    def _take(self, tape: _Tape, event: Fill, t: int, reference: Decimal | None) -> None:
        """A liquidity-taking fill: into the owner's burst, extending its ignition or making
        one (criteria 1-4)."""
        params = self.params
        buy = event.buy
        side = 0 if buy else 1
        key = (event.owner, buy)
        tape.taken.append((t, side, event.quantity, key))
        volume = tape.volume
        volume[side] += event.quantity
        burst = tape.bursts.get(key)
        if burst is None:
            burst = tape.bursts[key] = _Burst()
        burst.add((t, event, reference), buy)
        if tape.ignitions:
            ignition = tape.ignitions.get(key)
            if ignition is not None and t - ignition.start_t <= params.window_ns:
                ignition.extend(event, t, burst, ratio(burst.quantity, volume[side]))
                return
        # (1) the burst, (2) levels, (4) weight (in integers: most fills stop here), then
        # (3) the move.
        share_numerator, share_denominator = self._share
        if (
            (len(burst.orders) < params.min_orders and burst.quantity < params.min_quantity)
            or len(burst.prices) < params.min_levels
            or burst.quantity * share_denominator < share_numerator * volume[side]
        ):
            return
        reference_price = burst.reference
        extreme = burst.extremes[0][1]
        move = (extreme - reference_price) if buy else (reference_price - extreme)
        if move * _BPS < params.min_move_bps * reference_price:
            return
        share = ratio(burst.quantity, volume[side])
        tape.ignitions[key] = _Ignition(burst, buy, share, t)

    def _judge(self, event: Fill, t: int, ignition: _Ignition) -> Finding | None:
        params = self.params
        if ignition.unwound < params.min_unwind_fraction * ignition.quantity:
            return None
        average_in = ignition.notional / ignition.quantity
        average_out = ignition.unwind_notional / ignition.unwound
        gain = (average_out - average_in) if ignition.buy else (average_in - average_out)
        profit_bps = gain * _BPS / average_in
        if profit_bps < params.min_profit_bps:
            return None
        reference, extreme = ignition.reference, ignition.extreme
        move_bps = abs(extreme - reference) * _BPS / reference
        orders = ignition.order_ids + [
            o for o in ignition.unwind_order_ids if o not in ignition.order_ids
        ]
        executions = ignition.execution_ids + ignition.unwind_execution_ids
        direction, back = ("bought", "sold") if ignition.buy else ("sold", "bought")
        seconds = (t - ignition.last_t) / 1e9
        unwound_fraction = ratio(ignition.unwound, ignition.quantity)
        summary = (
            f"{direction} {ignition.quantity} {event.symbol} in {ignition.orders} aggressive "
            f"order(s) at {ignition.levels} prices ({_percent(ignition.share)} of the aggressive "
            f"volume), moving the price {_bps(move_bps)} from {reference} to {extreme}; then "
            f"{back} {ignition.unwound} at {_money(average_out)} on average against "
            f"{_money(average_in)} ({_bps(profit_bps)} better) within {seconds:.0f}s"
        )
        return Finding(
            alert_type=AlertType.MOMENTUM_IGNITION,
            symbol=event.symbol,
            owner=event.owner,
            accounts=tuple(sorted(ignition.accounts)),
            score=score(
                max(
                    ratio(ignition.orders, params.min_orders),
                    ratio(ignition.quantity, params.min_quantity),
                ),
                ratio(ignition.levels, params.min_levels),
                ratio(move_bps, params.min_move_bps),
                ratio(ignition.share, params.min_owner_share),
            ),
            trigger_seq=event.seq,
            trigger_ns=t,
            window_start_ns=ignition.start_t,
            window_end_ns=t,
            summary=summary,
            order_ids=tuple(orders[:MAX_EVIDENCE_IDS]),
            execution_ids=tuple(executions[:MAX_EVIDENCE_IDS]),
            evidence={
                "side": "buy" if ignition.buy else "sell",
                "ignition_orders": ignition.orders,
                "ignition_order_ids": ignition.order_ids[:MAX_EVIDENCE_IDS],
                "ignition_quantity": ignition.quantity,
                "ignition_levels": ignition.levels,
                "average_ignition_price": _money(average_in),
                "price_before": str(reference),
                "price_after": str(extreme),
                "move_bps": _fraction(move_bps),
                "owner_aggressive_share": _fraction(ignition.share),
                "ignition_start_ns": ignition.start_t,
                "ignition_end_ns": ignition.last_t,
                "unwind_order_ids": ignition.unwind_order_ids[:MAX_EVIDENCE_IDS],
                "unwound_quantity": ignition.unwound,
                "unwound_fraction": _fraction(unwound_fraction),
                "unwound_passive_quantity": ignition.unwind_passive,
                "average_unwind_price": _money(average_out),
                "profit_bps": _fraction(profit_bps),
                "seconds_ignition_to_unwind": round(seconds, 1),
                "window_seconds": params.window_ns // 1_000_000_000,
                "unwind_window_seconds": params.unwind_window_ns // 1_000_000_000,
                "book": self._book.snapshot(event.symbol, suspects=orders),
            },
        )

    def sweep(self, now: int) -> None:
        """Drop expired ignitions and symbols with nothing in the window (memory only)."""
        params = self.params
        start = now - params.window_ns
        expired = now - params.unwind_window_ns
        for symbol in list(self._tapes):
            tape = self._tapes[symbol]
            for key in [k for k, i in tape.ignitions.items() if i.last_t < expired]:
                del tape.ignitions[key]
            # Its last fill is out of the window: so is every burst (a new tape is the same).
            if tape.last_t < start and not tape.ignitions:
                del self._tapes[symbol]


def _decrement(counts: dict[_Key, int], key: _Key) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))


def _fraction(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))


def _percent(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.1'))}%"


def _bps(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.1'))} bps"
