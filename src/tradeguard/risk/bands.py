"""Price collars from the LULD Plan's percentage parameters (Plan Appendix A, section I).

The Limit Up-Limit Down Plan sets each NMS stock's price bands at a percentage around its
reference price, by tier and price:

| reference price            | Tier 1 (S&P 500, Russell 1000, some ETPs) | Tier 2 (others) |
|----------------------------|--------------------------------------------|-----------------|
| above $3.00                | 5%                                         | 10%             |
| $0.75 up to and incl. $3   | 20%                                        | 20%             |
| below $0.75                | lesser of $0.15 or 75%                     | same as Tier 1  |

A limit order priced outside these bands is almost certainly an error (or would be held or
rejected by the venue anyway), so the firm's erroneous-order control (SEC Rule
15c3-5(c)(1)(ii)) rejects it before it leaves. The Plan doubles the bands in the opening
and closing periods of the session; this collar does not: it is the firm's tighter control,
not a copy of the exchange's band.

Band edges are rounded inward to the instrument's tick, so a price at an edge is always a
valid, tradable price inside the band.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import lru_cache

_THREE_DOLLARS = Decimal("3.00")
_SEVENTY_FIVE_CENTS = Decimal("0.75")
_FIFTEEN_CENTS = Decimal("0.15")
_TIER_PERCENT = {1: Decimal("0.05"), 2: Decimal("0.10")}
_MID_PERCENT = Decimal("0.20")
_LOW_PERCENT = Decimal("0.75")


def band_width(reference_price: Decimal, tier: int) -> Decimal:
    """Distance from the reference price to each band edge (LULD Plan Appendix A)."""
    if tier not in _TIER_PERCENT:
        raise ValueError("the LULD Plan has tiers 1 and 2")
    if reference_price <= 0:
        raise ValueError("a reference price is positive")
    if reference_price > _THREE_DOLLARS:
        return reference_price * _TIER_PERCENT[tier]
    if reference_price >= _SEVENTY_FIVE_CENTS:
        return reference_price * _MID_PERCENT
    return min(_FIFTEEN_CENTS, reference_price * _LOW_PERCENT)


@lru_cache(maxsize=4096)
def price_collar(
    reference_price: Decimal, tier: int, tick_size: Decimal
) -> tuple[Decimal, Decimal]:
    """(lower, upper) prices a limit order may carry, both on the tick grid, inside the band."""
    if tick_size <= 0:
        raise ValueError("a tick size is positive")
    width = band_width(reference_price, tier)
    lower = ((reference_price - width) / tick_size).to_integral_value(ROUND_CEILING) * tick_size
    upper = ((reference_price + width) / tick_size).to_integral_value(ROUND_FLOOR) * tick_size
    # A band narrower than one tick around a very low price could round the lower edge to
    # zero; the lowest price an order may carry is one tick.
    return max(lower, tick_size), upper
