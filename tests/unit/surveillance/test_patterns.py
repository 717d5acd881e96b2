"""Unusual order patterns (PRE-3, pure models): marking the close (one-sided trades in the
last minutes that move the closing price, the close from the exchange calendar) and quote
stuffing (bursts of orders and cancels with nothing traded); market makers quoting both
sides, honest buyers at the close and fast traders whose orders execute pass."""

from __future__ import annotations

from decimal import Decimal

from tests.support.surveillance import Tape, run
from tradeguard.surveillance.domain import AlertType, Detector, SurveillanceParameters
from tradeguard.surveillance.engine import SurveillanceEngine

SIX_HOURS = 6 * 3600  # the Tape starts at 10:00 New York: the close is at 16:00


def to_the_close(tape: Tape, minutes: float) -> None:
    """Time passes to `minutes` before Monday's 16:00 close; a customer trades ACME at
    50.00 shortly before (the price the closing window starts from)."""
    tape.wait(SIX_HOURS - minutes * 60 - 600)
    tape.street_trade("retail", "ACME", "buy", 100, "50.00")
    tape.wait(600)


def mark(tape: Tape, prices: list[str], quantity: int = 300) -> None:
    for price in prices:
        tape.street_trade("marker", "ACME", "buy", quantity, price)
        tape.wait(40)


class TestMarkingTheClose:
    def test_one_sided_buying_that_lifts_the_price_in_the_last_minutes_is_flagged(
        self,
    ) -> None:
        tape = Tape()
        to_the_close(tape, 4)
        mark(tape, ["50.10", "50.30", "50.50", "50.70"])
        found = run(tape.events)
        assert found
        assert {f.alert_type for f in found} == {AlertType.MARKING_THE_CLOSE}
        first = found[0]
        assert first.detector is Detector.PATTERNS
        assert first.owner == "marker"
        ev = first.evidence
        assert ev["side"] == "buy"
        assert ev["reference_price"] == "50.00"
        assert ev["taken_quantity"] >= 500
        assert Decimal(ev["move_fraction"]) >= Decimal("0.01")
        assert 0 < ev["minutes_before_close"] < 5

    def test_a_market_makers_resting_quotes_filled_meanwhile_do_not_hide_it(self) -> None:
        tape = Tape()
        to_the_close(tape, 4)
        for price in ["50.10", "50.30", "50.50", "50.70"]:
            # The maker's offer at the old price is taken as the price walks: volume that
            # sets nothing (5,000 shares against the marker's 1,200).
            ask = tape.place("mm", "ACME", "sell", 1250, price)
            tape.fill(ask, 1250, price, maker=True)
            tape.street_trade("marker", "ACME", "buy", 300, price)
            tape.wait(40)
        found = run(tape.events)
        assert {f.owner for f in found} == {"marker"}
        assert Decimal(found[-1].evidence["volume_share"]) == Decimal(1)

    def test_the_same_buying_earlier_in_the_day_is_not_at_the_close(self) -> None:
        tape = Tape()
        to_the_close(tape, 60)
        mark(tape, ["50.10", "50.30", "50.50", "50.70"])
        assert run(tape.events) == []

    def test_a_large_buyer_at_the_close_that_does_not_move_the_price_is_not_flagged(
        self,
    ) -> None:
        tape = Tape()
        to_the_close(tape, 4)
        mark(tape, ["50.00", "50.01", "50.02", "50.01"], quantity=2000)
        assert run(tape.events) == []

    def test_a_market_maker_quoting_both_sides_at_the_close_is_not_flagged(self) -> None:
        tape = Tape()
        to_the_close(tape, 4)
        for n, price in enumerate(["50.10", "50.30", "50.50", "50.70"]):
            bid = tape.place("mm", "ACME", "buy", 500, price)
            ask = tape.place("mm", "ACME", "sell", 500, price)
            tape.fill(bid, 500, price, maker=True)
            tape.fill(ask, 500, price, maker=True)
            tape.street_trade(f"c{n}", "ACME", "buy", 100, price)
            tape.wait(40)
        assert run(tape.events) == []

    def test_a_day_without_a_session_has_no_close_to_mark(self) -> None:
        tape = Tape()
        tape.wait(5 * 86_400)  # Saturday 10 January 2026, 10:00: no session
        to_the_close(tape, 4)
        mark(tape, ["50.10", "50.30", "50.50", "50.70"])
        assert run(tape.events) == []


def stuff(tape: Tape, orders: int, account: str = "stuffer", *, fill_every: int = 0) -> None:
    """`orders` bids a few ticks under the touch, each cancelled 5 ms later (every
    `fill_every`-th one trades instead)."""
    for n in range(orders):
        order = tape.place(account, "ACME", "buy", 100, "49.90")
        tape.wait(0.005)
        if fill_every and n % fill_every == 0:
            tape.fill(order, 100, "49.90", maker=True)
        else:
            tape.cancel(order)
        tape.wait(0.005)


class TestQuoteStuffing:
    def test_a_burst_of_orders_cancelled_at_once_is_quote_stuffing(self) -> None:
        tape = Tape()
        stuff(tape, 200)
        found = run(tape.events)
        assert [f.alert_type for f in found] == [AlertType.QUOTE_STUFFING]
        ev = found[0].evidence
        assert found[0].detector is Detector.PATTERNS
        assert ev["messages"] >= 50
        assert ev["fills"] == 0
        assert Decimal(ev["cancel_ratio"]) >= Decimal("0.9")

    def test_a_burst_the_platforms_throttle_lets_through_is_quote_stuffing(self) -> None:
        """The second outside review: the pre-trade throttle allows 10 orders a second an
        account, so the former default (50 messages in one second) could never fire on
        platform orders. Ten orders a second, each cancelled, for twelve seconds does."""
        tape = Tape()
        for _ in range(120):
            order = tape.place("stuffer", "ACME", "buy", 100, "49.90")
            tape.wait(0.05)
            tape.cancel(order)
            tape.wait(0.05)
        found = run(tape.events)
        assert [f.alert_type for f in found] == [AlertType.QUOTE_STUFFING]
        assert found[0].evidence["messages"] >= 100
        # Half the throttle's rate, steadily, is still below it.
        tape = Tape()
        for _ in range(60):
            order = tape.place("steady", "ACME", "buy", 100, "49.90")
            tape.wait(0.2)
            tape.cancel(order)
            tape.wait(0.2)
        assert run(tape.events) == []

    def test_a_market_maker_re_quoting_every_few_seconds_is_not_flagged(self) -> None:
        tape = Tape()
        for _ in range(100):
            bid = tape.place("mm", "ACME", "buy", 300, "49.99")
            ask = tape.place("mm", "ACME", "sell", 300, "50.01")
            tape.wait(5)
            tape.cancel(bid)
            tape.cancel(ask)
        assert run(tape.events) == []

    def test_a_fast_trader_whose_orders_execute_is_not_flagged(self) -> None:
        tape = Tape()
        stuff(tape, 200, fill_every=10)  # 10% of the orders trade
        assert run(tape.events) == []
        tape = Tape()
        for _ in range(100):
            tape.street_trade("algo", "ACME", "buy", 100, "50.00")  # slicing: every order fills
            tape.wait(0.005)
        assert run(tape.events) == []

    def test_the_venues_cancels_are_not_the_accounts(self) -> None:
        tape = Tape()
        for _ in range(200):
            order = tape.place("ioc", "ACME", "buy", 100, "49.90")
            tape.cancel(order, reason="ioc")
            tape.wait(0.005)
        assert run(tape.events) == []

    def test_a_restart_at_every_event_finds_the_same(self) -> None:
        tape = Tape()
        stuff(tape, 80)
        to_the_close(tape, 4)
        mark(tape, ["50.10", "50.30", "50.50", "50.70"])
        whole = run(tape.events)
        assert {f.alert_type for f in whole} == {
            AlertType.QUOTE_STUFFING,
            AlertType.MARKING_THE_CLOSE,
        }
        params = SurveillanceParameters()
        for cut in range(1, len(tape.events), 7):
            first = SurveillanceEngine(params)
            before = [f for e in tape.events[:cut] for f in first.feed(e)]
            seq, floor = first.resume_point()
            second = SurveillanceEngine(params, floor_ns=floor)
            for event in tape.events[:cut]:
                if seq is not None and event.seq >= seq:
                    second.feed(event)
            after = [f for e in tape.events[cut:] for f in second.feed(e)]
            assert before + after == whole, f"restart after event {cut}"
