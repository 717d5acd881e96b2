"""Decimal prices to integer ticks and back, exactly; the matching engine works in ticks."""

from __future__ import annotations

from decimal import Context, Decimal, Inexact, Rounded
from fractions import Fraction

from tradeguard.core.errors import InvalidInput

# Enough digits for any price a book can hold; a product that would still need rounding
# raises instead of silently changing the price.
_EXACT = Context(prec=60, traps=[Inexact, Rounded])


def _check_tick(tick: Decimal) -> None:
    if not isinstance(tick, Decimal) or not tick.is_finite() or tick <= 0:
        raise InvalidInput("tick size must be a positive finite Decimal")


def to_ticks(price: Decimal, tick: Decimal) -> int:
    """The whole number of ticks in `price`; a price between ticks is refused, never rounded."""
    _check_tick(tick)
    if not isinstance(price, Decimal) or not price.is_finite():
        # A float has already been rounded to binary before it got here (core.money).
        raise InvalidInput("price must be a finite Decimal")
    # Fractions are exact at any size, so no Decimal context can round the check away.
    ratio = Fraction(price) / Fraction(tick)
    if ratio.denominator != 1:
        raise InvalidInput(f"price {price} is not a multiple of the tick size {tick}")
    return ratio.numerator


def from_ticks(ticks: int, tick: Decimal) -> Decimal:
    """The Decimal price of `ticks` ticks, with the tick size's number of decimal places."""
    _check_tick(tick)
    if isinstance(ticks, bool) or not isinstance(ticks, int):
        raise InvalidInput("ticks must be an integer")
    try:
        return _EXACT.multiply(tick, Decimal(ticks))
    except (Inexact, Rounded):
        raise InvalidInput("ticks are out of range for a price") from None
