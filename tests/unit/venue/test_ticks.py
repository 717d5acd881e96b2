"""Decimal prices to integer ticks and back."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeguard.core.errors import InvalidInput
from tradeguard.venue.ticks import from_ticks, to_ticks

TICKS = [Decimal("0.01"), Decimal("0.0001"), Decimal("0.05"), Decimal("0.25"), Decimal(1)]


class TestToTicks:
    def test_counts_whole_ticks_in_a_price(self) -> None:
        assert to_ticks(Decimal("187.25"), Decimal("0.01")) == 18_725
        assert to_ticks(Decimal("10.15"), Decimal("0.05")) == 203
        assert to_ticks(Decimal("1.5E+2"), Decimal("0.25")) == 600

    def test_trailing_zeros_do_not_matter(self) -> None:
        assert to_ticks(Decimal("5.100000"), Decimal("0.01")) == 510

    @pytest.mark.parametrize(
        ("price", "tick"),
        [("1.005", "0.01"), ("10.12", "0.05"), ("0.0001", "0.01"), ("100.00000000001", "0.01")],
    )
    def test_refuses_a_price_between_ticks_instead_of_rounding(self, price: str, tick: str) -> None:
        with pytest.raises(InvalidInput, match="not a multiple of the tick size"):
            to_ticks(Decimal(price), Decimal(tick))

    def test_is_exact_beyond_the_default_decimal_precision(self) -> None:
        # 40 significant digits: a 28-digit context would round the quotient to a whole number.
        with pytest.raises(InvalidInput):
            to_ticks(Decimal("1" * 38 + ".011"), Decimal("0.01"))
        assert to_ticks(Decimal("1" * 38 + ".01"), Decimal("0.01")) == int("1" * 38 + "01")

    @pytest.mark.parametrize("bad", [1.5, "1.5", None, Decimal("NaN"), Decimal("Infinity")])
    def test_refuses_a_price_that_is_not_a_finite_decimal(self, bad: object) -> None:
        with pytest.raises(InvalidInput, match="price must be a finite Decimal"):
            to_ticks(bad, Decimal("0.01"))  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [Decimal(0), Decimal("-0.01"), Decimal("NaN"), 0.01])
    def test_refuses_a_tick_size_that_is_not_positive(self, bad: object) -> None:
        with pytest.raises(InvalidInput, match="tick size"):
            to_ticks(Decimal(1), bad)  # type: ignore[arg-type]


class TestFromTicks:
    def test_gives_the_price_with_the_tick_sizes_places(self) -> None:
        assert str(from_ticks(18_725, Decimal("0.01"))) == "187.25"
        assert str(from_ticks(3, Decimal("0.05"))) == "0.15"

    @pytest.mark.parametrize("bad", [1.0, True, "3"])
    def test_refuses_anything_but_an_integer(self, bad: object) -> None:
        with pytest.raises(InvalidInput, match="ticks must be an integer"):
            from_ticks(bad, Decimal("0.01"))  # type: ignore[arg-type]

    def test_refuses_ticks_too_large_to_price_exactly(self) -> None:
        with pytest.raises(InvalidInput, match="out of range"):
            from_ticks(10**70 + 1, Decimal("0.01"))

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(ticks=st.integers(min_value=-(10**15), max_value=10**15), tick=st.sampled_from(TICKS))
    def test_round_trips_exactly(self, ticks: int, tick: Decimal) -> None:
        assert to_ticks(from_ticks(ticks, tick), tick) == ticks
