"""Every detector at once over one stream of market events, restartable exactly.

**Time.** Events arrive in ledger (chain) order; their timestamps are stamped when each was
appended, so two transactions committing in the other order can disagree by a little. The
engine's time is the latest timestamp seen (an event older than that counts as happening
now), so it never goes backward and every window slides exactly.

**Restart.** Everything a detector keeps is bounded by time: nothing older than the
lookback (the longest window, `SurveillanceParameters.lookback_ns`) can change a finding.
So the state after event N is a function of the events within the lookback of N's time,
and of the engine's time just before the first of them. `resume_point()` names both; a new
engine started at that time and fed those events again (findings discarded: they were
already recorded) is in exactly the state the old one was, and finds exactly what the old
one would have found next. Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from tradeguard.surveillance.book import BookTracker
from tradeguard.surveillance.closing import MarkingTheCloseDetector
from tradeguard.surveillance.domain import Finding, SurveillanceParameters
from tradeguard.surveillance.events import (
    Fill,
    MarketEvent,
    OrderClosed,
    OrderPlaced,
    RestrictedListed,
)
from tradeguard.surveillance.frontrun import FrontRunDetector
from tradeguard.surveillance.momentum import MomentumIgnitionDetector
from tradeguard.surveillance.pump import PumpDumpDetector
from tradeguard.surveillance.spoofing import SpoofingDetector
from tradeguard.surveillance.stuffing import QuoteStuffingDetector
from tradeguard.surveillance.trades import TradeTape
from tradeguard.surveillance.wash import WashTradeDetector

# Idle owners, symbols and episodes are dropped this often (memory only).
SWEEP_EVERY_EVENTS = 50_000


class SurveillanceEngine:
    def __init__(self, params: SurveillanceParameters, *, floor_ns: int = 0) -> None:
        self.params = params
        self.lookback_ns = params.lookback_ns
        self.book = BookTracker(self.lookback_ns)
        # The orders and executions a finding's evidence details (surveillance/trades.py).
        self.tape = TradeTape(self.lookback_ns)
        self.wash = WashTradeDetector(params.wash, self.book, lookback_ns=self.lookback_ns)
        self.spoofing = SpoofingDetector(params.spoof, self.book)
        self.pump = PumpDumpDetector(params.pump, self.book)
        self.frontrun = FrontRunDetector(params.frontrun, self.book)
        self.closing = MarkingTheCloseDetector(
            params.closing, self.book, lookback_ns=self.lookback_ns
        )
        self.stuffing = QuoteStuffingDetector(params.stuffing, self.book)
        self.momentum = MomentumIgnitionDetector(params.momentum, self.book)
        self.now_ns = floor_ns
        self.events = 0
        # (time, seq, the engine's time before it) of every event within the lookback.
        self._recent: deque[tuple[int, int, int]] = deque()

    def set_owners(self, owner_of: Callable[[str], str]) -> None:
        """The beneficial owners the events' `owner` fields come from: the models that judge
        registered accounts (MAN-4's staff and proprietary accounts) judge their owners."""
        self.frontrun.set_owners(owner_of)

    def feed(self, event: MarketEvent) -> list[Finding]:
        """Judge one event; the findings it completes (usually none), each with the details
        of its orders and executions in its evidence."""
        found = self._feed(event)
        if not found:
            return found
        tape = self.tape
        return [tape.with_details(f) for f in found]

    @property
    def waiting(self) -> bool:
        """Whether findings wait for time to pass (a tick may release them)."""
        return self.spoofing.holding

    def tick(self, now_ns: int) -> list[Finding]:
        """Findings that were waiting only for time to pass (MAN-2's re-quote test), judged
        at `now_ns` without an event: a spoof whose cancel was the market's last event is
        reported although nothing follows it.

        The engine's time does not move (the next event is judged at its own time), and the
        decision is the one the next event would make: the held findings' tests are decided
        by time alone before that event takes effect. So ticking changes no finding, only
        when it is made; a restart that replays without the ticks holds again what a tick
        released, and releases it again at the next event or tick (the alert store records
        a finding once: `AlertStore.record`)."""
        if now_ns <= self.now_ns or not self.spoofing.holding:
            return []
        found = self.spoofing.due(now_ns)
        return [self.tape.with_details(f) for f in found]

    def _feed(self, event: MarketEvent) -> list[Finding]:
        before = self.now_ns
        t = event.ts_ns if event.ts_ns > before else before
        self.now_ns = t
        recent = self._recent
        recent.append((t, event.seq, before))
        horizon = t - self.lookback_ns
        while recent[0][0] < horizon:
            recent.popleft()
        self.book.forget_before(horizon)
        self.tape.forget_before(horizon)
        self.events += 1
        if self.events % SWEEP_EVERY_EVENTS == 0:
            self.wash.sweep(t)
            self.spoofing.sweep(t)
            self.pump.sweep(t)
            self.frontrun.sweep(t)
            self.closing.sweep(t)
            self.stuffing.sweep(t)
            self.momentum.sweep(t)
        spoofing = self.spoofing
        # Findings the spoofing model held for its re-quote test, now due.
        released = spoofing.due(t) if spoofing.holding else []
        kind = type(event)
        found: Finding | None
        if kind is Fill:
            self._fill(event, t, released)  # type: ignore[arg-type]
            return released
        if kind is OrderPlaced:
            placed: OrderPlaced = event  # type: ignore[assignment]
            self.book.placed(placed, t)
            self.tape.placed(placed, t)
            spoofing.placed(placed, t)
            found = self.stuffing.placed(placed, t)
            if found is not None:
                released.append(found)
            return released
        if kind is RestrictedListed:
            listed: RestrictedListed = event  # type: ignore[assignment]
            released.extend(self.frontrun.restricted(listed, t))
            return released
        closed: OrderClosed = event  # type: ignore[assignment]
        found = spoofing.closed(closed, t)
        self.book.closed(closed)
        self.tape.closed(closed)
        if found is not None:
            released.append(found)
        found = self.stuffing.closed(closed, t)
        if found is not None:
            released.append(found)
        return released

    def _fill(self, fill: Fill, t: int, released: list[Finding]) -> None:
        self.book.filled(fill, t)
        self.tape.filled(fill, t)
        self.spoofing.fill(fill, t)
        self.stuffing.fill(fill, t)
        for detector in (self.wash, self.pump, self.frontrun, self.closing, self.momentum):
            found = detector.fill(fill, t)
            if found is not None:
                released.append(found)

    def resume_point(self) -> tuple[int | None, int]:
        """(the first seq to replay, the engine time to start from) for an exact restart;
        the seq is None when nothing within the lookback needs replaying."""
        if not self._recent:
            return None, self.now_ns
        _, seq, before = self._recent[0]
        return seq, before
