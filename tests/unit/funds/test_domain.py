"""Funds rules (pure): routing numbers, account numbers, the limit windows in the firm's time
zone across clock changes, limits at and just past their boundaries, cooling periods, and
what may be withdrawn."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.funds.domain import (
    DAY_NS,
    WEEK_NS,
    CountedWithdrawal,
    FundsError,
    Refusal,
    WithdrawalPolicy,
    cooling_refusal,
    day_window,
    limit_refusal,
    limit_use,
    needs_review,
    normalized_account_number,
    valid_routing_number,
    withdrawable_cash,
)

NY = ZoneInfo("America/New_York")
HOUR = 3600 * NS_PER_SECOND
POLICY = WithdrawalPolicy(
    daily_limit=Decimal(50_000),
    weekly_limit=Decimal(200_000),
    review_threshold=Decimal(10_000),
    minimum=Decimal(1),
    new_account_cooling_ns=24 * HOUR,
    security_change_cooling_ns=24 * HOUR,
    new_destination_hold_ns=48 * HOUR,
    timezone="America/New_York",
)


def ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, tz: object = UTC) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()) * NS_PER_SECOND  # type: ignore[arg-type]


class TestRoutingNumbers:
    @pytest.mark.parametrize(
        "routing",
        ["021000021", "011000015", "026009593", "121000358", "322271627", "061000104"],
    )
    def test_real_routing_numbers_pass(self, routing: str) -> None:
        assert valid_routing_number(routing)

    @pytest.mark.parametrize(
        "routing",
        [
            "021000022",  # checksum off by one
            "12100035",  # 8 digits
            "0210000210",  # 10 digits
            "02100002a",
            "２１０００００２１",  # full-width digits
            "991000021",  # no Federal Reserve prefix 99
            "000000000",  # passes the checksum, but is no bank's
        ],
    )
    def test_malformed_or_wrong_checksum_fails(self, routing: str) -> None:
        assert not valid_routing_number(routing)

    @given(st.text(alphabet="0123456789", min_size=9, max_size=9))
    def test_changing_one_digit_breaks_a_valid_number(self, routing: str) -> None:
        if not valid_routing_number(routing):
            return
        for position in range(9):
            digit = (int(routing[position]) + 1) % 10
            changed = routing[:position] + str(digit) + routing[position + 1 :]
            assert not valid_routing_number(changed)


class TestAccountNumbers:
    def test_spaces_and_dashes_are_dropped(self) -> None:
        assert normalized_account_number(" 1234-5678 90 ") == "1234567890"

    @pytest.mark.parametrize("value", ["123", "1" * 18, "12a45", "１２３４５", ""])
    def test_outside_4_to_17_digits_is_refused(self, value: str) -> None:
        with pytest.raises(FundsError):
            normalized_account_number(value)


class TestWindows:
    def test_a_day_is_new_york_midnight_to_midnight(self) -> None:
        start, end = day_window(ns(2026, 1, 5, 15), NY)
        assert start == ns(2026, 1, 5, tz=NY)
        assert end - start == DAY_NS

    def test_the_day_clocks_spring_forward_lasts_23_hours(self) -> None:
        start, end = day_window(ns(2026, 3, 8, 12, tz=NY), NY)
        assert end - start == 23 * HOUR

    def test_the_day_clocks_fall_back_lasts_25_hours(self) -> None:
        start, end = day_window(ns(2026, 11, 1, 12, tz=NY), NY)
        assert end - start == 25 * HOUR

    def test_late_evening_in_new_york_is_still_that_day_though_utc_is_tomorrow(self) -> None:
        evening = ns(2026, 1, 5, 23, 30, tz=NY)  # 04:30 UTC on the 6th
        start, _ = day_window(evening, NY)
        assert start == ns(2026, 1, 5, tz=NY)


@pytest.mark.spec("WDL-1")
class TestDailyLimit:
    def test_reaching_the_limit_exactly_is_allowed_one_cent_more_is_not(self) -> None:
        now = ns(2026, 1, 5, 15)
        used = [CountedWithdrawal(Decimal("49999.99"), now - HOUR)]
        use = limit_use(POLICY, used, now)
        assert limit_refusal(POLICY, use, Decimal("0.01")) is None
        assert limit_refusal(POLICY, use, Decimal("0.02")) is Refusal.DAILY_LIMIT

    def test_yesterday_evening_does_not_count_today(self) -> None:
        now = ns(2026, 1, 6, 0, 1, tz=NY)
        used = [CountedWithdrawal(Decimal(50_000), ns(2026, 1, 5, 23, 59, tz=NY))]
        use = limit_use(POLICY, used, now)
        assert use.day_used == 0
        assert limit_refusal(POLICY, use, Decimal(50_000)) is None

    def test_a_withdrawal_at_local_midnight_counts_for_the_new_day(self) -> None:
        midnight = ns(2026, 1, 6, tz=NY)
        used = [CountedWithdrawal(Decimal(50_000), midnight)]
        assert limit_use(POLICY, used, midnight).day_used == Decimal(50_000)
        assert limit_use(POLICY, used, midnight - 1).day_used == 0


@pytest.mark.spec("WDL-2")
class TestWeeklyLimit:
    def test_the_week_rolls_it_has_no_calendar_reset(self) -> None:
        now = ns(2026, 1, 12, 15)  # a Monday
        used = [
            CountedWithdrawal(Decimal(50_000), now - d * DAY_NS - HOUR) for d in range(1, 5)
        ]  # Sunday back to Thursday
        use = limit_use(POLICY, used, now)
        assert use.week_used == Decimal(200_000)
        assert limit_refusal(POLICY, use, Decimal("0.01")) is Refusal.WEEKLY_LIMIT

    def test_exactly_seven_days_later_the_old_withdrawal_has_left_the_window(self) -> None:
        then = ns(2026, 1, 5, 15)
        used = [CountedWithdrawal(Decimal(200_000), then)]
        assert limit_use(POLICY, used, then + WEEK_NS - 1).week_used == Decimal(200_000)
        assert limit_use(POLICY, used, then + WEEK_NS).week_used == 0

    @given(
        st.lists(
            st.tuples(st.integers(0, 14 * 24), st.integers(1, 6_000_000)), min_size=0, max_size=40
        )
    )
    def test_whatever_was_allowed_never_sums_past_either_limit(
        self, requests: list[tuple[int, int]]
    ) -> None:
        start = ns(2026, 3, 1)
        allowed: list[CountedWithdrawal] = []
        for hour, cents in sorted(requests):
            now = start + hour * HOUR
            amount = Decimal(cents) / 100
            if limit_refusal(POLICY, limit_use(POLICY, allowed, now), amount) is None:
                allowed.append(CountedWithdrawal(amount, now))
        for item in allowed:
            use = limit_use(POLICY, allowed, item.requested_ns)
            assert use.day_used <= POLICY.daily_limit
            assert use.week_used <= POLICY.weekly_limit


class TestCooling:
    @pytest.mark.spec("WDL-4")
    def test_no_withdrawal_in_the_first_24_hours(self) -> None:
        opened = ns(2026, 1, 5, 15)
        refusal = cooling_refusal(
            POLICY,
            now_ns=opened + 24 * HOUR - 1,
            opened_ns=opened,
            last_security_change_ns=None,
            destination_verified_ns=opened - 100 * HOUR,
        )
        assert refusal is not None
        assert refusal.refusal is Refusal.NEW_ACCOUNT
        assert refusal.until_ns == opened + 24 * HOUR
        assert (
            cooling_refusal(
                POLICY,
                now_ns=opened + 24 * HOUR,
                opened_ns=opened,
                last_security_change_ns=None,
                destination_verified_ns=opened - 100 * HOUR,
            )
            is None
        )

    @pytest.mark.spec("ATO-1")
    def test_a_security_change_starts_its_own_cooling(self) -> None:
        opened = ns(2026, 1, 1)
        change = ns(2026, 1, 5, 15)
        refusal = cooling_refusal(
            POLICY,
            now_ns=change + HOUR,
            opened_ns=opened,
            last_security_change_ns=change,
            destination_verified_ns=opened,
        )
        assert refusal is not None
        assert refusal.refusal is Refusal.SECURITY_CHANGE

    def test_a_new_destination_is_held(self) -> None:
        opened = ns(2026, 1, 1)
        verified = ns(2026, 1, 5, 15)
        refusal = cooling_refusal(
            POLICY,
            now_ns=verified + 47 * HOUR,
            opened_ns=opened,
            last_security_change_ns=None,
            destination_verified_ns=verified,
        )
        assert refusal is not None
        assert refusal.refusal is Refusal.NEW_DESTINATION


class TestWithdrawable:
    def test_uncollected_deposits_held_cash_and_unsettled_purchases_do_not_leave(self) -> None:
        assert withdrawable_cash(
            settled=Decimal(10_000),
            unsettled=Decimal(-2_000),
            held=Decimal(1_000),
            uncollected=Decimal(3_000),
        ) == Decimal(4_000)

    def test_unsettled_sale_proceeds_do_not_count(self) -> None:
        assert withdrawable_cash(
            settled=Decimal(100), unsettled=Decimal(5_000), held=Decimal(0), uncollected=Decimal(0)
        ) == Decimal(100)

    def test_a_debit_balance_withdraws_nothing(self) -> None:
        assert withdrawable_cash(
            settled=Decimal(-50), unsettled=Decimal(0), held=Decimal(0), uncollected=Decimal(0)
        ) == Decimal(0)


@pytest.mark.spec("WDL-3")
def test_large_or_flagged_withdrawals_go_to_review() -> None:
    assert needs_review(POLICY, Decimal(10_000), flagged=False)
    assert not needs_review(POLICY, Decimal("9999.99"), flagged=False)
    assert needs_review(POLICY, Decimal(5), flagged=True)
