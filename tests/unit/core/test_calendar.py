"""NYSE calendar against known dates: holidays, early closes, DST, T+1 settlement.

Expected instants are written in UTC by hand (EST = UTC-5, EDT = UTC-4), so the tests
check the calendar's time-zone arithmetic rather than repeat it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import holidays
import pytest

from tradeguard.core.calendar import ExchangeCalendar
from tradeguard.core.clock import NS_PER_SECOND


def utc_ns(text: str) -> int:
    """'2025-11-28 14:30' (UTC) as epoch nanoseconds."""
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return int(moment.timestamp()) * NS_PER_SECOND


class _Everything:
    def __contains__(self, item: object) -> bool:
        return True


@pytest.fixture(scope="module")
def nyse() -> ExchangeCalendar:
    return ExchangeCalendar()


class TestBusinessDays:
    @pytest.mark.parametrize(
        ("day", "open_"),
        [
            (date(2025, 11, 26), True),  # Wednesday before Thanksgiving
            (date(2025, 11, 27), False),  # Thanksgiving Day
            (date(2025, 11, 28), True),  # day after Thanksgiving (early close)
            (date(2025, 11, 29), False),  # Saturday
            (date(2025, 11, 30), False),  # Sunday
            (date(2026, 7, 3), False),  # Independence Day observed (July 4 is a Saturday)
            (date(2026, 7, 2), True),
            (date(2025, 1, 9), False),  # national day of mourning, President Carter
            (date(2026, 4, 3), False),  # Good Friday
            (date(2027, 12, 24), False),  # Christmas observed (December 25 is a Saturday)
            (date(2025, 10, 13), True),  # Columbus Day: the exchange trades
        ],
    )
    def test_known_nyse_dates(self, nyse: ExchangeCalendar, day: date, open_: bool) -> None:
        assert nyse.is_business_day(day) is open_

    def test_the_next_business_day_skips_thanksgiving(self, nyse: ExchangeCalendar) -> None:
        assert nyse.next_business_day(date(2025, 11, 26)) == date(2025, 11, 28)
        assert nyse.next_business_day(date(2025, 11, 26), 2) == date(2025, 12, 1)

    def test_the_previous_business_day_skips_the_weekend_and_thanksgiving(
        self, nyse: ExchangeCalendar
    ) -> None:
        assert nyse.previous_business_day(date(2025, 12, 1)) == date(2025, 11, 28)
        assert nyse.previous_business_day(date(2025, 12, 1), 2) == date(2025, 11, 26)

    def test_a_five_day_window_over_thanksgiving_week_reaches_back_to_the_friday_before(
        self, nyse: ExchangeCalendar
    ) -> None:
        assert nyse.business_days_ending(date(2025, 11, 28), 5) == (
            date(2025, 11, 21),
            date(2025, 11, 24),
            date(2025, 11, 25),
            date(2025, 11, 26),
            date(2025, 11, 28),
        )

    def test_a_window_ending_on_a_holiday_ends_on_the_business_day_before(
        self, nyse: ExchangeCalendar
    ) -> None:
        assert nyse.business_days_ending(date(2025, 11, 27), 2) == (
            date(2025, 11, 25),
            date(2025, 11, 26),
        )

    def test_counts_below_one_are_refused(self, nyse: ExchangeCalendar) -> None:
        with pytest.raises(ValueError, match="at least one"):
            nyse.business_days_ending(date(2025, 11, 28), 0)
        with pytest.raises(ValueError, match="at least 1"):
            nyse.next_business_day(date(2025, 11, 28), 0)

    def test_an_injected_holiday_list_replaces_the_package(self) -> None:
        calendar = ExchangeCalendar(holidays={date(2026, 1, 6)}, bank_holidays=set())

        assert not calendar.is_business_day(date(2026, 1, 6))
        assert calendar.is_business_day(date(2026, 11, 26))  # Thanksgiving is not in the list

    def test_answers_stay_right_when_the_memo_fills_and_starts_over(self) -> None:
        calendar = ExchangeCalendar()
        package = holidays.financial_holidays("NYSE")
        days = [date(2000, 1, 3) + timedelta(days=i) for i in range(5000)]

        answers = [calendar.is_business_day(d) for d in days]
        window = calendar.business_days_ending(date(2025, 12, 31), 5000)
        sessions = {calendar.session_open_ns(d) for d in window}

        assert answers == [d.weekday() < 5 and d not in package for d in days]
        assert len(sessions) == 5000
        assert calendar.is_business_day(date(2025, 11, 28))

    def test_a_calendar_without_business_days_fails_instead_of_looping(self) -> None:
        calendar = ExchangeCalendar(holidays=_Everything())

        with pytest.raises(ValueError, match="no business day"):
            calendar.next_business_day(date(2026, 1, 6))


class TestSessions:
    @pytest.mark.parametrize(
        ("day", "opens", "closes"),
        [
            # Winter (EST, UTC-5) and summer (EDT, UTC-4).
            (date(2026, 1, 6), "2026-01-06 14:30", "2026-01-06 21:00"),
            (date(2026, 6, 2), "2026-06-02 13:30", "2026-06-02 20:00"),
            # DST starts Sunday 2026-03-08: Friday before is EST, Monday after is EDT.
            (date(2026, 3, 6), "2026-03-06 14:30", "2026-03-06 21:00"),
            (date(2026, 3, 9), "2026-03-09 13:30", "2026-03-09 20:00"),
            # DST ends Sunday 2025-11-02: Friday before is EDT, Monday after is EST.
            (date(2025, 10, 31), "2025-10-31 13:30", "2025-10-31 20:00"),
            (date(2025, 11, 3), "2025-11-03 14:30", "2025-11-03 21:00"),
        ],
    )
    def test_the_regular_session_is_0930_to_1600_new_york_time_across_dst(
        self, nyse: ExchangeCalendar, day: date, opens: str, closes: str
    ) -> None:
        assert nyse.session_open_ns(day) == utc_ns(opens)
        assert nyse.session_close_ns(day) == utc_ns(closes)

    @pytest.mark.parametrize(
        ("day", "closes"),
        [
            (date(2025, 11, 28), "2025-11-28 18:00"),  # day after Thanksgiving, EST
            (date(2025, 12, 24), "2025-12-24 18:00"),  # Christmas Eve, a Wednesday
            (date(2025, 7, 3), "2025-07-03 17:00"),  # July 3, a Thursday, EDT
            (date(2026, 11, 27), "2026-11-27 18:00"),
            (date(2026, 12, 24), "2026-12-24 18:00"),
        ],
    )
    def test_early_closes_end_at_1300(self, nyse: ExchangeCalendar, day: date, closes: str) -> None:
        assert nyse.is_early_close(day)
        assert nyse.session_close_ns(day) == utc_ns(closes)

    @pytest.mark.parametrize(
        "day",
        [
            date(2026, 7, 2),  # July 3 is the observed holiday: no early close the day before
            date(2025, 11, 26),  # the day before Thanksgiving is a full day
            date(2025, 12, 23),
            date(2027, 12, 24),  # observed Christmas: closed, not early
            date(2025, 11, 21),  # a Friday in November that does not follow Thanksgiving
        ],
    )
    def test_days_that_are_not_early_closes(self, nyse: ExchangeCalendar, day: date) -> None:
        assert not nyse.is_early_close(day)

    def test_is_open_from_the_open_inclusive_to_the_close_exclusive(
        self, nyse: ExchangeCalendar
    ) -> None:
        opens = utc_ns("2026-01-06 14:30")
        closes = utc_ns("2026-01-06 21:00")

        assert not nyse.is_open(opens - 1)
        assert nyse.is_open(opens)
        assert nyse.is_open(closes - 1)
        assert not nyse.is_open(closes)

    def test_the_market_is_shut_after_an_early_close_on_holidays_and_weekends(
        self, nyse: ExchangeCalendar
    ) -> None:
        assert nyse.is_open(utc_ns("2025-11-28 17:59"))
        assert not nyse.is_open(utc_ns("2025-11-28 18:00"))
        assert not nyse.is_open(utc_ns("2025-11-27 16:00"))  # Thanksgiving, 11:00 ET
        assert not nyse.is_open(utc_ns("2025-11-29 16:00"))  # Saturday

    def test_there_is_no_session_on_a_holiday(self, nyse: ExchangeCalendar) -> None:
        with pytest.raises(ValueError, match="no session on 2025-11-27"):
            nyse.session_open_ns(date(2025, 11, 27))

    def test_the_trading_date_is_the_new_york_date(self, nyse: ExchangeCalendar) -> None:
        assert nyse.trading_date(utc_ns("2025-11-29 03:00")) == date(2025, 11, 28)
        assert nyse.trading_date(utc_ns("2026-01-01 04:59")) == date(2025, 12, 31)
        assert nyse.trading_date(utc_ns("2026-01-01 05:00")) == date(2026, 1, 1)

    @pytest.mark.parametrize(
        ("now", "expected"),
        [
            ("2026-01-06 12:00", "2026-01-06 14:30"),  # before the open: today's
            ("2026-01-06 14:30", "2026-01-06 14:30"),  # at the open: this one
            ("2026-01-06 15:00", "2026-01-07 14:30"),  # during the session: tomorrow's
            ("2026-01-09 22:00", "2026-01-12 14:30"),  # Friday evening: Monday's
            ("2025-11-26 22:00", "2025-11-28 14:30"),  # over Thanksgiving
            ("2026-03-06 22:00", "2026-03-09 13:30"),  # over the DST change
        ],
    )
    def test_the_next_open(self, nyse: ExchangeCalendar, now: str, expected: str) -> None:
        assert nyse.next_open_ns(utc_ns(now)) == utc_ns(expected)


class TestSettlement:
    @pytest.mark.parametrize(
        ("trade", "settles"),
        [
            (date(2025, 11, 25), date(2025, 11, 26)),
            (date(2025, 11, 26), date(2025, 11, 28)),  # over Thanksgiving
            (date(2025, 11, 28), date(2025, 12, 1)),  # over the weekend
            (date(2025, 10, 10), date(2025, 10, 14)),  # Columbus Day is not a settlement day
            (date(2025, 10, 13), date(2025, 10, 14)),  # trades on Columbus Day settle Tuesday
            (date(2025, 11, 10), date(2025, 11, 12)),  # Veterans Day, Tuesday 2025-11-11
            (date(2026, 7, 2), date(2026, 7, 6)),  # observed Independence Day
        ],
    )
    def test_t_plus_one(self, nyse: ExchangeCalendar, trade: date, settles: date) -> None:
        assert nyse.settlement_date(trade) == settles

    def test_columbus_day_is_a_business_day_but_not_a_settlement_day(
        self, nyse: ExchangeCalendar
    ) -> None:
        assert nyse.is_business_day(date(2025, 10, 13))
        assert not nyse.is_settlement_day(date(2025, 10, 13))

    def test_the_old_t_plus_two_cycle_can_still_be_asked_for(self, nyse: ExchangeCalendar) -> None:
        assert nyse.settlement_date(date(2025, 7, 3), cycle=2) == date(2025, 7, 8)
