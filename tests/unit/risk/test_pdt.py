"""FINRA Rule 4210(f)(8)(B) pattern day trading: helpers and scenarios from the rule text."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tests.support.risk import (
    account,
    day_trades,
    intent,
    limits,
    long_position,
    position,
    short_position,
    snapshot,
)
from tradeguard.core.calendar import ExchangeCalendar
from tradeguard.core.orders import Side
from tradeguard.risk.domain import AccountType, DayTradeState, RejectCode
from tradeguard.risk.pdt import (
    TradeRecord,
    is_pattern_day_trader,
    tally_day_trades,
    would_day_trade,
)
from tradeguard.risk.pipeline import evaluate

# Equity $20,000 (cash 10,000 + 100 shares at $100): under the $25,000 minimum.
UNDER_MINIMUM = account(cash_settled=Decimal("10000"), long_market_value=Decimal("10000"))
AT_MINIMUM = account(cash_settled=Decimal("15000"), long_market_value=Decimal("10000"))
BOUGHT_TODAY = long_position(100, opened_today_long=100)
HELD_OVERNIGHT = long_position(100)
SELL_ALL = intent(side=Side.SELL)


@pytest.mark.spec("PRE-4")
class TestWouldDayTrade:
    def test_selling_shares_bought_today_is_a_day_trade(self) -> None:
        assert would_day_trade(Side.SELL, BOUGHT_TODAY)

    def test_selling_shares_held_overnight_is_not(self) -> None:
        assert not would_day_trade(Side.SELL, HELD_OVERNIGHT)

    def test_a_sale_counts_when_any_share_of_the_position_was_bought_today(self) -> None:
        assert would_day_trade(Side.SELL, long_position(200, opened_today_long=1))

    def test_covering_a_short_sold_today_is_a_day_trade(self) -> None:
        assert would_day_trade(Side.BUY, short_position(100, opened_today_short=100))

    def test_buying_more_of_a_long_bought_today_is_not(self) -> None:
        assert not would_day_trade(Side.BUY, BOUGHT_TODAY)

    def test_a_short_sale_against_a_long_bought_today_closes_it_first(self) -> None:
        assert would_day_trade(Side.SELL_SHORT, BOUGHT_TODAY)

    def test_nothing_is_a_day_trade_when_flat(self) -> None:
        assert not would_day_trade(Side.SELL_SHORT, position())
        assert not would_day_trade(Side.BUY, position())


@pytest.mark.spec("PRE-4")
class TestIsPatternDayTrader:
    @pytest.mark.parametrize(
        ("day_trades", "total", "expected"),
        [
            (4, 10, True),
            (3, 10, False),  # fewer than four
            (4, 66, True),  # 6.06% is more than 6%
            (4, 67, False),  # 5.97% is not
            (6, 100, False),  # exactly 6% is not "more than"
            (7, 100, True),
            (4, 0, False),
        ],
    )
    def test_four_day_trades_that_are_more_than_six_percent_of_all_trades(
        self, day_trades: int, total: int, expected: bool
    ) -> None:
        assert is_pattern_day_trader(day_trades, total, limits()) is expected


@pytest.mark.spec("PRE-4")
class TestTallyOverThanksgivingWeek:
    calendar = ExchangeCalendar()
    records = (
        TradeRecord(date(2025, 11, 20), day_trade=True),  # six business days back: out
        TradeRecord(date(2025, 11, 21), day_trade=True),
        TradeRecord(date(2025, 11, 21), day_trade=False),
        TradeRecord(date(2025, 11, 24), day_trade=True),
        TradeRecord(date(2025, 11, 26), day_trade=True),
        TradeRecord(date(2025, 11, 28), day_trade=False),
        TradeRecord(date(2025, 12, 1), day_trade=True),  # after the window
    )

    def test_the_window_skips_thanksgiving_and_reaches_back_to_the_friday_before(self) -> None:
        window = self.calendar.business_days_ending(date(2025, 11, 28), 5)

        state = tally_day_trades(self.records, window, flagged=False)

        assert state == DayTradeState(day_trades=3, total_trades=5, pdt_flagged=False)

    def test_a_fourth_day_trade_on_the_friday_after_thanksgiving_is_refused_under_25000(
        self,
    ) -> None:
        window = self.calendar.business_days_ending(date(2025, 11, 28), 5)
        counts = tally_day_trades(self.records, window, flagged=False)

        decision = evaluate(
            SELL_ALL,
            snapshot(account=UNDER_MINIMUM, position=BOUGHT_TODAY, day_trades=counts),
        )

        assert decision.code is RejectCode.PDT_DAY_TRADE_LIMIT
        assert decision.detail == (
            "this would be day trade 4 in 5 business days with equity below 25000"
        )

    def test_a_week_later_the_old_day_trades_have_left_the_window(self) -> None:
        window = self.calendar.business_days_ending(date(2025, 12, 3), 5)
        counts = tally_day_trades(self.records, window, flagged=False)

        # Nov 26, 28, Dec 1, 2, 3: the day trades of Nov 21 and 24 no longer count.
        assert counts == DayTradeState(day_trades=2, total_trades=3, pdt_flagged=False)
        assert evaluate(
            SELL_ALL, snapshot(account=UNDER_MINIMUM, position=BOUGHT_TODAY, day_trades=counts)
        ).accepted


@pytest.mark.spec("PRE-4")
class TestPatternDayTraderCheck:
    three_of_ten = day_trades(day_trades=3, total_trades=10)

    def test_the_day_trade_that_would_make_a_pdt_is_refused_below_the_minimum(self) -> None:
        decision = evaluate(
            SELL_ALL,
            snapshot(account=UNDER_MINIMUM, position=BOUGHT_TODAY, day_trades=self.three_of_ten),
        )

        assert decision.code is RejectCode.PDT_DAY_TRADE_LIMIT

    def test_the_same_day_trade_is_allowed_with_exactly_the_minimum_equity(self) -> None:
        decision = evaluate(
            SELL_ALL,
            snapshot(account=AT_MINIMUM, position=BOUGHT_TODAY, day_trades=self.three_of_ten),
        )

        assert decision.accepted
        assert decision.day_trade

    def test_a_cent_under_the_minimum_is_under_it(self) -> None:
        short_a_cent = account(cash_settled=Decimal("14999.99"), long_market_value=Decimal("10000"))

        decision = evaluate(
            SELL_ALL,
            snapshot(account=short_a_cent, position=BOUGHT_TODAY, day_trades=self.three_of_ten),
        )

        assert decision.code is RejectCode.PDT_DAY_TRADE_LIMIT

    def test_the_third_day_trade_is_allowed(self) -> None:
        decision = evaluate(
            SELL_ALL,
            snapshot(
                account=UNDER_MINIMUM,
                position=BOUGHT_TODAY,
                day_trades=day_trades(day_trades=2, total_trades=10),
            ),
        )

        assert decision.accepted

    def test_a_fourth_day_trade_within_six_percent_of_all_trades_does_not_make_a_pdt(
        self,
    ) -> None:
        # 4 day trades of 101 trades is 3.96%: not a pattern day trader.
        decision = evaluate(
            SELL_ALL,
            snapshot(
                account=UNDER_MINIMUM,
                position=BOUGHT_TODAY,
                day_trades=day_trades(day_trades=3, total_trades=100),
            ),
        )

        assert decision.accepted

    def test_a_sale_of_shares_held_overnight_is_not_a_day_trade_and_passes(self) -> None:
        decision = evaluate(
            SELL_ALL,
            snapshot(account=UNDER_MINIMUM, position=HELD_OVERNIGHT, day_trades=self.three_of_ten),
        )

        assert decision.accepted
        assert not decision.day_trade

    def test_a_flagged_pdt_under_the_minimum_may_not_open(self) -> None:
        decision = evaluate(
            intent(quantity=10),
            snapshot(account=UNDER_MINIMUM, day_trades=day_trades(pdt_flagged=True)),
        )

        assert decision.code is RejectCode.PDT_EQUITY_BELOW_MINIMUM

    def test_an_account_the_counts_make_a_pdt_is_treated_as_flagged(self) -> None:
        decision = evaluate(
            intent(quantity=10),
            snapshot(account=UNDER_MINIMUM, day_trades=day_trades(day_trades=4, total_trades=10)),
        )

        assert decision.code is RejectCode.PDT_EQUITY_BELOW_MINIMUM

    def test_a_flagged_pdt_under_the_minimum_may_close_overnight_positions(self) -> None:
        decision = evaluate(
            SELL_ALL,
            snapshot(
                account=UNDER_MINIMUM,
                position=HELD_OVERNIGHT,
                day_trades=day_trades(pdt_flagged=True),
            ),
        )

        assert decision.accepted

    def test_a_flagged_pdt_under_the_minimum_may_not_day_trade_even_to_close(self) -> None:
        decision = evaluate(
            SELL_ALL,
            snapshot(
                account=UNDER_MINIMUM,
                position=BOUGHT_TODAY,
                day_trades=day_trades(pdt_flagged=True),
            ),
        )

        assert decision.code is RejectCode.PDT_EQUITY_BELOW_MINIMUM

    def test_a_flagged_pdt_with_the_minimum_equity_day_trades_freely(self) -> None:
        decision = evaluate(
            SELL_ALL,
            snapshot(
                account=AT_MINIMUM,
                position=BOUGHT_TODAY,
                day_trades=day_trades(day_trades=9, total_trades=10, pdt_flagged=True),
            ),
        )

        assert decision.accepted

    def test_cash_accounts_are_not_subject_to_the_rule(self) -> None:
        cash = account(
            account_type=AccountType.CASH,
            cash_settled=Decimal("10000"),
            long_market_value=Decimal("10000"),
        )

        decision = evaluate(
            SELL_ALL,
            snapshot(
                account=cash,
                position=BOUGHT_TODAY,
                day_trades=day_trades(day_trades=9, total_trades=10, pdt_flagged=True),
            ),
        )

        assert decision.accepted
        assert decision.day_trade

    @pytest.mark.parametrize(
        "looser", [{"pdt_day_trades": 5}, {"pdt_min_equity": Decimal("20000")}]
    )
    def test_the_thresholds_come_from_the_limits(self, looser: dict[str, object]) -> None:
        decision = evaluate(
            SELL_ALL,
            snapshot(
                account=UNDER_MINIMUM,
                position=BOUGHT_TODAY,
                day_trades=self.three_of_ten,
                limits=limits(**looser),
            ),
        )

        assert decision.accepted
