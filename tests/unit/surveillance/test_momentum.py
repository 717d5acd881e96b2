"""Momentum ignition (PRE-3, pure model): one owner's burst of aggressive orders moves the
price through several levels and the owner trades out the other way at a profit; an
institution working an order, a news buyer who holds, a seller days later, a stop-loss and
a small buyer in a busy market pass."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from tests.support.surveillance import Tape, run
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.surveillance.domain import (
    AlertType,
    Detector,
    MomentumParameters,
    SurveillanceParameters,
)
from tradeguard.surveillance.engine import SurveillanceEngine
from tradeguard.surveillance.events import Fill
from tradeguard.surveillance.momentum import MomentumIgnitionDetector

IGNITION = ["50.10", "50.25", "50.40", "50.60"]


def ignite(
    tape: Tape, prices: list[str] = IGNITION, *, side: str = "buy", quantity: int = 300
) -> None:
    """A customer trades ACME at 50.00, then `igniter` takes the street's quote at each of
    `prices`, ten seconds apart."""
    tape.street_trade("retail", "ACME", "buy", 100, "50.00")
    tape.wait(5)
    for price in prices:
        tape.street_trade("igniter", "ACME", side, quantity, price)
        tape.wait(10)


def unwind_passively(tape: Tape, price: str, quantity: int = 1200, *, side: str = "sell") -> None:
    """`igniter` rests an order at `price` on the other side, and it is filled."""
    order = tape.place("igniter", "ACME", side, quantity, price)
    tape.fill(order, quantity, price, maker=True)


def momentum(found: list[Any]) -> list[Any]:
    return [f for f in found if f.alert_type is AlertType.MOMENTUM_IGNITION]


def params(**changes: Any) -> SurveillanceParameters:
    return SurveillanceParameters(momentum=replace(MomentumParameters(), **changes))


class TestMomentumIgnition:
    def test_a_burst_that_lifts_the_price_then_a_sale_at_the_moved_price_is_flagged(
        self,
    ) -> None:
        tape = Tape()
        ignite(tape)
        tape.wait(60)
        unwind_passively(tape, "50.70")
        found = momentum(run(tape.events))
        assert len(found) == 1
        finding = found[0]
        assert finding.detector is Detector.PATTERNS
        assert finding.owner == "igniter"
        assert finding.accounts == ("igniter",)
        ev = finding.evidence
        assert ev["side"] == "buy"
        assert ev["ignition_orders"] == 4
        assert ev["ignition_quantity"] == 1200
        assert ev["ignition_levels"] == 4
        assert ev["price_before"] == "50.00"
        assert ev["price_after"] == "50.60"
        assert Decimal(ev["move_bps"]) == Decimal(120)
        assert ev["owner_aggressive_share"] == "0.9231"  # the retail buy at 50.00 is in the window
        assert ev["unwound_quantity"] == 1200
        assert ev["unwound_passive_quantity"] == 1200
        assert ev["average_ignition_price"] == "50.3375"
        assert ev["average_unwind_price"] == "50.7000"
        assert Decimal(ev["profit_bps"]) > 70
        assert len(ev["ignition_order_ids"]) == 4
        assert len(ev["unwind_order_ids"]) == 1
        assert len(finding.order_ids) == 5
        assert len(finding.execution_ids) == 5
        assert ev["book"]["last_price"] == "50.70"
        assert 50 <= finding.score <= 100

    def test_a_burst_of_sales_then_an_aggressive_buy_back_lower_is_flagged(self) -> None:
        tape = Tape()
        ignite(tape, ["49.90", "49.75", "49.60", "49.40"], side="sell")
        tape.wait(30)
        tape.street_trade("igniter", "ACME", "buy", 1200, "49.30")
        found = momentum(run(tape.events))
        assert len(found) == 1
        ev = found[0].evidence
        assert ev["side"] == "sell"
        assert ev["price_after"] == "49.40"
        assert ev["unwound_passive_quantity"] == 0

    def test_linked_accounts_are_one_owner(self) -> None:
        tape = Tape(owners={"igniter": "owner-1", "igniter-2": "owner-1"})
        ignite(tape)
        order = tape.place("igniter-2", "ACME", "sell", 1200, "50.70")
        tape.fill(order, 1200, "50.70", maker=True)
        found = momentum(run(tape.events))
        assert [f.owner for f in found] == ["owner-1"]
        assert found[0].accounts == ("igniter", "igniter-2")

    def test_an_institution_working_a_large_order_aggressively_is_not_flagged(self) -> None:
        tape = Tape()
        ignite(tape)
        for price in ["50.70", "50.80", "50.95", "51.10"]:
            tape.street_trade("igniter", "ACME", "buy", 300, price)
            tape.wait(30)
        tape.wait(3600)
        tape.street_trade("other", "ACME", "sell", 100, "51.00")
        assert momentum(run(tape.events)) == []

    def test_a_news_buyer_who_holds_is_not_flagged(self) -> None:
        tape = Tape()
        tape.street_trade("retail", "ACME", "buy", 100, "50.00")
        tape.wait(20)
        tape.street_trade("retail", "ACME", "buy", 100, "51.50")  # the news
        ignite(tape, ["51.55", "51.70", "51.85", "52.10"])
        tape.wait(1200)
        assert momentum(run(tape.events)) == []

    def test_a_sale_days_later_is_not_an_unwind(self) -> None:
        tape = Tape()
        ignite(tape)
        tape.wait(86_400)
        unwind_passively(tape, "50.70")
        assert momentum(run(tape.events)) == []

    def test_a_sale_at_a_loss_when_the_price_turns_is_not_flagged(self) -> None:
        tape = Tape()
        ignite(tape)
        tape.wait(60)
        tape.street_trade("igniter", "ACME", "sell", 1200, "49.80")
        assert momentum(run(tape.events)) == []

    def test_a_small_buyer_among_larger_ones_did_not_move_the_price(self) -> None:
        tape = Tape()
        tape.street_trade("retail", "ACME", "buy", 100, "50.00")
        for price in IGNITION:
            tape.street_trade("fund", "ACME", "buy", 1000, price)
            tape.street_trade("igniter", "ACME", "buy", 300, price)
            tape.wait(10)
        unwind_passively(tape, "50.70")
        assert [f.owner for f in momentum(run(tape.events))] == []

    def test_buying_at_one_price_takes_out_no_levels(self) -> None:
        tape = Tape()
        tape.street_trade("retail", "ACME", "buy", 100, "49.00")
        ignite(tape, ["50.00", "50.00", "50.00", "50.00"])
        unwind_passively(tape, "50.70")
        assert momentum(run(tape.events)) == []

    def test_a_market_makers_resting_fills_are_not_a_burst(self) -> None:
        tape = Tape()
        tape.street_trade("retail", "ACME", "buy", 100, "50.00")
        for price in IGNITION:
            bid = tape.place("mm", "ACME", "buy", 300, price)
            tape.fill(bid, 300, price, maker=True)
            tape.wait(10)
        tape.street_trade("mm", "ACME", "sell", 1200, "50.70")
        assert momentum(run(tape.events)) == []

    def test_a_restart_at_every_event_finds_the_same(self) -> None:
        tape = Tape()
        ignite(tape)
        tape.wait(60)
        unwind_passively(tape, "50.70", 600)
        tape.wait(5)
        unwind_passively(tape, "50.75", 600)
        whole = run(tape.events)
        assert len(momentum(whole)) == 1
        surveillance = SurveillanceParameters()
        for cut in range(1, len(tape.events)):
            first = SurveillanceEngine(surveillance)
            before = [f for e in tape.events[:cut] for f in first.feed(e)]
            seq, floor = first.resume_point()
            second = SurveillanceEngine(surveillance, floor_ns=floor)
            for event in tape.events[:cut]:
                if seq is not None and event.seq >= seq:
                    second.feed(event)
            after = [f for e in tape.events[cut:] for f in second.feed(e)]
            assert before + after == whole, f"restart after event {cut}"

    def test_the_lookback_covers_the_model(self) -> None:
        model = MomentumParameters()
        assert model.reach_ns == model.unwind_window_ns + 3 * model.window_ns
        assert SurveillanceParameters(momentum=model).lookback_ns >= model.reach_ns

    def test_a_sweep_forgets_what_is_over(self) -> None:
        tape = Tape()
        ignite(tape)
        model = MomentumParameters()
        detector = MomentumIgnitionDetector(
            model, SurveillanceEngine(SurveillanceParameters()).book
        )
        for event in tape.events:
            if isinstance(event, Fill):
                detector.fill(event, event.ts_ns)
        assert detector._tapes["ACME"].ignitions
        detector.sweep(tape.now_ns + model.unwind_window_ns + NS_PER_SECOND)
        assert detector._tapes == {}


class TestParameterEdges:
    def test_a_move_of_exactly_the_threshold_is_flagged_and_one_tick_less_is_not(self) -> None:
        for last, expected in (("50.50", 1), ("50.49", 0)):
            tape = Tape()
            ignite(tape, ["50.10", "50.25", "50.40", last])
            unwind_passively(tape, "50.70")
            assert len(momentum(run(tape.events))) == expected, last

    def test_three_orders_suffice_and_two_do_not(self) -> None:
        for prices, expected in ((["50.20", "50.60", "50.80"], 1), (["50.40", "50.80"], 0)):
            tape = Tape()
            ignite(tape, prices)
            unwind_passively(tape, "51.00", 300 * len(prices))
            assert len(momentum(run(tape.events))) == expected, prices

    def test_a_large_quantity_makes_a_burst_without_the_order_count(self) -> None:
        tape = Tape()
        tape.street_trade("retail", "ACME", "buy", 100, "50.00")
        order = tape.place("igniter", "ACME", "buy", 6000, "50.60")
        for price in ["50.10", "50.30", "50.60"]:
            tape.fill(order, 2000, price)
        unwind_passively(tape, "50.80", 6000)
        assert len(momentum(run(tape.events))) == 1
        assert momentum(run(tape.events, params(min_quantity=6001))) == []

    def test_half_unwound_is_enough_and_less_is_not(self) -> None:
        for quantity, expected in ((600, 1), (500, 0)):
            tape = Tape()
            ignite(tape)
            unwind_passively(tape, "50.70", quantity)
            assert len(momentum(run(tape.events))) == expected, quantity

    def test_the_unwind_window_is_inclusive(self) -> None:
        model = MomentumParameters()
        for extra, expected in ((0, 1), (1, 0)):
            tape = Tape()
            ignite(tape)
            # The burst's last fill was ten seconds ago (ignite waits after each trade).
            tape.wait(model.unwind_window_ns / NS_PER_SECOND - 10 + extra)
            unwind_passively(tape, "50.70")
            assert len(momentum(run(tape.events))) == expected, extra

    def test_the_profit_threshold_is_applied(self) -> None:
        tape = Tape()
        ignite(tape)
        unwind_passively(tape, "50.37")  # 6 bps above the ignition's average 50.3375
        assert momentum(run(tape.events)) == []
        assert len(momentum(run(tape.events, params(min_profit_bps=5)))) == 1

    def test_the_owner_share_threshold_is_applied(self) -> None:
        tape = Tape()
        tape.street_trade("retail", "ACME", "sell", 100, "50.00")  # the other side's volume
        for price in IGNITION:
            tape.street_trade("igniter", "ACME", "buy", 300, price)
            tape.street_trade("fund", "ACME", "buy", 300, price)
            tape.wait(10)
        unwind_passively(tape, "50.70")
        # At its last burst fill, the igniter's 1,200 of the 2,100 shares taken: 0.57.
        assert [f.owner for f in momentum(run(tape.events))] == ["igniter"]
        assert momentum(run(tape.events, params(min_owner_share=Decimal("0.58")))) == []


class TestSettings:
    def test_the_defaults_are_the_models(self) -> None:
        settings = Settings(_env_file=None)
        assert settings.surveillance_momentum_window_seconds * NS_PER_SECOND == (
            MomentumParameters().window_ns
        )

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("surveillance_momentum_window_seconds", 0),
            ("surveillance_momentum_window_seconds", 3601),
            ("surveillance_momentum_min_orders", 0),
            ("surveillance_momentum_min_quantity", 0),
            ("surveillance_momentum_min_levels", 1),
            ("surveillance_momentum_min_move_bps", 0),
            ("surveillance_momentum_min_owner_share", "0"),
            ("surveillance_momentum_min_owner_share", "1.01"),
            ("surveillance_momentum_unwind_window_seconds", 0),
            ("surveillance_momentum_min_unwind_fraction", "0"),
            ("surveillance_momentum_min_unwind_fraction", "1.5"),
            ("surveillance_momentum_min_profit_bps", -1),
        ],
    )
    def test_out_of_bounds_parameters_are_refused(self, name: str, value: object) -> None:
        with pytest.raises(ValidationError):
            Settings(_env_file=None, **{name: value})  # type: ignore[arg-type]
