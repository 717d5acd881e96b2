"""Each pre-trade check at its boundary and just past it, through the real pipeline."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from tests.support.risk import (
    account,
    instrument,
    intent,
    long_position,
    market,
    market_order,
    own_orders,
    recent,
    short_position,
    short_sale,
    snapshot,
)
from tests.support.risk import limits as risk_limits
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import InvalidInput
from tradeguard.core.orders import OrderType, Side, StpMode, TimeInForce
from tradeguard.risk.checks import (
    build_context,
    check_instrument_tradable,
    check_price_collar,
    check_price_tick,
    check_quantity_lot,
    check_quantity_max,
    check_quantity_min,
    check_reference_price,
    check_restricted_list,
    check_short_locate,
    check_short_preborrow,
    check_symbol_halt,
)
from tradeguard.risk.domain import (
    AccountStatus,
    AccountType,
    OrderIntent,
    RejectCode,
    RiskDecision,
    RiskSnapshot,
    TradingState,
)
from tradeguard.risk.pipeline import evaluate

MS = 1_000_000


def decide(order: OrderIntent | None = None, **changes: Any) -> RiskDecision:
    return evaluate(order or intent(), snapshot(**changes))


def rejected(decision: RiskDecision, code: RejectCode) -> bool:
    return not decision.accepted and decision.code is code


@pytest.mark.spec("PRE-1")
class TestAccountStatus:
    def test_an_active_account_trades(self) -> None:
        assert decide().accepted

    @pytest.mark.parametrize(
        "status", [AccountStatus.PENDING, AccountStatus.SUSPENDED, AccountStatus.CLOSED]
    )
    def test_a_pending_suspended_or_closed_account_places_nothing(
        self, status: AccountStatus
    ) -> None:
        decision = decide(
            intent(side=Side.SELL), account=account(status=status), position=long_position(100)
        )

        assert rejected(decision, RejectCode.ACCOUNT_NOT_ACTIVE)
        assert decision.check == "account_status"
        assert decision.detail == f"the account is {status.value}"

    def test_a_closing_only_account_may_sell_what_it_holds(self) -> None:
        decision = decide(
            intent(side=Side.SELL, quantity=100),
            account=account(status=AccountStatus.CLOSING_ONLY),
            position=long_position(100),
        )

        assert decision.accepted
        assert decision.reducing

    def test_a_closing_only_account_may_not_open(self) -> None:
        decision = decide(account=account(status=AccountStatus.CLOSING_ONLY))

        assert rejected(decision, RejectCode.ACCOUNT_CLOSING_ONLY)

    def test_a_closing_only_account_may_not_sell_one_share_more_than_it_holds(self) -> None:
        decision = decide(
            intent(side=Side.SELL, quantity=101),
            account=account(status=AccountStatus.CLOSING_ONLY),
            position=long_position(100),
        )

        assert rejected(decision, RejectCode.ACCOUNT_CLOSING_ONLY)


@pytest.mark.spec("PRE-1")
class TestTradingState:
    def test_halted_denies_even_a_reducing_order(self) -> None:
        decision = decide(
            intent(side=Side.SELL),
            account=account(trading_state=TradingState.HALTED),
            position=long_position(100),
        )

        assert rejected(decision, RejectCode.ACCOUNT_HALTED)

    def test_reducing_admits_a_sale_of_every_share_not_already_being_sold(self) -> None:
        reducing = account(trading_state=TradingState.REDUCING)
        held = long_position(100, held_for_sale=40)

        assert decide(intent(side=Side.SELL, quantity=60), account=reducing, position=held).accepted
        assert rejected(
            decide(intent(side=Side.SELL, quantity=61), account=reducing, position=held),
            RejectCode.ACCOUNT_REDUCING_ONLY,
        )

    def test_reducing_admits_a_cover_of_the_short_not_already_being_covered(self) -> None:
        reducing = account(trading_state=TradingState.REDUCING)
        short = short_position(100, open_buy_quantity=50)

        assert decide(intent(quantity=50), account=reducing, position=short).accepted
        assert rejected(
            decide(intent(quantity=51), account=reducing, position=short),
            RejectCode.ACCOUNT_REDUCING_ONLY,
        )

    def test_reducing_denies_a_sale_marked_short_even_against_a_long_position(self) -> None:
        decision = decide(
            intent(side=Side.SELL_SHORT, quantity=10),
            account=account(trading_state=TradingState.REDUCING),
            position=long_position(100),
            short_sale=short_sale(locate_available=10),
        )

        assert rejected(decision, RejectCode.ACCOUNT_REDUCING_ONLY)

    def test_reducing_denies_a_buy_when_flat(self) -> None:
        decision = decide(account=account(trading_state=TradingState.REDUCING))

        assert rejected(decision, RejectCode.ACCOUNT_REDUCING_ONLY)


@pytest.mark.spec("PRE-4")
class TestHaltsAndSession:
    def test_a_market_wide_halt_stops_every_new_order(self) -> None:
        decision = decide(
            intent(side=Side.SELL), market=market(market_halted=True), position=long_position(100)
        )

        assert rejected(decision, RejectCode.MARKET_HALTED)

    def test_a_symbol_halt_stops_orders_in_that_symbol(self) -> None:
        assert rejected(decide(instrument=instrument(halted=True)), RejectCode.SYMBOL_HALTED)

    def test_a_market_order_is_refused_outside_the_session(self) -> None:
        decision = decide(market_order(), market=market(session_open=False))

        assert rejected(decision, RejectCode.MARKET_CLOSED)

    def test_an_ioc_limit_order_is_refused_outside_the_session(self) -> None:
        decision = decide(intent(time_in_force=TimeInForce.IOC), market=market(session_open=False))

        assert rejected(decision, RejectCode.MARKET_CLOSED)

    @pytest.mark.parametrize("tif", [TimeInForce.DAY, TimeInForce.GTC])
    def test_day_and_gtc_limit_orders_are_accepted_to_rest_outside_the_session(
        self, tif: TimeInForce
    ) -> None:
        assert decide(intent(time_in_force=tif), market=market(session_open=False)).accepted

    def test_an_always_open_market_takes_market_orders_at_any_hour(self) -> None:
        decision = decide(market_order(), market=market(session_open=False, enforce_session=False))

        assert decision.accepted


class TestInstrumentKnown:
    def test_a_symbol_without_an_instrument_is_unknown(self) -> None:
        decision = decide(instrument=None)

        assert rejected(decision, RejectCode.INSTRUMENT_UNKNOWN)
        assert decision.check == "instrument_known"

    def test_a_snapshot_built_for_another_symbol_is_treated_as_unknown(self) -> None:
        assert rejected(
            decide(instrument=instrument(symbol="OTHER")), RejectCode.INSTRUMENT_UNKNOWN
        )

    @pytest.mark.parametrize(
        "check",
        [
            check_symbol_halt,
            check_instrument_tradable,
            check_restricted_list,
            check_reference_price,
            check_price_tick,
            check_quantity_lot,
            check_quantity_min,
            check_quantity_max,
            check_short_preborrow,
            check_short_locate,
        ],
    )
    def test_a_check_called_on_its_own_without_an_instrument_denies_rather_than_passes(
        self, check: Any
    ) -> None:
        state = snapshot(instrument=None)
        order = intent(side=Side.SELL_SHORT)

        reject = check(order, state, build_context(order, state))

        assert reject is not None
        assert reject.code is RejectCode.INSTRUMENT_UNKNOWN

    def test_the_collar_check_on_its_own_without_a_reference_denies(self) -> None:
        state = snapshot(instrument=instrument(reference_price=None))

        reject = check_price_collar(intent(), state, build_context(intent(), state))

        assert reject is not None
        assert reject.code is RejectCode.INSTRUMENT_NO_REFERENCE_PRICE


@pytest.mark.spec("PRE-4")
class TestInstrumentState:
    def test_an_instrument_not_open_for_trading_takes_no_orders(self) -> None:
        assert rejected(
            decide(instrument=instrument(tradable=False)), RejectCode.INSTRUMENT_NOT_TRADABLE
        )

    def test_a_restricted_instrument_takes_no_opening_order(self) -> None:
        decision = decide(instrument=instrument(restricted=True))

        assert rejected(decision, RejectCode.INSTRUMENT_RESTRICTED)

    def test_a_restricted_instrument_still_lets_the_customer_close(self) -> None:
        decision = decide(
            intent(side=Side.SELL),
            instrument=instrument(restricted=True),
            position=long_position(100),
        )

        assert decision.accepted

    def test_a_restricted_instrument_takes_no_short_sale_even_with_a_locate(self) -> None:
        decision = decide(
            intent(side=Side.SELL_SHORT),
            instrument=instrument(restricted=True),
            short_sale=short_sale(locate_available=100),
        )

        assert rejected(decision, RejectCode.INSTRUMENT_RESTRICTED)

    def test_without_a_reference_price_nothing_can_be_checked_so_nothing_passes(self) -> None:
        decision = decide(
            intent(side=Side.SELL),
            instrument=instrument(reference_price=None),
            position=long_position(100),
        )

        assert rejected(decision, RejectCode.INSTRUMENT_NO_REFERENCE_PRICE)


@pytest.mark.spec("PRE-2")
class TestOrderShape:
    def test_a_price_on_the_tick_passes_and_half_a_tick_off_does_not(self) -> None:
        assert decide(intent(limit_price=Decimal("100.01"))).accepted
        assert rejected(
            decide(intent(limit_price=Decimal("100.005"))), RejectCode.ORDER_PRICE_OFF_TICK
        )

    def test_a_five_cent_tick_refuses_a_one_cent_step(self) -> None:
        nickel = instrument(tick_size=Decimal("0.05"))

        assert decide(intent(limit_price=Decimal("100.05")), instrument=nickel).accepted
        assert rejected(
            decide(intent(limit_price=Decimal("100.01")), instrument=nickel),
            RejectCode.ORDER_PRICE_OFF_TICK,
        )

    def test_quantity_must_be_whole_lots(self) -> None:
        round_lots = instrument(lot_size=100)

        assert decide(intent(quantity=200), instrument=round_lots).accepted
        assert rejected(
            decide(intent(quantity=150), instrument=round_lots), RejectCode.ORDER_QUANTITY_OFF_LOT
        )

    def test_quantity_at_the_minimum_passes_and_one_below_does_not(self) -> None:
        minimum = instrument(min_quantity=10)

        assert decide(intent(quantity=10), instrument=minimum).accepted
        assert rejected(
            decide(intent(quantity=9), instrument=minimum), RejectCode.ORDER_QUANTITY_BELOW_MIN
        )

    def test_quantity_at_the_instrument_maximum_passes_and_one_above_does_not(self) -> None:
        maximum = instrument(max_quantity=500)

        assert decide(intent(quantity=500), instrument=maximum).accepted
        assert rejected(
            decide(intent(quantity=501), instrument=maximum), RejectCode.ORDER_QUANTITY_ABOVE_MAX
        )

    def test_the_account_maximum_applies_when_it_is_the_smaller(self) -> None:
        cheap = instrument(reference_price=Decimal("10.00"))
        rich = account(cash_settled=Decimal("1000000"), start_of_day_equity=Decimal("1000000"))
        at_ten = Decimal("10.00")

        assert decide(
            intent(quantity=50_000, limit_price=at_ten), instrument=cheap, account=rich
        ).accepted
        decision = decide(
            intent(quantity=50_001, limit_price=at_ten), instrument=cheap, account=rich
        )
        assert rejected(decision, RejectCode.ORDER_QUANTITY_ABOVE_MAX)
        assert decision.detail == "quantity 50001 is above the maximum 50000"


@pytest.mark.spec("PRE-2", "REG-1")
class TestPriceCollar:
    @pytest.mark.parametrize("price", ["95.00", "105.00"])
    def test_a_limit_on_a_tier_1_band_edge_passes(self, price: str) -> None:
        assert decide(intent(limit_price=Decimal(price))).accepted

    @pytest.mark.parametrize("price", ["94.99", "105.01"])
    def test_a_limit_one_tick_outside_a_tier_1_band_is_erroneous(self, price: str) -> None:
        decision = decide(intent(limit_price=Decimal(price)))

        assert rejected(decision, RejectCode.ORDER_PRICE_OUTSIDE_COLLAR)
        assert decision.detail == f"limit price {price} is outside the collar 95.00-105.00"

    def test_a_tier_2_stock_gets_the_wider_ten_percent_band(self) -> None:
        tier_2 = instrument(band_tier=2)

        assert decide(intent(limit_price=Decimal("110.00")), instrument=tier_2).accepted
        assert rejected(
            decide(intent(limit_price=Decimal("110.01")), instrument=tier_2),
            RejectCode.ORDER_PRICE_OUTSIDE_COLLAR,
        )

    def test_a_closing_sale_is_collared_too(self) -> None:
        decision = decide(
            intent(side=Side.SELL, limit_price=Decimal("94.99")), position=long_position(100)
        )

        assert rejected(decision, RejectCode.ORDER_PRICE_OUTSIDE_COLLAR)

    def test_a_market_buy_carries_the_upper_band_edge_as_its_protective_price(self) -> None:
        decision = decide(market_order())

        assert decision.accepted
        assert decision.protective_price == Decimal("105.00")
        assert decision.notional == Decimal("10500.00")

    def test_a_market_sale_carries_the_lower_edge_and_is_valued_at_the_reference(self) -> None:
        decision = decide(market_order(side=Side.SELL), position=long_position(100))

        assert decision.protective_price == Decimal("95.00")
        assert decision.notional == Decimal("10000.00")


@pytest.mark.spec("PRE-2", "REG-1")
class TestOrderNotional:
    rich = account(cash_settled=Decimal("600000"), start_of_day_equity=Decimal("600000"))

    def test_an_order_worth_exactly_the_maximum_passes(self) -> None:
        decision = decide(intent(quantity=10_000), account=self.rich)

        assert decision.accepted
        assert decision.notional == Decimal("1000000.00")

    def test_an_order_one_share_over_the_maximum_is_erroneous(self) -> None:
        decision = decide(intent(quantity=10_001), account=self.rich)

        assert rejected(decision, RejectCode.ORDER_NOTIONAL_ABOVE_MAX)

    def test_a_closing_sale_above_the_maximum_value_still_passes(self) -> None:
        decision = decide(intent(side=Side.SELL, quantity=20_000), position=long_position(20_000))

        assert decision.accepted
        assert decision.notional == Decimal("2000000.00")


@pytest.mark.spec("REG-1")
class TestDuplicate:
    def twin(self, *, age_ns: int, **changes: Any) -> RiskSnapshot:
        history = recent(1, spacing_ns=0, age_ns=age_ns, limit_price=Decimal("100.00"), **changes)
        return snapshot(recent=history)

    def test_the_same_order_accepted_just_inside_the_window_is_a_duplicate(self) -> None:
        decision = evaluate(intent(), self.twin(age_ns=5 * NS_PER_SECOND - 1))

        assert rejected(decision, RejectCode.ORDER_DUPLICATE)

    def test_the_same_order_accepted_a_full_window_ago_is_not(self) -> None:
        assert evaluate(intent(), self.twin(age_ns=5 * NS_PER_SECOND)).accepted

    def test_a_rejected_attempt_does_not_make_the_retry_a_duplicate(self) -> None:
        assert evaluate(intent(), self.twin(age_ns=MS, accepted=False)).accepted

    @pytest.mark.parametrize(
        "difference",
        [{"quantity": 101}, {"side": Side.SELL_SHORT}, {"symbol": "OTHER"}],
    )
    def test_an_order_that_differs_in_quantity_side_or_symbol_is_not_a_duplicate(
        self, difference: dict[str, Any]
    ) -> None:
        assert evaluate(intent(), self.twin(age_ns=MS, **difference)).accepted

    def test_an_order_at_another_price_is_not_a_duplicate(self) -> None:
        assert evaluate(intent(limit_price=Decimal("100.01")), self.twin(age_ns=MS)).accepted


@pytest.mark.spec("PRE-3")
class TestOrderRate:
    def test_nine_attempts_in_the_last_second_leave_room_for_a_tenth(self) -> None:
        assert decide(recent=recent(9, spacing_ns=100 * MS)).accepted

    def test_ten_attempts_in_the_last_second_throttle_the_eleventh(self) -> None:
        decision = decide(recent=recent(10, spacing_ns=100 * MS, age_ns=MS))

        assert rejected(decision, RejectCode.THROTTLE_ORDER_RATE)
        assert decision.check == "order_rate"

    def test_an_attempt_exactly_one_second_old_has_left_the_window(self) -> None:
        # Newest is 100 ms old, the tenth exactly 1 s old: nine remain inside.
        assert decide(recent=recent(10, spacing_ns=100 * MS, age_ns=100 * MS)).accepted

    def test_rejected_attempts_count_too(self) -> None:
        decision = decide(recent=recent(10, spacing_ns=50 * MS, accepted=False))

        assert rejected(decision, RejectCode.THROTTLE_ORDER_RATE)


@pytest.mark.spec("PRE-3")
class TestPlacementBurst:
    def test_twenty_nine_attempts_in_the_burst_window_pass(self) -> None:
        assert decide(recent=recent(29, spacing_ns=300 * MS)).accepted

    def test_thirty_attempts_in_the_burst_window_are_a_burst(self) -> None:
        decision = decide(recent=recent(30, spacing_ns=300 * MS))

        assert rejected(decision, RejectCode.PATTERN_PLACEMENT_BURST)
        assert decision.detail == "30 orders within 10000 ms"

    def test_an_attempt_exactly_at_the_window_edge_is_outside(self) -> None:
        history = recent(29, spacing_ns=300 * MS) + recent(
            1, spacing_ns=0, age_ns=10 * NS_PER_SECOND
        )

        assert decide(recent=history).accepted


@pytest.mark.spec("PRE-3")
class TestUnusualSize:
    def test_twenty_times_the_median_passes_and_one_share_more_does_not(self) -> None:
        history = recent(10, spacing_ns=3600 * NS_PER_SECOND, quantity=10)

        assert decide(intent(quantity=200), recent=history).accepted
        decision = decide(intent(quantity=201), recent=history)
        assert rejected(decision, RejectCode.PATTERN_UNUSUAL_SIZE)

    def test_the_median_of_an_even_history_is_the_mean_of_the_middle_two(self) -> None:
        hour = 3600 * NS_PER_SECOND
        history = recent(5, spacing_ns=hour, quantity=10) + recent(
            5, spacing_ns=hour, age_ns=5 * hour, quantity=20
        )

        assert decide(intent(quantity=300), recent=history).accepted
        assert rejected(
            decide(intent(quantity=301), recent=history), RejectCode.PATTERN_UNUSUAL_SIZE
        )

    def test_with_less_history_than_required_size_is_not_judged(self) -> None:
        history = recent(9, spacing_ns=3600 * NS_PER_SECOND, quantity=10)

        assert decide(intent(quantity=201), recent=history).accepted

    def test_rejected_attempts_are_not_part_of_the_history(self) -> None:
        hour = 3600 * NS_PER_SECOND
        history = recent(9, spacing_ns=hour, quantity=10) + recent(
            5, spacing_ns=hour, age_ns=9 * hour, quantity=10, accepted=False
        )

        assert decide(intent(quantity=201), recent=history).accepted

    def test_a_sale_of_the_whole_position_is_judged_too(self) -> None:
        history = recent(10, spacing_ns=3600 * NS_PER_SECOND, quantity=10)

        decision = decide(
            intent(side=Side.SELL, quantity=1000), recent=history, position=long_position(1000)
        )

        assert rejected(decision, RejectCode.PATTERN_UNUSUAL_SIZE)


@pytest.mark.spec("PRE-3")
class TestSelfTrade:
    def test_a_buy_below_the_accounts_own_ask_passes(self) -> None:
        assert decide(
            intent(limit_price=Decimal("99.99")), own_orders=own_orders(best_ask=Decimal("100.00"))
        ).accepted

    def test_a_buy_at_the_accounts_own_ask_would_cross_it(self) -> None:
        decision = decide(own_orders=own_orders(best_ask=Decimal("100.00")))

        assert rejected(decision, RejectCode.STP_SELF_TRADE)

    def test_a_sale_above_the_accounts_own_bid_passes(self) -> None:
        assert decide(
            intent(side=Side.SELL, limit_price=Decimal("100.01")),
            position=long_position(100),
            own_orders=own_orders(best_bid=Decimal("100.00")),
        ).accepted

    def test_a_short_sale_at_the_accounts_own_bid_would_cross_it(self) -> None:
        decision = decide(
            intent(side=Side.SELL_SHORT),
            short_sale=short_sale(locate_available=100),
            own_orders=own_orders(best_bid=Decimal("100.00")),
        )

        assert rejected(decision, RejectCode.STP_SELF_TRADE)

    def test_a_market_order_crosses_any_own_opposite_order(self) -> None:
        decision = decide(market_order(), own_orders=own_orders(best_ask=Decimal("104.00")))

        assert rejected(decision, RejectCode.STP_SELF_TRADE)

    def test_an_own_order_on_the_same_side_is_no_self_trade(self) -> None:
        assert decide(market_order(), own_orders=own_orders(best_bid=Decimal("104.00"))).accepted

    @pytest.mark.parametrize(
        "mode", [StpMode.CANCEL_OLDEST, StpMode.CANCEL_BOTH, StpMode.DECREMENT]
    )
    def test_other_modes_leave_the_cross_to_the_venue(self, mode: StpMode) -> None:
        decision = decide(
            own_orders=own_orders(best_ask=Decimal("100.00")), limits=risk_limits(stp_mode=mode)
        )

        assert decision.accepted


@pytest.mark.spec("PRE-2", "REG-1")
class TestPositionLimit:
    capped = risk_limits(position_limit=1000)

    def test_a_buy_up_to_the_limit_counting_open_buys_passes(self) -> None:
        held = long_position(500, open_buy_quantity=400)

        assert decide(intent(quantity=100), position=held, limits=self.capped).accepted

    def test_one_share_past_the_limit_counting_open_buys_is_refused(self) -> None:
        held = long_position(500, open_buy_quantity=400)

        decision = decide(intent(quantity=101), position=held, limits=self.capped)

        assert rejected(decision, RejectCode.RISK_POSITION_LIMIT)
        assert decision.detail == "the position would reach 1001 shares; the limit is 1000"

    def test_a_short_sale_counts_open_sales_toward_the_short_limit(self) -> None:
        short = short_position(500, open_sell_quantity=400)
        located = short_sale(locate_available=1000)

        assert decide(
            intent(side=Side.SELL_SHORT, quantity=100),
            position=short,
            short_sale=located,
            limits=self.capped,
        ).accepted
        assert rejected(
            decide(
                intent(side=Side.SELL_SHORT, quantity=101),
                position=short,
                short_sale=located,
                limits=self.capped,
            ),
            RejectCode.RISK_POSITION_LIMIT,
        )

    def test_covering_a_short_already_above_the_limit_is_allowed(self) -> None:
        decision = decide(intent(quantity=1500), position=short_position(2000), limits=self.capped)

        assert decision.accepted
        assert decision.reducing

    def test_a_buy_that_flips_a_short_into_a_long_counts_only_the_long_part(self) -> None:
        decision = decide(intent(quantity=1200), position=short_position(300), limits=self.capped)

        assert decision.accepted
        assert not decision.reducing


@pytest.mark.spec("PRE-2", "REG-1")
class TestGrossExposure:
    def test_exposure_reaching_the_cap_exactly_passes(self) -> None:
        assert decide(gross_exposure=Decimal("4990000")).accepted

    def test_exposure_a_cent_over_the_cap_is_refused(self) -> None:
        decision = decide(gross_exposure=Decimal("4990000.01"))

        assert rejected(decision, RejectCode.RISK_GROSS_EXPOSURE)

    def test_a_closing_sale_passes_whatever_the_exposure(self) -> None:
        decision = decide(
            intent(side=Side.SELL), position=long_position(100), gross_exposure=Decimal("9e9")
        )

        assert decision.accepted


@pytest.mark.spec("PRE-2", "REG-1")
class TestDailyLoss:
    def test_a_loss_a_cent_short_of_the_limit_still_trades(self) -> None:
        assert decide(account=account(start_of_day_equity=Decimal("149999.99"))).accepted

    def test_a_loss_equal_to_the_limit_stops_new_risk(self) -> None:
        decision = decide(account=account(start_of_day_equity=Decimal("150000")))

        assert rejected(decision, RejectCode.RISK_DAILY_LOSS_LIMIT)

    def test_a_closing_sale_passes_after_the_limit(self) -> None:
        decision = decide(
            intent(side=Side.SELL),
            account=account(
                start_of_day_equity=Decimal("200000"), long_market_value=Decimal("10000")
            ),
            position=long_position(100),
        )

        assert decision.accepted


@pytest.mark.spec("PRE-2", "REG-1")
class TestBuyingPower:
    def test_a_cash_buy_that_uses_the_last_cent_passes(self) -> None:
        cash = account(account_type=AccountType.CASH, cash_settled=Decimal("10000.50"))

        decision = decide(account=cash)

        assert decision.accepted
        assert decision.hold_cash == Decimal("10000.50")  # 100 x $100 + 100 x $0.005

    def test_a_cash_buy_a_cent_short_is_refused(self) -> None:
        cash = account(account_type=AccountType.CASH, cash_settled=Decimal("10000.49"))

        decision = decide(account=cash)

        assert rejected(decision, RejectCode.RISK_BUYING_POWER)
        assert decision.check == "buying_power"
        assert decision.detail == "the order needs 10000.50; 10000.49 is available"

    def test_unsettled_proceeds_count_and_open_order_holds_do_not(self) -> None:
        cash = account(
            account_type=AccountType.CASH,
            cash_settled=Decimal("6000"),
            cash_unsettled=Decimal("6000"),
            cash_held=Decimal("1999.50"),
        )

        assert decide(account=cash).accepted
        assert rejected(
            decide(account=dataclasses.replace(cash, cash_held=Decimal("1999.51"))),
            RejectCode.RISK_BUYING_POWER,
        )

    def test_a_margin_buy_needs_half_its_value_plus_commission(self) -> None:
        margin = account(cash_settled=Decimal("5000.50"), start_of_day_equity=Decimal("5000.50"))

        decision = decide(account=margin)

        assert decision.accepted
        assert decision.hold_cash == Decimal("5000.50")
        assert rejected(
            decide(
                account=dataclasses.replace(margin, cash_settled=Decimal("5000.49")),
            ),
            RejectCode.RISK_BUYING_POWER,
        )

    def test_margin_already_used_by_positions_is_not_available(self) -> None:
        # Equity 30,000 with 50,000 long: 25,000 is required, 5,000 is free.
        margin = account(
            cash_settled=Decimal("-20000"),
            long_market_value=Decimal("50000"),
            start_of_day_equity=Decimal("30000"),
        )

        assert decide(intent(quantity=99), account=margin).accepted
        assert rejected(decide(intent(quantity=100), account=margin), RejectCode.RISK_BUYING_POWER)

    def test_a_margin_short_sale_reserves_the_same_half(self) -> None:
        decision = decide(intent(side=Side.SELL_SHORT), short_sale=short_sale(locate_available=100))

        assert decision.accepted
        assert decision.hold_cash == Decimal("5000.50")

    def test_a_long_sale_reserves_shares_not_cash(self) -> None:
        broke = account(cash_settled=Decimal(0), long_market_value=Decimal("10000"))

        decision = decide(intent(side=Side.SELL), account=broke, position=long_position(100))

        assert decision.accepted
        assert decision.hold_cash == 0
        assert decision.hold_shares == 100

    def test_a_cover_needs_no_buying_power(self) -> None:
        broke = account(cash_settled=Decimal(0))

        decision = decide(account=broke, position=short_position(100))

        assert decision.accepted
        assert decision.hold_cash == 0


class TestOrderIntent:
    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"quantity": 0}, "positive whole number"),
            ({"quantity": -5}, "positive whole number"),
            ({"quantity": True}, "positive whole number"),
            ({"limit_price": None}, "needs a finite limit price"),
            ({"limit_price": Decimal("NaN")}, "needs a finite limit price"),
            ({"limit_price": Decimal("0")}, "must be positive"),
            ({"order_type": OrderType.MARKET}, "has no limit price"),
        ],
    )
    def test_a_malformed_intent_cannot_be_built(
        self, changes: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(InvalidInput, match=message):
            intent(**changes)
