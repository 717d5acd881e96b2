"""MAN-2 without a next event: a spoof whose cancel is the last event of the market is
concluded by the clock (the engine's tick), as the next event would have concluded it, and
only once; a re-quote still under test is not concluded early."""

from __future__ import annotations

import pytest

from tests.support.surveillance import Tape, run
from tests.unit.surveillance.test_detectors import spoofed
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.surveillance.domain import AlertType, SurveillanceParameters
from tradeguard.surveillance.engine import SurveillanceEngine


def engine_after(tape: Tape) -> tuple[SurveillanceEngine, list[object]]:
    engine = SurveillanceEngine(SurveillanceParameters())
    found: list[object] = []
    for event in tape.events:
        found.extend(engine.feed(event))
    return engine, found


@pytest.mark.spec("MAN-2")
class TestTick:
    def test_a_spoof_cancelled_as_the_last_event_is_concluded_by_the_clock(self) -> None:
        tape = Tape()
        spoofed(tape)
        engine, found = engine_after(tape)
        assert found == []
        assert engine.waiting
        last = tape.events[-1].ts_ns
        # Within the re-quote window nothing is concluded yet; past it, the spoof is.
        assert engine.tick(last + NS_PER_SECOND // 2) == []
        ticked = engine.tick(last + 2 * NS_PER_SECOND)
        assert [f.alert_type for f in ticked] == [AlertType.SPOOFING]
        assert not engine.waiting
        # The same finding the next event would have released (tape.later()).
        tape.later()
        [expected] = run(tape.events)
        assert ticked[0] == expected
        # And only once: the events that follow release nothing more.
        assert [f for e in tape.events[-2:] for f in engine.feed(e)] == []
        assert engine.tick(tape.events[-1].ts_ns + 10 * NS_PER_SECOND) == []

    def test_a_tick_never_runs_before_the_engines_time_and_changes_nothing_else(self) -> None:
        tape = Tape()
        spoofed(tape)
        engine, _ = engine_after(tape)
        assert engine.tick(engine.now_ns) == []
        assert engine.tick(engine.now_ns - NS_PER_SECOND) == []
        before = engine.now_ns
        engine.tick(before + 5 * NS_PER_SECOND)
        assert engine.now_ns == before

    def test_a_re_quote_still_on_the_book_is_not_concluded_early(self) -> None:
        tape = Tape()
        spoof = spoofed(tape)
        tape.wait(0.2)
        # A new bid at the spoof's size: a re-quote, under test for a cancel window.
        tape.place("s", "ACME", "buy", 3000, "49.98")
        engine, found = engine_after(tape)
        assert found == []
        last = tape.events[-1].ts_ns
        # Past the re-quote window but within the cancel window: still under test.
        assert engine.tick(last + 5 * NS_PER_SECOND) == []
        # Shown a whole cancel window: bona fide, the spoofing finding is cleared.
        assert engine.tick(last + 40 * NS_PER_SECOND) == []
        assert not engine.waiting
        assert spoof.order_id
