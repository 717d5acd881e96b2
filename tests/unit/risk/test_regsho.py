"""Reg SHO: Rule 204 close-out deadlines over the calendar, and the short-sale checks.

Deadline instants are written in UTC by hand: 09:30 New York is 14:30Z in winter (EST)
and 13:30Z in summer (EDT).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.support.risk import account, instrument, intent, long_position, short_sale, snapshot
from tradeguard.core.calendar import ExchangeCalendar
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.orders import Side
from tradeguard.risk.domain import AccountType, RejectCode
from tradeguard.risk.pipeline import evaluate
from tradeguard.risk.regsho import (
    FailOrigin,
    close_out_date,
    close_out_deadline_ns,
    in_penalty_box,
)

SHORT_100 = intent(side=Side.SELL_SHORT, quantity=100)


def utc_ns(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return int(moment.timestamp()) * NS_PER_SECOND


@pytest.fixture(scope="module")
def nyse() -> ExchangeCalendar:
    return ExchangeCalendar()


@pytest.mark.spec("REG-3")
class TestCloseOutDeadlines:
    @pytest.mark.parametrize(
        ("trade", "origin", "deadline"),
        [
            # Short sale, 204(a): open of the settlement day after the settlement date.
            # T 11-25 -> SD 11-26 -> Friday 11-28 (an early close, but the open is 09:30).
            (date(2025, 11, 25), FailOrigin.SHORT_SALE, "2025-11-28 14:30"),
            # T 11-26 -> SD 11-28 (over Thanksgiving) -> Monday 12-01.
            (date(2025, 11, 26), FailOrigin.SHORT_SALE, "2025-12-01 14:30"),
            # T 10-09 -> SD Friday 10-10 -> Columbus Day is no settlement day -> Tuesday.
            (date(2025, 10, 9), FailOrigin.SHORT_SALE, "2025-10-14 13:30"),
            # T 2026-07-01 -> SD 07-02 -> July 3 observed holiday, weekend -> Monday 07-06.
            (date(2026, 7, 1), FailOrigin.SHORT_SALE, "2026-07-06 13:30"),
            # Long sale, 204(a)(1): the third consecutive settlement day after the SD.
            # T 11-26 -> SD 11-28 -> 12-01, 12-02, 12-03.
            (date(2025, 11, 26), FailOrigin.LONG_SALE, "2025-12-03 14:30"),
            # T Friday 10-10 -> SD Tuesday 10-14 (Columbus Day) -> 10-15, 10-16, 10-17.
            (date(2025, 10, 10), FailOrigin.LONG_SALE, "2025-10-17 13:30"),
            # T 12-30 -> SD 12-31 -> Jan 1 holiday -> Jan 2, 5, 6 (over the new year).
            (date(2025, 12, 30), FailOrigin.LONG_SALE, "2026-01-06 14:30"),
            # Bona-fide market making, 204(a)(2): same period as a long sale.
            (date(2025, 11, 26), FailOrigin.MARKET_MAKING, "2025-12-03 14:30"),
        ],
    )
    def test_the_deadline_is_the_open_of_the_close_out_settlement_day(
        self, nyse: ExchangeCalendar, trade: date, origin: FailOrigin, deadline: str
    ) -> None:
        assert close_out_deadline_ns(nyse, trade_date=trade, origin=origin) == utc_ns(deadline)

    def test_a_t_plus_two_trade_settles_later_and_so_closes_out_later(
        self, nyse: ExchangeCalendar
    ) -> None:
        # Before May 28, 2024 trades settled T+2: T 11-24 -> SD 11-26 -> close out 11-28.
        deadline = close_out_deadline_ns(
            nyse, trade_date=date(2025, 11, 24), origin=FailOrigin.SHORT_SALE, cycle=2
        )

        assert deadline == utc_ns("2025-11-28 14:30")

    def test_the_close_out_date_counts_settlement_days_from_the_settlement_date(
        self, nyse: ExchangeCalendar
    ) -> None:
        assert close_out_date(nyse, date(2025, 11, 7), FailOrigin.LONG_SALE) == date(2025, 11, 13)


@pytest.mark.spec("REG-3")
class TestPenaltyBox:
    deadline = utc_ns("2025-12-01 14:30")

    def test_before_the_deadline_nothing_is_restricted(self) -> None:
        assert not in_penalty_box(
            now_ns=self.deadline,
            deadline_ns=self.deadline,
            closed_out_ns=None,
            close_out_settled=False,
        )

    def test_a_fail_still_open_after_the_deadline_is_in_the_penalty_box(self) -> None:
        assert in_penalty_box(
            now_ns=self.deadline + 1,
            deadline_ns=self.deadline,
            closed_out_ns=None,
            close_out_settled=False,
        )

    def test_a_close_out_at_the_open_itself_is_in_time(self) -> None:
        assert not in_penalty_box(
            now_ns=self.deadline + 10**12,
            deadline_ns=self.deadline,
            closed_out_ns=self.deadline,
            close_out_settled=False,
        )

    def test_a_late_close_out_keeps_the_restriction_until_it_settles(self) -> None:
        late = self.deadline + 1

        assert in_penalty_box(
            now_ns=late + 1, deadline_ns=self.deadline, closed_out_ns=late, close_out_settled=False
        )
        assert not in_penalty_box(
            now_ns=late + 1, deadline_ns=self.deadline, closed_out_ns=late, close_out_settled=True
        )


@pytest.mark.spec("REG-3")
class TestShortSaleChecks:
    def test_a_locate_for_the_full_quantity_is_used(self) -> None:
        decision = evaluate(SHORT_100, snapshot(short_sale=short_sale(locate_available=100)))

        assert decision.accepted
        assert (decision.locate_use, decision.preborrow) == (100, False)

    def test_a_locate_one_share_short_is_refused(self) -> None:
        decision = evaluate(SHORT_100, snapshot(short_sale=short_sale(locate_available=99)))

        assert decision.code is RejectCode.SHORT_NO_LOCATE
        assert decision.detail == "short 100 with a locate for 99"

    def test_an_easy_to_borrow_security_needs_no_individual_locate(self) -> None:
        decision = evaluate(SHORT_100, snapshot(instrument=instrument(easy_to_borrow=True)))

        assert decision.accepted
        assert decision.locate_use == 0

    def test_a_threshold_security_needs_a_pre_borrow_for_the_full_quantity(self) -> None:
        threshold = instrument(threshold_security=True)

        refused = evaluate(
            SHORT_100,
            snapshot(instrument=threshold, short_sale=short_sale(preborrow_available=99)),
        )
        accepted = evaluate(
            SHORT_100,
            snapshot(instrument=threshold, short_sale=short_sale(preborrow_available=100)),
        )

        assert refused.code is RejectCode.SHORT_PREBORROW_REQUIRED
        assert accepted.accepted
        assert (accepted.locate_use, accepted.preborrow) == (100, True)

    def test_a_locate_or_the_easy_to_borrow_list_does_not_replace_a_threshold_pre_borrow(
        self,
    ) -> None:
        decision = evaluate(
            SHORT_100,
            snapshot(
                instrument=instrument(threshold_security=True, easy_to_borrow=True),
                short_sale=short_sale(locate_available=1000),
            ),
        )

        assert decision.code is RejectCode.SHORT_PREBORROW_REQUIRED

    def test_in_the_penalty_box_a_short_sale_needs_a_pre_borrow(self) -> None:
        boxed = snapshot(
            instrument=instrument(easy_to_borrow=True),
            short_sale=short_sale(penalty_box=True, locate_available=1000, preborrow_available=99),
        )

        assert evaluate(SHORT_100, boxed).code is RejectCode.SHORT_PENALTY_BOX

    def test_in_the_penalty_box_a_pre_borrowed_short_sale_is_accepted(self) -> None:
        boxed = snapshot(short_sale=short_sale(penalty_box=True, preborrow_available=100))

        decision = evaluate(SHORT_100, boxed)

        assert decision.accepted
        assert (decision.locate_use, decision.preborrow) == (100, True)

    def test_a_cash_account_cannot_sell_short(self) -> None:
        decision = evaluate(
            SHORT_100,
            snapshot(
                account=account(account_type=AccountType.CASH),
                short_sale=short_sale(locate_available=100),
            ),
        )

        assert decision.code is RejectCode.SHORT_CASH_ACCOUNT


@pytest.mark.spec("REG-3")
class TestSaleMarking:
    def test_a_long_sale_of_every_unreserved_share_is_accepted(self) -> None:
        decision = evaluate(
            intent(side=Side.SELL, quantity=70),
            snapshot(position=long_position(100, held_for_sale=30)),
        )

        assert decision.accepted
        assert decision.hold_shares == 70
        assert decision.locate_use == 0

    def test_a_long_sale_of_one_share_more_must_be_marked_short(self) -> None:
        decision = evaluate(
            intent(side=Side.SELL, quantity=71),
            snapshot(position=long_position(100, held_for_sale=30)),
        )

        assert decision.code is RejectCode.ORDER_SELL_EXCEEDS_POSITION
        assert decision.detail == "selling 71 with 70 available: mark the order sell short"

    def test_a_long_sale_with_no_position_must_be_marked_short(self) -> None:
        decision = evaluate(intent(side=Side.SELL, quantity=1), snapshot())

        assert decision.code is RejectCode.ORDER_SELL_EXCEEDS_POSITION
