"""The AML rules at and just past their thresholds, CTR aggregation per person per business
day, the SAR and CTR deadlines and the reminders (pure, aml/domain.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tradeguard.aml.domain import (
    DAY_NS,
    AmlRules,
    Context,
    Direction,
    Movement,
    MovementKind,
    ProfileView,
    Rule,
    business_day,
    ctr_aggregate,
    ctr_due,
    dormant_waking,
    evaluate,
    high_risk_geography,
    profile_deviation,
    rapid_in_out,
    rapid_trading,
    reminders_due,
    sar_due_ns,
    structuring,
    structuring_accounts,
)
from tradeguard.core.clock import NS_PER_SECOND

NY = ZoneInfo("America/New_York")
RULES = AmlRules()
DEFAULT = ProfileView(expected_monthly_funding=Decimal(20_000), from_profile=False)


def at(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> int:
    return int(datetime(y, m, d, hh, mm, tzinfo=NY).timestamp()) * NS_PER_SECOND


class Tape:
    """Movements of one person with increasing sequence numbers."""

    def __init__(self, user: str = "u1") -> None:
        self.user = user
        self.items: list[Movement] = []

    def add(
        self,
        kind: MovementKind,
        amount: str,
        ts: int,
        *,
        account: str = "acct-0001",
        rail: str | None = "ach",
        symbol: str | None = None,
    ) -> Movement:
        m = Movement(
            id=f"{kind.value}:{len(self.items)}",
            seq=len(self.items) + 1,
            user_id=self.user,
            account_id=account,
            kind=kind,
            amount=Decimal(amount),
            ts_ns=ts,
            day=business_day(ts, NY),
            rail=rail,
            symbol=symbol,
        )
        self.items.append(m)
        return m

    def deposit(self, amount: str, ts: int, **kw: object) -> Movement:
        return self.add(MovementKind.DEPOSIT, amount, ts, **kw)  # type: ignore[arg-type]

    def withdraw(self, amount: str, ts: int, **kw: object) -> Movement:
        return self.add(MovementKind.WITHDRAWAL, amount, ts, **kw)  # type: ignore[arg-type]


class TestBusinessDay:
    def test_2359_and_0001_local_are_two_business_days(self) -> None:
        assert business_day(at(2026, 1, 5, 23, 59), NY) == date(2026, 1, 5)
        assert business_day(at(2026, 1, 6, 0, 1), NY) == date(2026, 1, 6)
        # 04:30 UTC on the 6th is still the 5th in New York.
        utc = int(datetime(2026, 1, 6, 4, 30, tzinfo=UTC).timestamp()) * NS_PER_SECOND
        assert business_day(utc, NY) == date(2026, 1, 5)


class TestCtrAggregation:
    @pytest.mark.spec("AML-3")
    def test_cash_in_is_aggregated_across_accounts_per_business_day_and_only_above_10000(
        self,
    ) -> None:
        tape = Tape()
        tape.deposit("6000", at(2026, 1, 5, 23, 59), account="acct-A")
        tape.deposit("4000.01", at(2026, 1, 6, 0, 1), account="acct-B")
        tape.deposit("6000", at(2026, 1, 6, 9, 0), account="acct-A")
        first = ctr_aggregate(
            tape.items, user_id="u1", day=date(2026, 1, 5), direction=Direction.IN, rules=RULES
        )
        assert first is None  # 6000 on the 5th
        second = ctr_aggregate(
            tape.items, user_id="u1", day=date(2026, 1, 6), direction=Direction.IN, rules=RULES
        )
        assert second is not None
        assert second.total == Decimal("10000.01")  # the 23:59 deposit is not the 6th's
        assert second.accounts == ("acct-A", "acct-B")

    def test_exactly_the_threshold_is_not_reported_a_cent_more_is(self) -> None:
        tape = Tape()
        tape.deposit("10000.00", at(2026, 1, 6, 9))
        day = date(2026, 1, 6)
        assert (
            ctr_aggregate(tape.items, user_id="u1", day=day, direction=Direction.IN, rules=RULES)
            is None
        )
        tape.deposit("0.01", at(2026, 1, 6, 10), account="acct-B")
        found = ctr_aggregate(
            tape.items, user_id="u1", day=day, direction=Direction.IN, rules=RULES
        )
        assert found is not None
        assert found.total == Decimal("10000.01")
        assert found.accounts == ("acct-0001", "acct-B")

    def test_cash_in_and_cash_out_are_aggregated_separately(self) -> None:
        tape = Tape()
        tape.deposit("6000", at(2026, 1, 6, 9))
        tape.withdraw("6000", at(2026, 1, 6, 10))
        day = date(2026, 1, 6)
        for direction in Direction:
            assert (
                ctr_aggregate(tape.items, user_id="u1", day=day, direction=direction, rules=RULES)
                is None
            )

    def test_rails_outside_the_setting_do_not_count(self) -> None:
        tape = Tape()
        tape.deposit("20000", at(2026, 1, 6, 9), rail="card")
        rules = AmlRules(ctr_rails=frozenset({"ach", "wire"}))
        found = ctr_aggregate(
            tape.items, user_id="u1", day=date(2026, 1, 6), direction=Direction.IN, rules=rules
        )
        assert found is None

    @pytest.mark.spec("AML-3")
    def test_a_ctr_is_due_15_days_after_the_transaction_day(self) -> None:
        assert ctr_due(date(2026, 1, 6), RULES) == date(2026, 1, 21)


class TestStructuring:
    @pytest.mark.spec("AML-1")
    def test_three_deposits_just_under_the_threshold_within_five_days_alert(self) -> None:
        tape = Tape()
        tape.deposit("8000.00", at(2026, 1, 5))
        tape.deposit("9500", at(2026, 1, 7))
        second_only = structuring(tape.items[-1], tape.items, RULES)
        assert second_only is None  # two are not "several"
        third = tape.deposit("10000.00", at(2026, 1, 9))
        found = structuring(third, tape.items, RULES)
        assert found is not None
        assert found.rule is Rule.STRUCTURING
        assert found.facts["count"] == 3
        assert found.facts["band"] == ["8000.00", "10000.00"]
        assert found.facts["movements"][0]["account"] == "***0001"  # type: ignore[index]

    def test_just_below_the_band_or_outside_the_window_does_not_alert(self) -> None:
        tape = Tape()
        tape.deposit("7999.99", at(2026, 1, 5))
        tape.deposit("9500", at(2026, 1, 6))
        last = tape.deposit("9500", at(2026, 1, 7))
        assert structuring(last, tape.items, RULES) is None
        late = Tape()
        late.deposit("9000", at(2026, 1, 1))
        late.deposit("9000", at(2026, 1, 5))
        last = late.deposit("9000", at(2026, 1, 6))  # 1 Jan is 6 business days before
        assert structuring(last, late.items, RULES) is None

    def test_a_pattern_that_goes_on_keeps_its_window_key(self) -> None:
        tape = Tape()
        for day in (5, 6, 7):
            tape.deposit("9000", at(2026, 1, day))
        first = structuring(tape.items[-1], tape.items, RULES)
        fourth = tape.deposit("9000", at(2026, 1, 8))
        again = structuring(fourth, tape.items, RULES)
        assert first is not None
        assert again is not None
        assert first.window_key == again.window_key

    @pytest.mark.spec("AML-1")
    def test_one_day_split_across_two_accounts_alerts(self) -> None:
        tape = Tape()
        tape.deposit("4000", at(2026, 1, 6, 9), account="acct-A")
        last = tape.deposit("3999.99", at(2026, 1, 6, 10), account="acct-B")
        assert structuring_accounts(last, tape.items, RULES) is None  # 7999.99 < 8000
        last = tape.deposit("0.01", at(2026, 1, 6, 11), account="acct-B")
        found = structuring_accounts(last, tape.items, RULES)
        assert found is not None
        assert found.facts["accounts"] == ["***ct-A", "***ct-B"]

    def test_one_account_alone_is_not_split(self) -> None:
        tape = Tape()
        tape.deposit("4500", at(2026, 1, 6, 9))
        last = tape.deposit("4500", at(2026, 1, 6, 10))
        assert structuring_accounts(last, tape.items, RULES) is None


class TestRapidInOut:
    @pytest.mark.spec("AML-1")
    def test_deposit_then_withdrawal_within_days_with_little_trading_alerts(self) -> None:
        tape = Tape()
        tape.deposit("5000", at(2026, 1, 5))
        tape.add(MovementKind.BUY, "1249.99", at(2026, 1, 6), rail=None, symbol="ACME")
        out = tape.withdraw("4000", at(2026, 1, 8))
        found = rapid_in_out(out, tape.items, RULES)
        assert found is not None
        assert found.facts["traded"] == "1249.99"

    def test_at_the_edges_it_stays_quiet(self) -> None:
        small = Tape()
        small.deposit("4999.99", at(2026, 1, 5))
        assert rapid_in_out(small.withdraw("4999.99", at(2026, 1, 6)), small.items, RULES) is None
        traded = Tape()
        traded.deposit("5000", at(2026, 1, 5))
        traded.add(MovementKind.BUY, "1250", at(2026, 1, 6), rail=None, symbol="ACME")
        assert rapid_in_out(traded.withdraw("5000", at(2026, 1, 7)), traded.items, RULES) is None
        partial = Tape()
        partial.deposit("5000", at(2026, 1, 5))
        assert (
            rapid_in_out(partial.withdraw("3999.99", at(2026, 1, 6)), partial.items, RULES) is None
        )
        late = Tape()
        late.deposit("5000", at(2026, 1, 5, 9))
        assert rapid_in_out(late.withdraw("5000", at(2026, 1, 10, 10)), late.items, RULES) is None


class TestProfileDeviation:
    @pytest.mark.spec("AML-2")
    def test_money_moved_above_three_times_the_expected_month_alerts(self) -> None:
        profile = ProfileView(expected_monthly_funding=Decimal(1000), from_profile=True)
        tape = Tape()
        last = tape.deposit("3000", at(2026, 1, 5))
        assert profile_deviation(last, tape.items, RULES, profile) is None  # exactly 3x
        last = tape.deposit("0.01", at(2026, 1, 6))
        found = profile_deviation(last, tape.items, RULES, profile)
        assert found is not None
        assert found.facts["expected_from"] == "profile"

    def test_without_a_profile_the_firm_default_applies(self) -> None:
        tape = Tape()
        last = tape.deposit("60000.01", at(2026, 1, 5))
        found = profile_deviation(last, tape.items, RULES, DEFAULT)
        assert found is not None
        assert found.facts["expected_from"] == "firm default"


class TestDormant:
    @pytest.mark.spec("AML-2")
    def test_a_large_movement_after_180_idle_days_alerts(self) -> None:
        tape = Tape()
        ts = at(2026, 7, 1)
        move = tape.deposit("5000", ts)
        assert dormant_waking(move, RULES, ts - 180 * DAY_NS) is not None
        assert dormant_waking(move, RULES, ts - 180 * DAY_NS + 1) is None
        assert dormant_waking(move, RULES, None) is None  # a first movement is not waking
        small = tape.deposit("4999.99", ts + 1)
        assert dormant_waking(small, RULES, ts - 400 * DAY_NS) is None


class TestRapidTrading:
    @pytest.mark.spec("AML-2")
    def test_turnover_above_twenty_times_net_funding_alerts(self) -> None:
        tape = Tape()
        for i in range(10):
            tape.add(MovementKind.BUY, "10000", at(2026, 1, 5, 10, i), rail=None, symbol=f"S{i}")
        last = tape.items[-1]
        assert rapid_trading(last, tape.items, RULES, Decimal(5000)) is None  # 100k = 20x
        assert rapid_trading(last, tape.items, RULES, Decimal("4999.99")) is not None

    def test_round_trips_alert_at_the_limit(self) -> None:
        tape = Tape()
        for i in range(20):
            tape.add(MovementKind.BUY, "10", at(2026, 1, 5, 10, i), rail=None, symbol="ACME")
            tape.add(MovementKind.SELL, "10", at(2026, 1, 5, 11, i), rail=None, symbol="ACME")
        found = rapid_trading(tape.items[-1], tape.items, RULES, Decimal(1_000_000))
        assert found is not None
        assert found.facts["round_trips"] == 20
        assert rapid_trading(tape.items[-3], tape.items, RULES, Decimal(1_000_000)) is None


class TestHighRiskGeography:
    @pytest.mark.spec("AML-1")
    def test_a_customer_resident_in_a_listed_country_alerts_from_the_minimum(self) -> None:
        profile = ProfileView(Decimal(20_000), True, country="IR", nationality="DE")
        tape = Tape()
        assert high_risk_geography(tape.deposit("999.99", at(2026, 1, 5)), RULES, profile) is None
        found = high_risk_geography(tape.deposit("1000", at(2026, 1, 5)), RULES, profile)
        assert found is not None
        assert found.facts["countries"] == ["IR"]
        clean = ProfileView(Decimal(20_000), True, country="US", nationality="US")
        assert high_risk_geography(tape.deposit("50000", at(2026, 1, 5)), RULES, clean) is None


class TestEvaluate:
    def test_every_rule_runs_and_trades_do_not_trigger_cash_rules(self) -> None:
        tape = Tape()
        trade = tape.add(MovementKind.BUY, "50", at(2026, 1, 5), rail=None, symbol="ACME")
        assert evaluate(trade, tape.items, Context(profile=DEFAULT), RULES) == []


class TestDeadlines:
    @pytest.mark.spec("AML-3")
    def test_a_sar_is_due_30_days_after_detection_or_60_without_a_suspect(self) -> None:
        detected = at(2026, 1, 5)
        assert sar_due_ns(detected, suspect_identified=True, rules=RULES) == detected + 30 * DAY_NS
        assert sar_due_ns(detected, suspect_identified=False, rules=RULES) == detected + 60 * DAY_NS

    def test_reminders_fall_due_7_and_2_days_before_once_each(self) -> None:
        due = at(2026, 2, 4)
        assert reminders_due(due, due - 8 * DAY_NS, sent=[], rules=RULES) == []
        assert reminders_due(due, due - 7 * DAY_NS, sent=[], rules=RULES) == [7]
        assert reminders_due(due, due - 3 * DAY_NS, sent=[7], rules=RULES) == []
        assert reminders_due(due, due - 2 * DAY_NS, sent=[7], rules=RULES) == [2]
        assert reminders_due(due, due - DAY_NS, sent=[7, 2], rules=RULES) == []
