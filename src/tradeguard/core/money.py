"""Money and quantities as Decimal, never float."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from tradeguard.core.errors import InvalidInput

# ISO 4217 minor units for the currencies tradeguard settles in.
_MINOR_UNITS = {"USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "JPY": 0}


def to_decimal(value: object, *, field: str) -> Decimal:
    """Parse an amount from str, int or Decimal; refuse floats, NaN and infinities."""
    if isinstance(value, bool | float):
        # Floats have already lost precision by the time they reach us.
        raise InvalidInput(f"{field} must be a decimal string, not a binary float")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise InvalidInput(f"{field} is not a decimal number") from None
    else:
        raise InvalidInput(f"{field} must be a decimal string")
    if not result.is_finite():
        raise InvalidInput(f"{field} must be a finite number")
    return result


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in one currency, quantized to the currency's minor unit."""

    amount: Decimal
    currency: str

    @classmethod
    def of(cls, amount: object, currency: str = "USD") -> Money:
        code = currency.upper()
        if code not in _MINOR_UNITS:
            raise InvalidInput(f"unsupported currency {currency!r}")
        value = to_decimal(amount, field="amount")
        exponent = Decimal(1).scaleb(-_MINOR_UNITS[code])
        quantized = value.quantize(exponent, rounding=ROUND_HALF_EVEN)
        if quantized != value:
            raise InvalidInput(f"amount has more decimal places than {code} allows")
        return cls(quantized, code)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidInput("cannot combine amounts in different currencies")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def quantity(value: object, *, field: str = "quantity") -> Decimal:
    """A positive share quantity (fractional shares allowed, up to 6 places)."""
    result = to_decimal(value, field=field)
    if result <= 0:
        raise InvalidInput(f"{field} must be positive")
    if result != result.quantize(Decimal("0.000001")):
        raise InvalidInput(f"{field} allows at most 6 decimal places")
    return result
