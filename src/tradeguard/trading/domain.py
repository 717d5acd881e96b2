"""Trading vocabulary and pure position arithmetic (no I/O)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

from tradeguard.ledger.canonical import canonical_bytes

ZERO = Decimal(0)
CENT = Decimal("0.01")


class OrderStatus(StrEnum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    REPLACED = "replaced"


OPEN_STATUSES = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


class CancelReason(StrEnum):
    """Why an order (or its remainder) stopped: shown to the user and audited."""

    USER = "user"
    IOC = "ioc"
    NO_LIQUIDITY = "no_liquidity"
    PRICE_PROTECTION = "price_protection"
    SELF_TRADE = "self_trade"
    HALT = "halt"
    EXPIRED = "expired"
    OPERATOR = "operator"
    REPLACED = "replaced"
    RESTRICTED = "restricted"
    ACCOUNT_STATUS = "account_status"


class HaltScope(StrEnum):
    MARKET = "market"
    SYMBOL = "symbol"
    ACCOUNT = "account"


MARKET_TARGET = "*"


class StaffAccountAction(StrEnum):
    """What a staff member did to a customer's trading account, as the customer's own access
    log names it (IAC-4; stable: the back office maps each to its customer-readable text)."""

    ACCOUNTS_LISTED = "trading_accounts_listed"
    ACCOUNT_VIEWED = "trading_account_viewed"
    ACCOUNT_OPENED = "trading_account_opened"
    CASH_ADJUSTED = "cash_adjusted"
    STATUS_CHANGED = "trading_account_status_changed"
    LIMITS_CHANGED = "trading_limits_changed"
    LOCATE_RECORDED = "locate_recorded"
    ORDER_CANCELLED = "order_cancelled_by_staff"
    ACCOUNT_HALTED = "trading_account_halted"
    ACCOUNT_RESUMED = "trading_account_resumed"


def round_money(amount: Decimal) -> Decimal:
    """Round to cents, half to even (banker's rounding, as settlement systems do)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def cash_effect(side: str, notional: Decimal, fee: Decimal) -> Decimal:
    """What an execution does to the account's cash: sales bring in, purchases pay out."""
    return (notional if side != "buy" else -notional) - fee


def request_hash(fields: dict[str, Any]) -> str:
    """Digest of an order request, so a retried client order id can be told from a reuse."""
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


@dataclass(frozen=True, slots=True)
class PositionChange:
    """A position after one execution, with the P&L it realized and what it opened today."""

    quantity: int
    cost_basis: Decimal
    realized: Decimal
    opened_long: int
    opened_short: int
    reduced_long: int
    reduced_short: int


def apply_execution(
    quantity: int, cost_basis: Decimal, *, buy: bool, shares: int, price: Decimal
) -> PositionChange:
    """Average-cost position accounting for one execution.

    `cost_basis` is the total cost of the open position (negative for a short: the proceeds
    received). Shares that close part of the position realize P&L against the average cost;
    shares beyond zero open a position on the other side at the execution price.
    """
    signed = shares if buy else -shares
    new_quantity = quantity + signed
    realized = ZERO
    opened_long = opened_short = reduced_long = reduced_short = 0
    if quantity == 0 or (quantity > 0) == buy:
        # Opening or adding to a position on the same side.
        cost = cost_basis + price * signed
        if buy:
            opened_long = shares
        else:
            opened_short = shares
        return PositionChange(new_quantity, cost, realized, opened_long, opened_short, 0, 0)
    closing = min(shares, abs(quantity))
    average = cost_basis / quantity
    if quantity > 0:
        realized = (price - average) * closing
        reduced_long = closing
    else:
        realized = (average - price) * closing
        reduced_short = closing
    remaining_cost = cost_basis - average * (closing if quantity > 0 else -closing)
    opening = shares - closing
    if opening:
        remaining_cost = price * (opening if buy else -opening)
        if buy:
            opened_long = opening
        else:
            opened_short = opening
    if new_quantity == 0:
        remaining_cost = ZERO
    return PositionChange(
        new_quantity,
        remaining_cost,
        realized,
        opened_long,
        opened_short,
        reduced_long,
        reduced_short,
    )
