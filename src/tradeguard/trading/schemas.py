"""API request and response bodies for trading (pydantic v2, extra fields refused).

Money and prices travel as decimal strings, never JSON numbers: a binary float has lost
precision before the server sees it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tradeguard.core.clock import ns_to_iso

PriceStr = Annotated[
    str,
    Field(
        pattern=r"^(0|[1-9]\d{0,6})(\.\d{1,4})?$",
        description='A price as a decimal string, e.g. "187.25" (at most 4 decimals).',
        examples=["187.25"],
    ),
]
AmountStr = Annotated[
    str,
    Field(
        pattern=r"^-?(0|[1-9]\d{0,8})(\.\d{1,2})?$",
        description="An amount in USD as a decimal string with at most 2 decimals.",
        examples=["25000.00"],
    ),
]
Symbol = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9.]{0,11}$", examples=["AAPL"])]
ClientOrderId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Your id for the order, unique per account: a retry with the same id "
        "returns the original order, never a second one.",
    ),
]
Quantity = Annotated[int, Field(ge=1, le=1_000_000_000, strict=True)]
Reason = Annotated[str, Field(min_length=3, max_length=500)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def money(value: Decimal | None) -> str | None:
    """A decimal string with at least two decimals and no exponent or padding beyond them:
    "100000.00", "1995.05", "510.425" (sub-cent amounts are real: per-share commissions)."""
    if value is None:
        return None
    if value == 0:
        value = abs(value)  # no "-0.00"
    text = format(value, "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def iso(ns: int | None) -> str | None:
    return None if ns is None else ns_to_iso(ns)


# Requests -------------------------------------------------------------------------------------


class OrderIn(Strict):
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Literal["buy", "sell", "sell_short"]
    type: Literal["market", "limit"]
    time_in_force: Literal["day", "ioc", "gtc"] = "day"
    quantity: Quantity
    limit_price: PriceStr | None = None


class ReplaceIn(Strict):
    client_order_id: ClientOrderId
    quantity: Quantity = Field(description="Shares still to trade after the replace.")
    limit_price: PriceStr | None = None


class OpenAccountIn(Strict):
    type: Literal["cash", "margin"] = "cash"


class LocateIn(Strict):
    symbol: Symbol
    quantity: Quantity
    preborrow: bool = False


class InstrumentIn(Strict):
    symbol: Symbol
    name: Annotated[str, Field(min_length=1, max_length=120)]
    tick_size: PriceStr = "0.01"
    lot_size: Annotated[int, Field(ge=1, le=10_000)] = 1
    min_quantity: Annotated[int, Field(ge=1)] = 1
    max_quantity: Annotated[int, Field(ge=1, le=1_000_000_000)] = 1_000_000
    reference_price: PriceStr | None = None
    band_tier: Literal[1, 2] = 2
    tradable: bool = True
    threshold_security: bool = False
    easy_to_borrow: bool = False


class InstrumentPatch(Strict):
    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    tick_size: PriceStr | None = None
    lot_size: Annotated[int, Field(ge=1, le=10_000)] | None = None
    min_quantity: Annotated[int, Field(ge=1)] | None = None
    max_quantity: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    reference_price: PriceStr | None = None
    band_tier: Literal[1, 2] | None = None
    tradable: bool | None = None
    threshold_security: bool | None = None
    easy_to_borrow: bool | None = None


class ReasonIn(Strict):
    reason: Reason


class HaltIn(Strict):
    scope: Literal["market", "symbol", "account"]
    target: Annotated[str, Field(max_length=36)] = "*"
    reason: Reason


class AdjustmentIn(Strict):
    amount: AmountStr
    reason: Reason


class AccountPatch(Strict):
    status: Literal["pending", "active", "closing_only", "suspended", "closed"] | None = None
    trading_state: Literal["ACTIVE", "REDUCING"] | None = None
    reason: Reason


class LimitsIn(Strict):
    max_order_quantity: Annotated[int, Field(ge=1)] | None = None
    max_order_notional: AmountStr | None = None
    position_limit: Annotated[int, Field(ge=1)] | None = None
    gross_exposure_cap: AmountStr | None = None
    daily_loss_limit: AmountStr | None = None
    max_orders_per_second: Annotated[int, Field(ge=1, le=64)] | None = None
    reason: Reason


class StaffAccountIn(Strict):
    user_id: Annotated[str, Field(min_length=36, max_length=36)]
    type: Literal["cash", "margin"] = "cash"


class StaffLocateIn(Strict):
    symbol: Symbol
    quantity: Quantity
    kind: Literal["locate", "preborrow"] = "locate"
    source: Annotated[str, Field(min_length=2, max_length=120)]
    expires_in_seconds: Annotated[int, Field(ge=60, le=7 * 86_400)] = 86_400


class InventoryIn(Strict):
    available: Annotated[int, Field(ge=0, le=1_000_000_000)]


# Responses ------------------------------------------------------------------------------------


class OrderOut(Strict):
    id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    quantity: int
    limit_price: str | None
    status: str
    filled_quantity: int
    average_price: str | None
    filled_notional: str
    fees: str
    day_trade: bool
    cancel_reason: str | None
    reject_code: str | None
    reject_detail: str | None
    replaces_order_id: str | None
    replaced_by_order_id: str | None
    created_at: str
    updated_at: str


class BalancesOut(Strict):
    cash_settled: str
    cash_unsettled: str
    cash_held: str
    # Withdrawals requested and not yet paid or given back (funds/): out of reach already.
    cash_withdrawing: str
    long_market_value: str
    short_market_value: str
    equity: str
    buying_power: str


class LimitsOut(Strict):
    """The pre-trade limits in force for the account (the firm's, or its overrides)."""

    max_order_quantity: int
    max_order_notional: str
    max_orders_per_second: int
    position_limit: int
    gross_exposure_cap: str
    daily_loss_limit: str


class AccountOut(Strict):
    id: str
    number: str
    type: str
    status: str
    trading_state: str
    currency: str
    balances: BalancesOut
    day_trades_in_window: int = Field(description="Day trades in the last five business days.")
    pattern_day_trader: bool
    limits: LimitsOut
    created_at: str


class AccountSummaryOut(Strict):
    id: str
    number: str
    user_id: str
    type: str
    status: str
    trading_state: str
    created_at: str


class PositionOut(Strict):
    symbol: str
    quantity: int
    held_for_sale: int
    average_price: str | None
    mark_price: str | None
    market_value: str | None
    unrealized_pnl: str | None
    realized_pnl: str


class ExecutionOut(Strict):
    id: str
    order_id: str
    symbol: str
    side: str
    quantity: int
    price: str
    notional: str
    fee: str
    liquidity: str
    executed_at: str
    trading_date: str
    settlement_date: str
    settled: bool


class EntryOut(Strict):
    book: str
    asset: str
    phase: str
    amount: str


class MovementOut(Strict):
    id: str
    kind: str
    memo: str
    order_id: str | None
    execution_id: str | None
    posted_at: str
    entries: list[EntryOut]


class InstrumentOut(Strict):
    symbol: str
    name: str
    currency: str
    tick_size: str
    lot_size: int
    min_quantity: int
    max_quantity: int
    band_tier: int
    reference_price: str | None
    price_band: tuple[str, str] | None = Field(
        description="LULD-style collar: limit prices outside it are refused."
    )
    bid: str | None
    ask: str | None
    tradable: bool
    restricted: bool
    threshold_security: bool
    easy_to_borrow: bool
    halted: bool


class LocateOut(Strict):
    id: str
    symbol: str
    kind: str
    quantity: int
    used_quantity: int
    source: str
    expires_at: str
    created_at: str


class HaltOut(Strict):
    id: str
    scope: str
    target: str
    reason: str
    halted_by: str
    halted_at: str
    cancelled_orders: int
    resumed_by: str | None
    resumed_at: str | None
    resume_reason: str | None


class MarketHaltOut(Strict):
    """A halt in force as the market sees it (who halted it is for staff only)."""

    scope: str
    target: str
    reason: str
    halted_at: str


class RestrictedOut(Strict):
    symbol: str
    reason: str
    added_by: str
    added_at: str


class AlertOut(Strict):
    id: str
    kind: str
    severity: str
    account_id: str | None
    symbol: str | None
    detail: dict[str, object]
    created_at: str
    resolved: bool


class ReconcileOut(Strict):
    ok: bool
    transactions: int
    books: int
    positions: int
    orders: int
    executions: int
    problems: list[str]


class InventoryOut(Strict):
    symbol: str
    available: int
