"""NYSE exchange calendar: business days, regular session hours, settlement days (T+1).

Business days are weekdays that are not NYSE holidays. The holidays come from the `holidays`
package's NYSE financial calendar (which follows the NYSE Group's published holiday calendar
and NYSE Rule 7.2, including unscheduled closings such as national days of mourning), not
from a list kept here.

The regular session is 09:30-16:00 America/New_York, computed through zoneinfo so every
instant is right on both sides of a daylight-saving change. The NYSE closes early, at 13:00,
on three days by its published rule ("Each market will close early at 1:00 p.m. on ...",
NYSE Group holiday and early-closings calendar): the day after Thanksgiving, and July 3 and
December 24 when they are business days (when July 3 is itself the observed Independence
Day, or December 24 the observed Christmas, the market is simply closed, and there is no
early close on another day instead).

Settlement days are business days on which the banks settle too: FINRA's annual
trade-date/settlement-date schedules (e.g. Notice to Members 99-83) treat Columbus Day and
Veterans Day, when the exchanges trade but the Federal Reserve and most banks are closed, as
not a settlement date. Securities settle on the first settlement day after the trade date
(T+1) since May 28, 2024 (SEC Rule 15c6-1(a) as amended, Release 34-96930).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays as holiday_calendars

from tradeguard.core.clock import NS_PER_SECOND

NYSE_TIMEZONE = "America/New_York"
REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)
SETTLEMENT_CYCLE = 1  # T+1, SEC Rule 15c6-1(a) since May 28, 2024

_ONE_DAY = timedelta(days=1)
# The longest NYSE closure on record ran from Tuesday to Friday (September 11-14, 2001);
# a search that finds no business day within a month means a misconfigured holiday list.
_MAX_CLOSED_RUN = 31
_CACHE_LIMIT = 4096


class ExchangeCalendar:
    """The NYSE trading and settlement calendar; holiday lists can be injected for tests."""

    __slots__ = ("_bank_holidays", "_business", "_holidays", "_sessions", "_tz")

    def __init__(
        self,
        *,
        holidays: Container[date] | None = None,
        bank_holidays: Container[date] | None = None,
        timezone: str = NYSE_TIMEZONE,
    ) -> None:
        self._holidays: Container[date] = (
            holidays if holidays is not None else holiday_calendars.financial_holidays("NYSE")
        )
        self._bank_holidays: Container[date] = (
            bank_holidays
            if bank_holidays is not None
            else holiday_calendars.financial_holidays("XFED")
        )
        self._tz = ZoneInfo(timezone)
        self._business: dict[date, bool] = {}
        self._sessions: dict[date, tuple[int, int]] = {}

    # -- days ----------------------------------------------------------------------------

    def trading_date(self, ns: int) -> date:
        """The exchange-local calendar date of an instant (epoch nanoseconds)."""
        return datetime.fromtimestamp(ns // NS_PER_SECOND, tz=self._tz).date()

    def session_date(self, ns: int) -> date:
        """The trading date activity at `ns` books to: that date on a business day, else the
        next business day (a trade in an always-open demo market on a Saturday belongs to
        Monday, for settlement and for the five-business-day PDT window alike)."""
        day = self.trading_date(ns)
        return day if self.is_business_day(day) else self.next_business_day(day)

    def is_business_day(self, d: date) -> bool:
        """A weekday on which the NYSE is not closed for a holiday."""
        known = self._business.get(d)
        if known is None:
            known = d.weekday() < 5 and d not in self._holidays
            if len(self._business) >= _CACHE_LIMIT:
                self._business.clear()
            self._business[d] = known
        return known

    def next_business_day(self, d: date, n: int = 1) -> date:
        """The n-th business day after d."""
        return self._step(d, n, _ONE_DAY, self.is_business_day)

    def previous_business_day(self, d: date, n: int = 1) -> date:
        """The n-th business day before d."""
        return self._step(d, n, -_ONE_DAY, self.is_business_day)

    def business_days_ending(self, d: date, count: int) -> tuple[date, ...]:
        """The `count` business days ending at d (or the one before, if d is not), oldest first."""
        if count < 1:
            raise ValueError("a window holds at least one business day")
        last = d if self.is_business_day(d) else self.previous_business_day(d)
        days = [last]
        while len(days) < count:
            days.append(self.previous_business_day(days[-1]))
        days.reverse()
        return tuple(days)

    # -- sessions ------------------------------------------------------------------------

    def is_early_close(self, d: date) -> bool:
        """Whether the regular session on d ends at 13:00 (NYSE early-closing rule)."""
        if not self.is_business_day(d):
            return False
        if d.month == 11:
            # Thanksgiving is the fourth Thursday (22nd-28th), so the day after is the
            # Friday that falls on the 23rd-29th.
            return d.weekday() == 4 and 23 <= d.day <= 29
        return (d.month, d.day) in {(7, 3), (12, 24)}

    def session_open_ns(self, d: date) -> int:
        """The start of the regular session on business day d (epoch nanoseconds)."""
        return self._session(d)[0]

    def session_close_ns(self, d: date) -> int:
        """The end of the regular session on business day d (epoch nanoseconds)."""
        return self._session(d)[1]

    def is_open(self, ns: int) -> bool:
        """Whether the regular session runs at this instant (open inclusive, close exclusive)."""
        d = self.trading_date(ns)
        if not self.is_business_day(d):
            return False
        opens, closes = self._session(d)
        return opens <= ns < closes

    def next_open_ns(self, ns: int) -> int:
        """The first regular-session open at or after this instant."""
        d = self.trading_date(ns)
        if self.is_business_day(d) and ns <= self.session_open_ns(d):
            return self.session_open_ns(d)
        return self.session_open_ns(self.next_business_day(d))

    # -- settlement ----------------------------------------------------------------------

    def is_settlement_day(self, d: date) -> bool:
        """A business day on which the banks are open too (not Columbus Day or Veterans Day)."""
        return self.is_business_day(d) and d not in self._bank_holidays

    def next_settlement_day(self, d: date, n: int = 1) -> date:
        """The n-th settlement day after d."""
        return self._step(d, n, _ONE_DAY, self.is_settlement_day)

    def settlement_date(self, trade_date: date, cycle: int = SETTLEMENT_CYCLE) -> date:
        """Regular-way settlement date of a trade: `cycle` settlement days after the trade date."""
        return self.next_settlement_day(trade_date, cycle)

    # -- internals -----------------------------------------------------------------------

    def _session(self, d: date) -> tuple[int, int]:
        bounds = self._sessions.get(d)
        if bounds is None:
            if not self.is_business_day(d):
                raise ValueError(f"the exchange has no session on {d.isoformat()}")
            close = EARLY_CLOSE if self.is_early_close(d) else REGULAR_CLOSE
            bounds = (self._local_ns(d, REGULAR_OPEN), self._local_ns(d, close))
            if len(self._sessions) >= _CACHE_LIMIT:
                self._sessions.clear()
            self._sessions[d] = bounds
        return bounds

    def _local_ns(self, d: date, at: time) -> int:
        # zoneinfo resolves the UTC offset of this wall-clock time on this date, so the
        # session lands on the right instant on both sides of a daylight-saving change.
        return int(datetime.combine(d, at, tzinfo=self._tz).timestamp()) * NS_PER_SECOND

    @staticmethod
    def _step(d: date, n: int, step: timedelta, accept: Callable[[date], bool]) -> date:
        if n < 1:
            raise ValueError("n must be at least 1")
        current = d
        for _ in range(n):
            for _ in range(_MAX_CLOSED_RUN):
                current += step
                if accept(current):
                    break
            else:
                raise ValueError(f"no business day within {_MAX_CLOSED_RUN} days of {current}")
        return current
