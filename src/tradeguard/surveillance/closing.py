"""Marking the close: one owner's one-sided, liquidity-taking trades in the last minutes of
the session that move the price the day closes at.

The model (after the SEC's and FINRA's description of "marking the close": buying or
selling at or near the close to influence the closing price, which values portfolios,
margin and fund shares). The session's close comes
from the exchange calendar (`core/calendar.py`: the NYSE's 16:00, 13:00 on early-close
days, no session on holidays). At a liquidity-taking fill within `window` before the
close, per owner and symbol:

1. the owner's liquidity-taking shares on the fill's side in the window are at least
   `min_quantity`, and its trading there is one-sided (what it did on the other side is at
   most `max_opposite_fraction` of that);
2. the owner's liquidity-taking shares are at least `min_volume_share` of the symbol's
   liquidity-taking volume in the window (the trades that set the price: a market maker's
   resting quotes, filled again and again as the price walks, are volume that moves
   nothing, and in busy symbols they hid the marking trader's share);
3. the price moved at least `min_move` from the reference (the last price before the window,
   if it printed within the lookback) to this fill, in the direction of the owner's side.

Near-misses: a market maker quoting both sides at the close (resting, two-sided: 1 fails);
an honest buyer at the close in a liquid market (the price does not move: 3 fails); the same
trading earlier in the day (outside the window). Pure: no I/O.
"""

from __future__ import annotations

from decimal import Decimal

from tradeguard.core.calendar import ExchangeCalendar
from tradeguard.surveillance.book import BookTracker
from tradeguard.surveillance.domain import AlertType, ClosingParameters, Finding, ratio, score
from tradeguard.surveillance.events import Fill

MAX_EVIDENCE_IDS = 100


class _Owner:
    __slots__ = ("accounts", "execution_ids", "order_ids", "taken", "traded")

    def __init__(self) -> None:
        # Liquidity-taking shares per side (buy, sell), and all its shares per side.
        self.taken = [0, 0]
        self.traded = [0, 0]
        self.accounts: set[str] = set()
        self.order_ids: list[str] = []
        self.execution_ids: list[str] = []


class _Window:
    """One symbol's closing window of one session."""

    __slots__ = ("close_ns", "owners", "reference", "volume")

    def __init__(self, close_ns: int, reference: Decimal | None) -> None:
        self.close_ns = close_ns
        self.reference = reference
        self.volume = 0
        self.owners: dict[str, _Owner] = {}


class MarkingTheCloseDetector:
    def __init__(self, params: ClosingParameters, book: BookTracker, *, lookback_ns: int) -> None:
        self.params = params
        self._book = book
        self._lookback = lookback_ns
        self._calendar = ExchangeCalendar()
        # The session close the last fill belonged to, and its window's start.
        self._close_ns = -1
        self._start_ns = -1
        self._until_ns = -1  # the fill time up to which that close is the next one
        self._last: dict[str, tuple[int, Decimal]] = {}
        self._windows: dict[str, _Window] = {}

    def _next_close(self, t: int) -> None:
        """The close of the session at or after `t` (and where that stops being true)."""
        calendar = self._calendar
        day = calendar.trading_date(t)
        if not calendar.is_business_day(day) or t >= calendar.session_close_ns(day):
            day = calendar.trading_date(calendar.next_open_ns(t))
        self._close_ns = calendar.session_close_ns(day)
        self._start_ns = self._close_ns - self.params.window_ns
        self._until_ns = self._close_ns

    def fill(self, event: Fill, t: int) -> Finding | None:
        if t >= self._until_ns:
            self._next_close(t)
        symbol = event.symbol
        previous = self._last.get(symbol)
        self._last[symbol] = (t, event.price)
        if t < self._start_ns:
            return None
        window = self._windows.get(symbol)
        if window is None or window.close_ns != self._close_ns:
            reference = None
            if previous is not None and t - self._lookback <= previous[0] < self._start_ns:
                reference = previous[1]
            window = self._windows[symbol] = _Window(self._close_ns, reference)
        owner = window.owners.get(event.owner)
        if owner is None:
            owner = window.owners[event.owner] = _Owner()
        side = 0 if event.buy else 1
        owner.traded[side] += event.quantity
        if event.maker:
            return None
        # Liquidity-taking volume only: an internal match counts once, by its taker.
        window.volume += event.quantity
        owner.taken[side] += event.quantity
        owner.accounts.add(event.account_id)
        if len(owner.order_ids) < MAX_EVIDENCE_IDS:
            owner.order_ids.append(event.order_id)
            owner.execution_ids.append(event.execution_id)
        return self._judge(event, t, window, owner, side)

    def _judge(
        self, event: Fill, t: int, window: _Window, owner: _Owner, side: int
    ) -> Finding | None:
        params = self.params
        taken = owner.taken[side]
        opposite = owner.traded[1 - side]
        if taken < params.min_quantity or opposite > params.max_opposite_fraction * taken:
            return None
        share = ratio(taken, window.volume)
        if share < params.min_volume_share or window.reference is None:
            return None
        move = (event.price - window.reference) / window.reference
        if not event.buy:
            move = -move
        if move < params.min_move:
            return None
        minutes = (window.close_ns - t) / 60e9
        direction = "bought" if event.buy else "sold"
        orders = sorted(set(owner.order_ids))
        return Finding(
            alert_type=AlertType.MARKING_THE_CLOSE,
            symbol=event.symbol,
            owner=event.owner,
            accounts=tuple(sorted(owner.accounts)),
            score=score(
                ratio(taken, params.min_quantity),
                ratio(share, params.min_volume_share),
                ratio(move, params.min_move),
            ),
            trigger_seq=event.seq,
            trigger_ns=t,
            window_start_ns=self._start_ns,
            window_end_ns=t,
            summary=(
                f"{direction} {taken} {event.symbol} taking liquidity in the last "
                f"{params.window_ns // 60_000_000_000} minutes before the close "
                f"({_percent(share)} of the volume); the price moved {_percent(move)} from "
                f"{window.reference} to {event.price}, {minutes:.1f} minutes before the close"
            ),
            order_ids=tuple(orders),
            execution_ids=tuple(owner.execution_ids),
            evidence={
                "side": "buy" if event.buy else "sell",
                "taken_quantity": taken,
                "opposite_quantity": opposite,
                "window_volume": window.volume,
                "volume_share": _fraction(share),
                "reference_price": str(window.reference),
                "price": str(event.price),
                "move_fraction": _fraction(move),
                "close_ns": window.close_ns,
                "minutes_before_close": round(minutes, 2),
                "window_seconds": params.window_ns // 1_000_000_000,
                "book": self._book.snapshot(event.symbol, suspects=orders),
            },
        )

    def sweep(self, now: int) -> None:
        """Drop closing windows of past sessions and stale last prices (memory only)."""
        for symbol in [s for s, w in self._windows.items() if w.close_ns < now]:
            del self._windows[symbol]
        stale = now - self._lookback
        for symbol in [s for s, (t, _) in self._last.items() if t < stale]:
            del self._last[symbol]


def _fraction(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))


def _percent(value: Decimal) -> str:
    return f"{(value * 100).quantize(Decimal('0.1'))}%"
