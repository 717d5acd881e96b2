"""LULD Plan Appendix A percentage parameters and the collar built from them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.risk.bands import band_width, price_collar


@pytest.mark.spec("PRE-2", "REG-1")
class TestBandWidth:
    @pytest.mark.parametrize(
        ("reference", "tier", "width"),
        [
            ("100.00", 1, "5.0000"),  # above $3.00, Tier 1: 5%
            ("100.00", 2, "10.0000"),  # above $3.00, Tier 2: 10%
            ("3.01", 1, "0.1505"),  # just above $3.00
            ("3.00", 1, "0.6000"),  # $3.00 itself is in the 20% band
            ("3.00", 2, "0.6000"),
            ("0.75", 1, "0.1500"),  # $0.75 itself is in the 20% band
            ("0.74", 2, "0.15"),  # below $0.75: lesser of $0.15 and 75% (0.555)
            ("0.20", 1, "0.15"),  # 75% of $0.20 is exactly $0.15
            ("0.19", 1, "0.1425"),  # 75% is now the lesser
            ("0.10", 1, "0.075"),
        ],
    )
    def test_the_plan_table(self, reference: str, tier: int, width: str) -> None:
        assert band_width(Decimal(reference), tier) == Decimal(width)

    def test_only_tiers_1_and_2_exist(self) -> None:
        with pytest.raises(ValueError, match="tiers 1 and 2"):
            band_width(Decimal(10), 3)

    def test_a_reference_price_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            band_width(Decimal(0), 1)


@pytest.mark.spec("PRE-2", "REG-1")
class TestPriceCollar:
    @pytest.mark.parametrize(
        ("reference", "tier", "tick", "lower", "upper"),
        [
            ("100.00", 1, "0.01", "95.00", "105.00"),
            ("100.00", 2, "0.01", "90.00", "110.00"),
            ("10.01", 1, "0.01", "9.51", "10.51"),  # 9.5095 and 10.5105 rounded inward
            ("0.10", 1, "0.0001", "0.0250", "0.1750"),
            ("0.10", 1, "0.01", "0.03", "0.17"),  # 0.025 and 0.175 rounded inward
            ("0.01", 1, "0.01", "0.01", "0.01"),  # never below one tick
        ],
    )
    def test_edges_are_rounded_inward_to_the_tick(
        self, reference: str, tier: int, tick: str, lower: str, upper: str
    ) -> None:
        assert price_collar(Decimal(reference), tier, Decimal(tick)) == (
            Decimal(lower),
            Decimal(upper),
        )

    def test_a_tick_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="tick size is positive"):
            price_collar(Decimal(10), 1, Decimal(0))

    @given(
        reference=st.decimals(min_value="0.0001", max_value="5000", places=4),
        tier=st.sampled_from([1, 2]),
        tick=st.sampled_from([Decimal("0.0001"), Decimal("0.01"), Decimal("0.05")]),
    )
    def test_edges_are_on_the_grid_and_inside_the_band(
        self, reference: Decimal, tier: int, tick: Decimal
    ) -> None:
        lower, upper = price_collar(reference, tier, tick)
        width = band_width(reference, tier)

        assert lower % tick == 0
        assert upper % tick == 0
        assert lower >= tick
        assert lower >= reference - width
        assert upper <= reference + width
