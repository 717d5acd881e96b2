"""Quote stuffing and rapid order placement: bursts of orders and cancels with no intent to
trade.

The model (after the SEC's and FINRA's descriptions of quote stuffing: entering and
withdrawing large numbers of orders in a very short time to flood the market with messages,
slowing others down or obscuring the book, and the spec's "rapid order placement", PRE-3).
Per account and symbol, over the last `window`, it counts the orders placed, the orders the
account cancelled (cancel requests and cancel-replaces; never the venue's cancels) and its
fills, and raises a finding at an order or cancel once

1. at least `min_messages` orders and cancels arrived within the window;
2. the cancels are at least `min_cancel_ratio` of the orders placed; and
3. the fills are at most `max_fill_ratio` of the orders placed (no intent to trade).

One finding per burst: after a finding, the account and symbol are quiet until a whole
window passes without a finding-worthy burst (the fold rule then merges a long burst into
one alert). Near-misses: a market maker quoting both sides and re-quoting every few seconds
(far below the rate); a fast market maker that trades (3 fails); a trader placing many
orders that execute (2 and 3 fail). Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from tradeguard.surveillance.book import BookTracker
from tradeguard.surveillance.domain import AlertType, Finding, StuffingParameters, ratio, score
from tradeguard.surveillance.events import Fill, OrderClosed, OrderPlaced

MAX_EVIDENCE_IDS = 100
_PLACED, _CANCELLED, _FILLED = 0, 1, 2


class _Burst:
    __slots__ = ("account_id", "counts", "events", "flagged_ns", "owner")

    def __init__(self, account_id: str, owner: str) -> None:
        self.account_id = account_id
        self.owner = owner
        # (time, kind, order id) within the window, and the counts of each kind.
        self.events: deque[tuple[int, int, str]] = deque()
        self.counts = [0, 0, 0]
        # When the last finding was raised (-1: none within the window).
        self.flagged_ns = -1

    def add(self, t: int, kind: int, order_id: str, start: int) -> None:
        self.events.append((t, kind, order_id))
        self.counts[kind] += 1
        events = self.events
        while events and events[0][0] < start:
            self.counts[events.popleft()[1]] -= 1


class QuoteStuffingDetector:
    def __init__(self, params: StuffingParameters, book: BookTracker) -> None:
        self.params = params
        self._book = book
        self._bursts: dict[tuple[str, str], _Burst] = {}

    def _burst(self, account_id: str, owner: str, symbol: str) -> _Burst:
        key = (account_id, symbol)
        burst = self._bursts.get(key)
        if burst is None:
            burst = self._bursts[key] = _Burst(account_id, owner)
        return burst

    def placed(self, event: OrderPlaced, t: int) -> Finding | None:
        burst = self._burst(event.account_id, event.owner, event.symbol)
        burst.add(t, _PLACED, event.order_id, t - self.params.window_ns)
        return self._judge(burst, event.symbol, event.seq, t)

    def closed(self, event: OrderClosed, t: int) -> Finding | None:
        if not event.voluntary:
            return None
        burst = self._burst(event.account_id, event.owner, event.symbol)
        burst.add(t, _CANCELLED, event.order_id, t - self.params.window_ns)
        return self._judge(burst, event.symbol, event.seq, t)

    def fill(self, event: Fill, t: int) -> None:
        burst = self._bursts.get((event.account_id, event.symbol))
        if burst is not None:
            burst.add(t, _FILLED, event.order_id, t - self.params.window_ns)

    def _judge(self, burst: _Burst, symbol: str, seq: int, t: int) -> Finding | None:
        params = self.params
        placed, cancelled, filled = burst.counts
        if placed + cancelled < params.min_messages:
            return None
        if burst.flagged_ns >= 0 and t - burst.flagged_ns <= params.window_ns:
            burst.flagged_ns = t  # the same burst goes on
            return None
        cancel_ratio = ratio(cancelled, placed)
        fill_ratio = ratio(filled, placed)
        if cancel_ratio < params.min_cancel_ratio or fill_ratio > params.max_fill_ratio:
            return None
        burst.flagged_ns = t
        first = burst.events[0][0]
        seconds = (t - first) / 1e9
        orders = sorted({order for _, kind, order in burst.events if kind != _FILLED})
        rate = Decimal(placed + cancelled) / Decimal(max(seconds, params.window_ns / 1e9 / 10))
        return Finding(
            alert_type=AlertType.QUOTE_STUFFING,
            symbol=symbol,
            owner=burst.owner,
            accounts=(burst.account_id,),
            score=score(
                ratio(placed + cancelled, params.min_messages),
                ratio(cancel_ratio, params.min_cancel_ratio),
            ),
            trigger_seq=seq,
            trigger_ns=t,
            window_start_ns=first,
            window_end_ns=t,
            summary=(
                f"{placed} orders placed and {cancelled} cancelled in {symbol} within "
                f"{seconds:.2f}s ({cancel_ratio.quantize(Decimal('0.01'))} cancelled, "
                f"{filled} fills): a burst of messages with no intent to trade"
            ),
            order_ids=tuple(orders[:MAX_EVIDENCE_IDS]),
            execution_ids=(),
            evidence={
                "orders_placed": placed,
                "orders_cancelled": cancelled,
                "fills": filled,
                "messages": placed + cancelled,
                "seconds": round(seconds, 3),
                "messages_per_second": str(rate.quantize(Decimal("0.1"))),
                "cancel_ratio": str(cancel_ratio.quantize(Decimal("0.01"))),
                "fill_ratio": str(fill_ratio.quantize(Decimal("0.001"))),
                "window_ms": params.window_ns // 1_000_000,
                "book": self._book.snapshot(symbol, suspects=orders),
            },
        )

    def sweep(self, now: int) -> None:
        """Drop accounts with nothing left in the window (memory only)."""
        start = now - self.params.window_ns
        for key in [
            k
            for k, b in self._bursts.items()
            if (not b.events or b.events[-1][0] < start)
            and (b.flagged_ns < 0 or now - b.flagged_ns > self.params.window_ns)
        ]:
            del self._bursts[key]
