"""Response shaping shared by the trading routes: ORM rows and views to API bodies."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated

from fastapi import Path, Query, Request, Response

from tradeguard.core.masking import mask_account_number
from tradeguard.ledger.domain import Party
from tradeguard.risk.bands import price_collar
from tradeguard.trading import schemas as s
from tradeguard.trading.accounts import AccountView
from tradeguard.trading.container import TradingServices
from tradeguard.trading.models import (
    Execution,
    Instrument,
    Locate,
    Order,
    RiskAlert,
    TradingAccount,
    TradingHalt,
)
from tradeguard.trading.orders import PlaceOutcome, rejection

IdPath = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
SymbolPath = Annotated[str, Path(pattern=r"^[A-Za-z][A-Za-z0-9.]{0,11}$")]
Limit = Annotated[int, Query(ge=1, le=500)]
AfterId = Annotated[
    str | None,
    Query(
        min_length=36,
        max_length=36,
        pattern=r"^[0-9a-f-]{36}$",
        description="The last id of the previous page",
    ),
]


def trading(request: Request) -> TradingServices:
    services: TradingServices = request.app.state.trading
    return services


def user(principal: object) -> Party:
    return Party("user", principal.user_id)  # type: ignore[attr-defined]


def order_out(order: Order) -> s.OrderOut:
    average = (
        (order.filled_notional / order.filled_quantity).quantize(Decimal("0.0001"))
        if order.filled_quantity
        else None
    )
    return s.OrderOut(
        id=order.id,
        client_order_id=order.client_order_id,
        account_id=order.account_id,
        symbol=order.symbol,
        side=order.side,
        type=order.order_type,
        time_in_force=order.time_in_force,
        quantity=order.quantity,
        limit_price=s.money(order.limit_price),
        status=order.status,
        filled_quantity=order.filled_quantity,
        average_price=s.money(average),
        filled_notional=s.money(order.filled_notional) or "",
        fees=s.money(order.fees) or "",
        day_trade=order.day_trade,
        cancel_reason=order.cancel_reason,
        reject_code=order.reject_code,
        reject_detail=order.reject_detail,
        replaces_order_id=order.replaces_order_id,
        replaced_by_order_id=order.replaced_by_order_id,
        created_at=s.iso(order.created_ns) or "",
        updated_at=s.iso(order.updated_ns) or "",
    )


def account_out(view: AccountView, *, full_number: bool = False) -> s.AccountOut:
    """The account with its balances. The number is masked (`TG****5678`) unless
    `full_number`: only the owner's own routes show it whole (staff reveal it through the
    back office's audited unmask, field `account_number:<account id>`)."""
    state = view.state
    account = view.account
    return s.AccountOut(
        id=account.id,
        number=account.number if full_number else mask_account_number(account.number),
        type=account.account_type,
        status=account.status,
        trading_state=account.trading_state,
        currency=account.currency,
        balances=s.BalancesOut(
            cash_settled=s.money(state.cash_settled) or "",
            cash_unsettled=s.money(state.cash_unsettled) or "",
            cash_held=s.money(state.cash_held) or "",
            cash_withdrawing=s.money(view.balances.cash_withdrawing) or "",
            long_market_value=s.money(state.long_market_value) or "",
            short_market_value=s.money(state.short_market_value) or "",
            equity=s.money(state.equity) or "",
            buying_power=s.money(view.buying_power) or "",
        ),
        day_trades_in_window=view.day_trades,
        pattern_day_trader=view.pdt_flagged,
        limits=s.LimitsOut(
            max_order_quantity=view.limits.max_order_quantity,
            max_order_notional=s.money(view.limits.max_order_notional) or "",
            max_orders_per_second=view.limits.max_orders_per_second,
            position_limit=view.limits.position_limit,
            gross_exposure_cap=s.money(view.limits.gross_exposure_cap) or "",
            daily_loss_limit=s.money(view.limits.daily_loss_limit) or "",
        ),
        created_at=s.iso(account.created_ns) or "",
    )


def account_summary(account: TradingAccount) -> s.AccountSummaryOut:
    """An account in a staff listing: its number masked, like the support view's."""
    return s.AccountSummaryOut(
        id=account.id,
        number=mask_account_number(account.number),
        user_id=account.user_id,
        type=account.account_type,
        status=account.status,
        trading_state=account.trading_state,
        created_at=s.iso(account.created_ns) or "",
    )


def execution_out(row: Execution) -> s.ExecutionOut:
    return s.ExecutionOut(
        id=row.id,
        order_id=row.order_id,
        symbol=row.symbol,
        side=row.side,
        quantity=row.quantity,
        price=s.money(row.price) or "",
        notional=s.money(row.notional) or "",
        fee=s.money(row.fee) or "",
        liquidity=row.liquidity,
        executed_at=s.iso(row.executed_ns) or "",
        trading_date=row.trading_date,
        settlement_date=row.settlement_date,
        settled=row.settled_ns is not None,
    )


def locate_out(row: Locate) -> s.LocateOut:
    return s.LocateOut(
        id=row.id,
        symbol=row.symbol,
        kind=row.kind,
        quantity=row.quantity,
        used_quantity=row.used_quantity,
        source=row.source,
        expires_at=s.iso(row.expires_ns) or "",
        created_at=s.iso(row.created_ns) or "",
    )


def halt_out(row: TradingHalt) -> s.HaltOut:
    return s.HaltOut(
        id=row.id,
        scope=row.scope,
        target=row.target,
        reason=row.reason,
        halted_by=row.halted_by,
        halted_at=s.iso(row.halted_ns) or "",
        cancelled_orders=row.cancelled_orders,
        resumed_by=row.resumed_by,
        resumed_at=s.iso(row.resumed_ns),
        resume_reason=row.resume_reason,
    )


def alert_out(row: RiskAlert) -> s.AlertOut:
    return s.AlertOut(
        id=row.id,
        kind=row.kind,
        severity=row.severity,
        account_id=row.account_id,
        symbol=row.symbol,
        detail=json.loads(row.detail),
        created_at=s.iso(row.created_ns) or "",
        resolved=row.resolved_ns is not None,
    )


def instrument_out(services: TradingServices, row: Instrument, halted: set[str]) -> s.InstrumentOut:
    info = services.deps.reference.get(row.symbol)
    reference = services.deps.market.reference_price(row.symbol) or row.reference_price
    band = price_collar(reference, row.band_tier, row.tick_size) if reference is not None else None
    bid, ask = services.deps.market.nbbo(row.symbol)
    return s.InstrumentOut(
        symbol=row.symbol,
        name=row.name,
        currency=row.currency,
        tick_size=s.money(row.tick_size) or "",
        lot_size=int(row.lot_size),
        min_quantity=row.min_quantity,
        max_quantity=row.max_quantity,
        band_tier=row.band_tier,
        reference_price=s.money(reference),
        price_band=(s.money(band[0]) or "", s.money(band[1]) or "") if band else None,
        bid=s.money(bid),
        ask=s.money(ask),
        tradable=row.status == "active",
        restricted=bool(info and info.restricted),
        threshold_security=row.threshold_security,
        easy_to_borrow=row.easy_to_borrow,
        halted=row.symbol in halted or "*" in halted,
    )


def placed(outcome: PlaceOutcome, response: Response) -> s.OrderOut:
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if not outcome.accepted:
        raise rejection(outcome.order)
    return order_out(outcome.order)
