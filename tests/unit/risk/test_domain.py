"""Risk vocabulary: limits are validated, defaults are the documented ones, equity adds up."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from tests.support.risk import account
from tradeguard.core.errors import InvalidInput
from tradeguard.core.orders import StpMode
from tradeguard.risk.domain import RECENT_ORDERS_MAX, RiskLimits


class TestRiskLimits:
    def test_defaults_follow_reg_t_and_finra_4210(self) -> None:
        limits = RiskLimits.defaults()

        assert limits.initial_margin_rate == Decimal("0.5")
        assert (limits.pdt_day_trades, limits.pdt_window_days) == (4, 5)
        assert limits.pdt_min_equity == Decimal(25_000)
        assert limits.pdt_min_share == Decimal("0.06")
        assert limits.stp_mode is StpMode.CANCEL_NEWEST

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"max_orders_per_second": 0}, "max_orders_per_second"),
            ({"max_orders_per_second": RECENT_ORDERS_MAX + 1}, "max_orders_per_second"),
            ({"burst_max_orders": RECENT_ORDERS_MAX + 1}, "burst_max_orders"),
            ({"unusual_size_min_history": 0}, "unusual_size_min_history"),
            ({"initial_margin_rate": Decimal(0)}, "initial_margin_rate"),
            ({"initial_margin_rate": Decimal("1.01")}, "initial_margin_rate"),
            ({"max_order_notional": Decimal(0)}, "must be positive"),
            ({"position_limit": -1}, "must be positive"),
            ({"duplicate_window_ns": 0}, "must be positive"),
            ({"commission_per_share": Decimal("-0.01")}, "cannot be negative"),
            ({"pdt_min_share": Decimal("-0.01")}, "cannot be negative"),
        ],
    )
    def test_limits_that_could_never_work_are_refused(
        self, changes: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(InvalidInput, match=message):
            dataclasses.replace(RiskLimits.defaults(), **changes)


class TestAccountState:
    def test_equity_is_cash_plus_longs_less_shorts(self) -> None:
        state = account(
            cash_settled=Decimal("1000"),
            cash_unsettled=Decimal("200"),
            cash_held=Decimal("999"),
            long_market_value=Decimal("3000"),
            short_market_value=Decimal("500"),
        )

        assert state.equity == Decimal("3700")
