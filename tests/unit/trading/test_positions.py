"""Average-cost position accounting: realized P&L and what a day opened (pure)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tradeguard.trading.domain import apply_execution, cash_effect

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000"), places=2)


class TestApplyExecution:
    def test_buying_then_selling_part_realizes_against_the_average_cost(self) -> None:
        first = apply_execution(0, Decimal(0), buy=True, shares=10, price=Decimal("100"))
        second = apply_execution(
            first.quantity, first.cost_basis, buy=True, shares=10, price=Decimal("110")
        )
        sold = apply_execution(
            second.quantity, second.cost_basis, buy=False, shares=5, price=Decimal("120")
        )
        assert second.cost_basis == Decimal("2100")
        assert sold.realized == Decimal("75")  # (120 - 105) x 5
        assert sold.quantity == 15
        assert sold.cost_basis == Decimal("1575")
        assert sold.reduced_long == 5

    def test_a_sale_through_zero_closes_the_long_and_opens_a_short(self) -> None:
        change = apply_execution(10, Decimal("1000"), buy=False, shares=15, price=Decimal("90"))
        assert change.quantity == -5
        assert change.realized == Decimal("-100")
        assert change.reduced_long == 10
        assert change.opened_short == 5
        assert change.cost_basis == Decimal("-450")

    def test_covering_a_short_realizes_the_difference(self) -> None:
        change = apply_execution(-10, Decimal("-500"), buy=True, shares=10, price=Decimal("40"))
        assert change.quantity == 0
        assert change.realized == Decimal("100")
        assert change.cost_basis == 0

    @given(buy_price=prices, sell_price=prices, quantity=st.integers(1, 10_000))
    def test_a_round_trip_realizes_exactly_the_price_difference(
        self, buy_price: Decimal, sell_price: Decimal, quantity: int
    ) -> None:
        bought = apply_execution(0, Decimal(0), buy=True, shares=quantity, price=buy_price)
        sold = apply_execution(
            bought.quantity, bought.cost_basis, buy=False, shares=quantity, price=sell_price
        )
        assert sold.quantity == 0
        assert sold.realized == (sell_price - buy_price) * quantity
        assert sold.cost_basis == 0

    def test_cash_effect_of_purchases_and_sales(self) -> None:
        assert cash_effect("buy", Decimal("100"), Decimal("1")) == Decimal("-101")
        assert cash_effect("sell", Decimal("100"), Decimal("1")) == Decimal("99")
        assert cash_effect("sell_short", Decimal("100"), Decimal("1")) == Decimal("99")
