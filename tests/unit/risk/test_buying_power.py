"""Reg T buying power: funds available, the hold an opening order needs, display value."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.risk import account, limits
from tradeguard.risk.buying_power import available_funds, buying_power, required_hold
from tradeguard.risk.domain import AccountType


@pytest.mark.spec("PRE-2", "REG-1")
class TestAvailableFunds:
    def test_a_cash_account_has_its_settled_and_unsettled_cash_less_holds(self) -> None:
        cash = account(
            account_type=AccountType.CASH,
            cash_settled=Decimal("1000"),
            cash_unsettled=Decimal("250"),
            cash_held=Decimal("300"),
            long_market_value=Decimal("99999"),
        )

        assert available_funds(cash, limits()) == Decimal("950")

    def test_a_margin_account_has_its_equity_above_initial_margin_less_holds(self) -> None:
        margin = account(
            cash_settled=Decimal("20000"),
            long_market_value=Decimal("30000"),
            short_market_value=Decimal("10000"),
            cash_held=Decimal("1000"),
        )

        # equity 40,000 - 50% of (30,000 + 10,000) - 1,000 held
        assert available_funds(margin, limits()) == Decimal("19000")

    def test_an_over_extended_margin_account_has_negative_funds(self) -> None:
        margin = account(cash_settled=Decimal("-20000"), long_market_value=Decimal("30000"))

        assert available_funds(margin, limits()) == Decimal("-5000")


@pytest.mark.spec("PRE-2", "REG-1")
class TestRequiredHold:
    def test_cash_pays_the_full_notional_plus_commission(self) -> None:
        assert required_hold(Decimal("10000"), 100, AccountType.CASH, limits()) == Decimal(
            "10000.5"
        )

    def test_margin_pays_the_initial_margin_rate_plus_commission(self) -> None:
        assert required_hold(Decimal("10000"), 100, AccountType.MARGIN, limits()) == Decimal(
            "5000.5"
        )


class TestBuyingPowerForDisplay:
    def test_cash_buying_power_is_the_funds(self) -> None:
        cash = account(account_type=AccountType.CASH, cash_settled=Decimal("1000"))

        assert buying_power(cash, limits()) == Decimal("1000")

    def test_margin_buying_power_is_twice_the_free_equity(self) -> None:
        assert buying_power(account(cash_settled=Decimal("10000")), limits()) == Decimal("20000")

    def test_buying_power_is_never_negative(self) -> None:
        margin = account(cash_settled=Decimal("-20000"), long_market_value=Decimal("30000"))

        assert buying_power(margin, limits()) == 0
