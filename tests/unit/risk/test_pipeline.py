"""The pipeline: every reject code reachable, the documented order, and its invariants."""

from __future__ import annotations

import copy
import dataclasses
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.risk import (
    account,
    day_trades,
    instrument,
    intent,
    long_position,
    market,
    market_order,
    own_orders,
    position,
    recent,
    short_position,
    short_sale,
    snapshot,
)
from tests.support.risk import limits as risk_limits
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.orders import OrderType, Side, StpMode, TimeInForce
from tradeguard.risk import checks, pipeline
from tradeguard.risk.buying_power import available_funds
from tradeguard.risk.domain import (
    REJECT_DESCRIPTIONS,
    AccountStatus,
    AccountType,
    OrderIntent,
    RejectCode,
    RiskSnapshot,
    TradingState,
)
from tradeguard.risk.pipeline import CHECKS, evaluate

HOUR = 3600 * NS_PER_SECOND
CATEGORIES = {
    "ACCOUNT",
    "MARKET",
    "SYMBOL",
    "INSTRUMENT",
    "ORDER",
    "THROTTLE",
    "PATTERN",
    "SHORT",
    "PDT",
    "STP",
    "RISK",
}
SMALL_ACCOUNT = {
    "cash_settled": Decimal("10000"),
    "long_market_value": Decimal("10000"),
}

# One scenario per reject code: the baseline snapshot (a plain buy is accepted) with the
# single change that trips that code.
SCENARIOS: dict[RejectCode, tuple[OrderIntent, RiskSnapshot]] = {
    RejectCode.ACCOUNT_NOT_ACTIVE: (
        intent(),
        snapshot(account=account(status=AccountStatus.PENDING)),
    ),
    RejectCode.ACCOUNT_CLOSING_ONLY: (
        intent(),
        snapshot(account=account(status=AccountStatus.CLOSING_ONLY)),
    ),
    RejectCode.ACCOUNT_HALTED: (
        intent(),
        snapshot(account=account(trading_state=TradingState.HALTED)),
    ),
    RejectCode.ACCOUNT_REDUCING_ONLY: (
        intent(),
        snapshot(account=account(trading_state=TradingState.REDUCING)),
    ),
    RejectCode.MARKET_HALTED: (intent(), snapshot(market=market(market_halted=True))),
    RejectCode.MARKET_CLOSED: (market_order(), snapshot(market=market(session_open=False))),
    RejectCode.SYMBOL_HALTED: (intent(), snapshot(instrument=instrument(halted=True))),
    RejectCode.INSTRUMENT_UNKNOWN: (intent(), snapshot(instrument=None)),
    RejectCode.INSTRUMENT_NOT_TRADABLE: (intent(), snapshot(instrument=instrument(tradable=False))),
    RejectCode.INSTRUMENT_RESTRICTED: (intent(), snapshot(instrument=instrument(restricted=True))),
    RejectCode.INSTRUMENT_NO_REFERENCE_PRICE: (
        intent(),
        snapshot(instrument=instrument(reference_price=None)),
    ),
    RejectCode.ORDER_PRICE_OFF_TICK: (intent(limit_price=Decimal("100.001")), snapshot()),
    RejectCode.ORDER_QUANTITY_OFF_LOT: (
        intent(quantity=150),
        snapshot(instrument=instrument(lot_size=100)),
    ),
    RejectCode.ORDER_QUANTITY_BELOW_MIN: (
        intent(quantity=5),
        snapshot(instrument=instrument(min_quantity=10)),
    ),
    RejectCode.ORDER_QUANTITY_ABOVE_MAX: (intent(quantity=50_001), snapshot()),
    RejectCode.ORDER_NOTIONAL_ABOVE_MAX: (intent(quantity=10_001), snapshot()),
    RejectCode.ORDER_PRICE_OUTSIDE_COLLAR: (intent(limit_price=Decimal("105.01")), snapshot()),
    RejectCode.ORDER_DUPLICATE: (
        intent(),
        snapshot(
            recent=recent(1, spacing_ns=0, age_ns=NS_PER_SECOND, limit_price=Decimal("100.00"))
        ),
    ),
    RejectCode.ORDER_SELL_EXCEEDS_POSITION: (intent(side=Side.SELL), snapshot()),
    RejectCode.THROTTLE_ORDER_RATE: (intent(), snapshot(recent=recent(10, spacing_ns=50_000_000))),
    RejectCode.PATTERN_PLACEMENT_BURST: (
        intent(),
        snapshot(recent=recent(30, spacing_ns=300_000_000)),
    ),
    RejectCode.PATTERN_UNUSUAL_SIZE: (
        intent(quantity=201),
        snapshot(recent=recent(10, spacing_ns=HOUR, quantity=10)),
    ),
    RejectCode.SHORT_CASH_ACCOUNT: (
        intent(side=Side.SELL_SHORT),
        snapshot(account=account(account_type=AccountType.CASH)),
    ),
    RejectCode.SHORT_NO_LOCATE: (intent(side=Side.SELL_SHORT), snapshot()),
    RejectCode.SHORT_PREBORROW_REQUIRED: (
        intent(side=Side.SELL_SHORT),
        snapshot(instrument=instrument(threshold_security=True)),
    ),
    RejectCode.SHORT_PENALTY_BOX: (
        intent(side=Side.SELL_SHORT),
        snapshot(short_sale=short_sale(penalty_box=True, locate_available=100)),
    ),
    RejectCode.PDT_DAY_TRADE_LIMIT: (
        intent(side=Side.SELL),
        snapshot(
            account=account(**SMALL_ACCOUNT),
            position=long_position(100, opened_today_long=100),
            day_trades=day_trades(day_trades=3, total_trades=10),
        ),
    ),
    RejectCode.PDT_EQUITY_BELOW_MINIMUM: (
        intent(quantity=10),
        snapshot(account=account(**SMALL_ACCOUNT), day_trades=day_trades(pdt_flagged=True)),
    ),
    RejectCode.STP_SELF_TRADE: (
        intent(),
        snapshot(own_orders=own_orders(best_ask=Decimal("100.00"))),
    ),
    RejectCode.RISK_BUYING_POWER: (intent(quantity=2001), snapshot()),
    RejectCode.RISK_POSITION_LIMIT: (intent(), snapshot(limits=risk_limits(position_limit=99))),
    RejectCode.RISK_GROSS_EXPOSURE: (intent(), snapshot(gross_exposure=Decimal("4995000"))),
    RejectCode.RISK_DAILY_LOSS_LIMIT: (
        intent(),
        snapshot(account=account(start_of_day_equity=Decimal("150000"))),
    ),
}


class TestRejectCodes:
    def test_every_code_has_a_scenario_and_a_description(self) -> None:
        assert set(SCENARIOS) == set(RejectCode)
        assert set(REJECT_DESCRIPTIONS) == set(RejectCode)
        assert all(REJECT_DESCRIPTIONS[code].endswith(".") for code in RejectCode)

    def test_codes_are_stable_category_condition_strings(self) -> None:
        for code in RejectCode:
            assert code.value == code.name
            category, _, condition = code.value.partition("_")
            assert category in CATEGORIES
            assert condition

    @pytest.mark.parametrize("code", list(RejectCode), ids=str)
    def test_the_code_is_reached_through_evaluate(self, code: RejectCode) -> None:
        order, state = SCENARIOS[code]

        decision = evaluate(order, state)

        assert not decision.accepted
        assert decision.code is code
        assert decision.detail
        assert decision.hold_cash == 0
        assert decision.hold_shares == 0
        assert decision.locate_use == 0

    def test_the_set_of_codes_reached_is_every_code(self) -> None:
        reached = {evaluate(order, state).code for order, state in SCENARIOS.values()}

        assert reached == set(RejectCode)

    def test_the_baseline_of_every_scenario_is_accepted(self) -> None:
        assert evaluate(intent(), snapshot()).accepted


class TestOrder:
    def test_the_pipeline_is_thirty_checks_one_function_per_control(self) -> None:
        names = [check.__name__ for check in CHECKS]

        assert len(names) == len(set(names)) == 30
        assert all(name.startswith("check_") for name in names)
        assert names[:2] == ["check_account_status", "check_trading_state"]
        assert names[-1] == "check_buying_power"

    def test_every_check_function_in_the_module_is_in_the_pipeline(self) -> None:
        defined = {name for name in dir(checks) if name.startswith("check_")}

        assert defined == {check.__name__ for check in CHECKS}

    @pytest.mark.parametrize("side", list(Side), ids=str)
    def test_checks_skipped_for_a_side_pass_every_order_of_that_side(self, side: Side) -> None:
        # A state in which every skipped check would deny, if it applied.
        state = snapshot(
            account=account(account_type=AccountType.CASH),
            instrument=instrument(threshold_security=True),
            short_sale=short_sale(penalty_box=True),
        )
        order = intent(side=side, quantity=1)
        ctx = checks.build_context(order, state)

        for check in pipeline._NOT_FOR[side]:
            assert check(order, state, ctx) is None, check.__name__

    def test_checks_skipped_for_reducing_orders_pass_every_reducing_order(self) -> None:
        state = snapshot(
            account=account(cash_settled=Decimal(-(10**9)), start_of_day_equity=Decimal(10**9)),
            position=long_position(100),
            gross_exposure=Decimal(10**12),
            limits=risk_limits(
                position_limit=1,
                max_order_notional=Decimal("0.01"),
                gross_exposure_cap=Decimal("0.01"),
            ),
        )
        order = intent(side=Side.SELL)
        ctx = checks.build_context(order, state)

        assert ctx.reducing
        for check in pipeline._OPENING_ONLY:
            assert check(order, state, ctx) is None, check.__name__

    def test_account_state_is_reported_before_anything_else_wrong(self) -> None:
        everything_wrong = snapshot(
            account=account(status=AccountStatus.SUSPENDED, cash_settled=Decimal(0)),
            market=market(market_halted=True),
            instrument=None,
        )

        decision = evaluate(intent(limit_price=Decimal("1.001")), everything_wrong)

        assert decision.code is RejectCode.ACCOUNT_NOT_ACTIVE

    def test_a_flood_is_named_as_a_flood_whatever_its_orders_look_like(self) -> None:
        decision = evaluate(
            intent(limit_price=Decimal("100.001")),
            snapshot(recent=recent(10, spacing_ns=10_000_000, accepted=False)),
        )

        assert decision.code is RejectCode.THROTTLE_ORDER_RATE

    def test_buying_power_is_the_answer_only_when_nothing_else_is_wrong(self) -> None:
        decision = evaluate(
            intent(quantity=2001), snapshot(limits=risk_limits(position_limit=2000))
        )

        assert decision.code is RejectCode.RISK_POSITION_LIMIT


class TestAcceptedDecision:
    def test_a_margin_buy_holds_half_its_value_plus_commission(self) -> None:
        decision = evaluate(intent(), snapshot())

        assert decision.accepted
        assert (decision.code, decision.check, decision.detail) == (None, None, None)
        assert decision.notional == Decimal("10000.00")
        assert decision.hold_cash == Decimal("5000.500")
        assert not decision.reducing
        assert not decision.day_trade

    def test_a_cash_buy_holds_its_full_value_plus_commission(self) -> None:
        decision = evaluate(intent(), snapshot(account=account(account_type=AccountType.CASH)))

        assert decision.hold_cash == Decimal("10000.500")

    def test_a_limit_sale_above_the_market_is_valued_at_its_limit(self) -> None:
        decision = evaluate(
            intent(side=Side.SELL, limit_price=Decimal("104.00")),
            snapshot(position=long_position(100)),
        )

        assert decision.notional == Decimal("10400.00")
        assert decision.hold_shares == 100
        assert decision.reducing

    def test_a_limit_short_below_the_market_is_valued_at_the_market(self) -> None:
        decision = evaluate(
            intent(side=Side.SELL_SHORT, limit_price=Decimal("96.00")),
            snapshot(short_sale=short_sale(locate_available=100)),
        )

        assert decision.notional == Decimal("10000.00")

    def test_a_located_short_sale_uses_its_locate(self) -> None:
        decision = evaluate(
            intent(side=Side.SELL_SHORT), snapshot(short_sale=short_sale(locate_available=500))
        )

        assert (decision.locate_use, decision.preborrow) == (100, False)

    def test_a_day_trade_is_flagged_on_the_decision(self) -> None:
        decision = evaluate(
            intent(side=Side.SELL),
            snapshot(position=long_position(100, opened_today_long=100)),
        )

        assert decision.accepted
        assert decision.day_trade


# -- properties ---------------------------------------------------------------------------

money = st.decimals(min_value=0, max_value=500_000, places=2)
prices = st.integers(min_value=9_500, max_value=10_500).map(lambda cents: Decimal(cents) / 100)


@st.composite
def opening_orders(draw: st.DrawFn) -> tuple[OrderIntent, RiskSnapshot]:
    account_type = draw(st.sampled_from(AccountType))
    side = draw(st.sampled_from([Side.BUY, Side.SELL_SHORT]))
    if account_type is AccountType.CASH:
        side = Side.BUY
    is_market = draw(st.booleans())
    order = intent(
        side=side,
        order_type=OrderType.MARKET if is_market else OrderType.LIMIT,
        limit_price=None if is_market else draw(prices),
        quantity=draw(st.integers(min_value=1, max_value=20_000)),
    )
    long_value = draw(money)
    short_value = draw(money) if account_type is AccountType.MARGIN else Decimal(0)
    state = snapshot(
        account=account(
            account_type=account_type,
            cash_settled=draw(money),
            cash_unsettled=draw(money),
            cash_held=draw(money),
            long_market_value=long_value,
            short_market_value=short_value,
            start_of_day_equity=Decimal(0),
        ),
        short_sale=short_sale(locate_available=20_000),
    )
    return order, state


@st.composite
def reducing_orders(draw: st.DrawFn) -> tuple[OrderIntent, RiskSnapshot]:
    shares = draw(st.integers(min_value=1, max_value=20_000))
    already = draw(st.integers(min_value=0, max_value=shares - 1))
    quantity = draw(st.integers(min_value=1, max_value=shares - already))
    is_long = draw(st.booleans())
    if is_long:
        order = intent(side=Side.SELL, quantity=quantity, limit_price=draw(prices))
        held = long_position(shares, held_for_sale=already)
    else:
        order = intent(side=Side.BUY, quantity=quantity, limit_price=draw(prices))
        held = short_position(shares, open_buy_quantity=already)
    state = snapshot(
        account=account(
            cash_settled=draw(st.decimals(min_value=-1_000_000, max_value=0, places=2)),
            start_of_day_equity=Decimal(10_000_000),
        ),
        position=held,
        gross_exposure=Decimal(10**12),
        limits=risk_limits(
            position_limit=1,
            max_order_notional=Decimal("0.01"),
            gross_exposure_cap=Decimal("0.01"),
            daily_loss_limit=Decimal("0.01"),
        ),
    )
    return order, state


@st.composite
def any_orders(draw: st.DrawFn) -> tuple[OrderIntent, RiskSnapshot]:
    is_market = draw(st.booleans())
    order = intent(
        side=draw(st.sampled_from(Side)),
        order_type=OrderType.MARKET if is_market else OrderType.LIMIT,
        time_in_force=draw(st.sampled_from(TimeInForce)),
        limit_price=None if is_market else draw(prices),
        quantity=draw(st.integers(min_value=1, max_value=60_000)),
    )
    state = snapshot(
        account=account(
            account_type=draw(st.sampled_from(AccountType)),
            status=draw(st.sampled_from(AccountStatus)),
            trading_state=draw(st.sampled_from(TradingState)),
            cash_settled=draw(money),
        ),
        market=market(session_open=draw(st.booleans())),
        position=position(
            quantity=draw(st.integers(min_value=-5_000, max_value=5_000)),
            opened_today_long=draw(st.integers(min_value=0, max_value=100)),
        ),
        recent=recent(
            draw(st.integers(min_value=0, max_value=64)),
            spacing_ns=draw(st.integers(min_value=1, max_value=2 * NS_PER_SECOND)),
        ),
        short_sale=short_sale(locate_available=draw(st.integers(min_value=0, max_value=60_000))),
        day_trades=day_trades(day_trades=draw(st.integers(min_value=0, max_value=6))),
        limits=risk_limits(stp_mode=draw(st.sampled_from(StpMode))),
    )
    return order, state


RISK_CHECK_CODES = {
    RejectCode.ORDER_NOTIONAL_ABOVE_MAX,
    RejectCode.RISK_BUYING_POWER,
    RejectCode.RISK_POSITION_LIMIT,
    RejectCode.RISK_GROSS_EXPOSURE,
    RejectCode.RISK_DAILY_LOSS_LIMIT,
}


class TestProperties:
    @pytest.mark.spec("PRE-2", "REG-1")
    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(opening_orders())
    def test_an_accepted_opening_order_never_holds_more_than_is_available(
        self, case: tuple[OrderIntent, RiskSnapshot]
    ) -> None:
        order, state = case
        available_before = available_funds(state.account, state.limits)

        decision = evaluate(order, state)

        if decision.accepted:
            assert not decision.reducing
            assert decision.hold_cash > 0
            assert decision.hold_cash <= available_before
            after = dataclasses.replace(
                state.account, cash_held=state.account.cash_held + decision.hold_cash
            )
            assert available_funds(after, state.limits) >= 0
        else:
            assert decision.hold_cash == 0

    @pytest.mark.spec("PRE-2", "REG-1")
    @settings(max_examples=150)
    @given(reducing_orders())
    def test_a_reducing_order_is_never_stopped_by_notional_funds_or_exposure_checks(
        self, case: tuple[OrderIntent, RiskSnapshot]
    ) -> None:
        order, state = case

        decision = evaluate(order, state)

        assert decision.reducing
        assert decision.code not in RISK_CHECK_CODES
        assert decision.accepted
        assert decision.hold_cash == 0

    @settings(max_examples=150)
    @given(any_orders())
    def test_evaluate_is_deterministic_and_changes_nothing(
        self, case: tuple[OrderIntent, RiskSnapshot]
    ) -> None:
        order, state = case
        before = copy.deepcopy((order, state))

        first = evaluate(order, state)
        second = evaluate(order, state)

        assert first == second
        assert (order, state) == before
        assert first.accepted == (first.code is None)

    @settings(max_examples=150)
    @given(any_orders())
    def test_skipping_checks_that_cannot_apply_changes_no_decision(
        self, case: tuple[OrderIntent, RiskSnapshot]
    ) -> None:
        order, state = case
        ctx = checks.build_context(order, state)
        every_check = next(
            (
                (check.__name__.removeprefix("check_"), reject.code)
                for check in CHECKS
                if (reject := check(order, state, ctx)) is not None
            ),
            (None, None),
        )

        decision = evaluate(order, state)

        assert (decision.check, decision.code) == every_check
