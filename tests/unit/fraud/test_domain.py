"""Takeover signals and the policy table (pure rules)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.fraud.countries import country_point
from tradeguard.fraud.domain import (
    HOUR_NS,
    Holding,
    Location,
    PastSignIn,
    SignInFacts,
    TakeoverPolicy,
    TakeoverResponse,
    TakeoverSignal,
    assess,
    distance_km,
    security_change_signal,
    sign_in_signals,
    unusual_trading,
)

MINUTE = 60 * NS_PER_SECOND
POLICY = TakeoverPolicy()


def where(country: str, network: str | None = "Net A") -> Location:
    point = country_point(country)
    assert point is not None
    return Location(country, network, point[0], point[1])


def past(at_ns: int, device: str, location: Location | None) -> PastSignIn:
    return PastSignIn(
        at_ns=at_ns,
        device_id=device,
        country=location.country if location else None,
        network=location.network if location else None,
        latitude=location.latitude if location else None,
        longitude=location.longitude if location else None,
    )


def kinds(facts: SignInFacts, history: list[PastSignIn]) -> set[TakeoverSignal]:
    return {s.signal for s in sign_in_signals(facts, history, POLICY)}


class TestPolicyTable:
    @pytest.mark.parametrize(
        ("score", "response"),
        [
            (0, TakeoverResponse.ALLOW),
            (29, TakeoverResponse.ALLOW),
            (30, TakeoverResponse.STEP_UP),
            (49, TakeoverResponse.STEP_UP),
            (50, TakeoverResponse.VERIFY),
            (89, TakeoverResponse.VERIFY),
            (90, TakeoverResponse.REVIEW),
            (119, TakeoverResponse.REVIEW),
            (120, TakeoverResponse.LOCK),
        ],
    )
    def test_the_strongest_response_whose_threshold_the_score_reaches(
        self, score: int, response: TakeoverResponse
    ) -> None:
        assert POLICY.response_for(score) is response

    def test_responses_include_the_weaker_ones(self) -> None:
        assert TakeoverResponse.LOCK.includes(TakeoverResponse.REVIEW)
        assert TakeoverResponse.VERIFY.includes(TakeoverResponse.STEP_UP)
        assert not TakeoverResponse.STEP_UP.includes(TakeoverResponse.VERIFY)

    def test_thresholds_out_of_order_or_a_missing_weight_are_refused(self) -> None:
        with pytest.raises(ValueError, match="rise strictly"):
            TakeoverPolicy(thresholds={TakeoverResponse.VERIFY: 50, TakeoverResponse.LOCK: 40})
        with pytest.raises(ValueError, match="no weight"):
            TakeoverPolicy(weights={TakeoverSignal.NEW_DEVICE: 10})
        with pytest.raises(ValueError, match="negative"):
            TakeoverPolicy(weights={s: -1 for s in TakeoverSignal})

    def test_scores_add_up_from_a_base(self) -> None:
        signals = sign_in_signals(
            SignInFacts(HOUR_NS * 5, "d2", where("SE", "Net B")),
            [past(0, "d1", where("GB"))],
            POLICY,
        )
        assert assess(signals, POLICY).score == 20 + 40 + 15
        assert assess(signals, POLICY, base=50).response is TakeoverResponse.LOCK


class TestSignInSignals:
    def test_the_first_sign_in_is_the_baseline_and_raises_nothing(self) -> None:
        assert kinds(SignInFacts(0, "d1", where("SE")), []) == set()

    def test_a_new_device_country_and_network_each_raise_their_signal(self) -> None:
        history = [past(0, "d1", where("GB"))]
        facts = SignInFacts(10 * HOUR_NS, "d2", where("SE", "Net B"))
        assert kinds(facts, history) == {
            TakeoverSignal.NEW_DEVICE,
            TakeoverSignal.NEW_COUNTRY,
            TakeoverSignal.NEW_NETWORK,
        }

    def test_a_known_device_from_a_known_place_raises_nothing(self) -> None:
        history = [past(0, "d1", where("GB")), past(-HOUR_NS, "d2", where("SE"))]
        assert kinds(SignInFacts(HOUR_NS, "d2", where("GB")), history) == set()

    def test_an_address_that_cannot_be_placed_is_judged_by_its_device_only(self) -> None:
        history = [past(0, "d1", where("GB"))]
        assert kinds(SignInFacts(MINUTE, "d2", None), history) == {TakeoverSignal.NEW_DEVICE}
        assert kinds(SignInFacts(MINUTE, "d1", None), history) == set()

    @pytest.mark.spec("ATO-1")
    def test_travel_faster_than_the_setting_is_impossible(self) -> None:
        # London to Stockholm is about 1,430 km: in 30 minutes, 2,860 km/h.
        history = [past(0, "d1", where("GB"))]
        signals = sign_in_signals(SignInFacts(30 * MINUTE, "d1", where("SE")), history, POLICY)
        travel = next(s for s in signals if s.signal is TakeoverSignal.IMPOSSIBLE_TRAVEL)
        assert travel.evidence["from_country"] == "GB"
        assert travel.evidence["to_country"] == "SE"
        assert 1400 <= travel.evidence["distance_km"] <= 1460
        assert travel.evidence["speed_kmh"] > 900

    def test_travel_within_the_speed_or_under_the_distance_floor_is_not(self) -> None:
        history = [past(0, "d1", where("GB"))]
        # Two hours: 715 km/h, a flight.
        assert TakeoverSignal.IMPOSSIBLE_TRAVEL not in kinds(
            SignInFacts(2 * HOUR_NS, "d1", where("SE")), history
        )
        # London to Paris (about 340 km) is under the 500 km floor, however fast.
        assert TakeoverSignal.IMPOSSIBLE_TRAVEL not in kinds(
            SignInFacts(MINUTE, "d1", where("FR")), history
        )

    def test_the_same_instant_far_away_is_impossible_not_a_division_by_zero(self) -> None:
        history = [past(0, "d1", where("GB"))]
        assert TakeoverSignal.IMPOSSIBLE_TRAVEL in kinds(SignInFacts(0, "d1", where("JP")), history)

    def test_distance_is_the_great_circle(self) -> None:
        assert distance_km(0, 0, 0, 0) == 0
        assert round(distance_km(0, 0, 0, 180)) == 20015  # half the equator


class TestUnusualTrading:
    def holding(self, now: int, sold: int, offered: int = 0) -> Holding:
        return Holding("a1", "ACME", quantity_now=now, sold_since=sold, offered_since=offered)

    @pytest.mark.spec("ATO-1", "ACCT-5")
    def test_selling_most_shares_soon_after_a_risky_sign_in_is_unusual(self) -> None:
        found = unusual_trading([self.holding(40, 60)], POLICY, sign_in_ns=0, now_ns=10 * MINUTE)
        assert found is not None
        assert found.evidence["sold_fraction"] == Decimal("0.6")

    def test_at_the_fraction_it_is_raised_just_below_it_is_not(self) -> None:
        assert unusual_trading([self.holding(50, 50)], POLICY, sign_in_ns=0, now_ns=MINUTE)
        assert not unusual_trading([self.holding(51, 49)], POLICY, sign_in_ns=0, now_ns=MINUTE)

    def test_open_sell_orders_count_and_nothing_held_is_nothing_sold(self) -> None:
        assert unusual_trading([self.holding(100, 0, 80)], POLICY, sign_in_ns=0, now_ns=MINUTE)
        assert not unusual_trading([self.holding(0, 0)], POLICY, sign_in_ns=0, now_ns=MINUTE)

    def test_after_the_window_it_is_not_the_sign_ins_doing(self) -> None:
        assert not unusual_trading([self.holding(0, 100)], POLICY, sign_in_ns=0, now_ns=31 * MINUTE)


class TestSecurityChangeSignal:
    def test_a_change_inside_the_window_is_raised_and_outside_is_not(self) -> None:
        now = 100 * HOUR_NS
        assert security_change_signal(now - 72 * HOUR_NS, POLICY, now_ns=now) is not None
        assert security_change_signal(now - 72 * HOUR_NS - 1, POLICY, now_ns=now) is None
        assert security_change_signal(None, POLICY, now_ns=now) is None
