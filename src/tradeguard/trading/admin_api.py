"""Staff trading API under /api/v1/admin: reference data, the restricted list, kill switches,
accounts (open, adjust, status, limits, locates), alerts and reconciliation. Every change is
audited with its reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request

from tradeguard.access.domain import Permission, Role
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import NotFound
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import CurrentPrincipal, guarded, identity_services
from tradeguard.ledger.domain import Party
from tradeguard.risk.domain import AccountStatus, AccountType, TradingState
from tradeguard.trading import schemas as s
from tradeguard.trading.common import TradingInputError
from tradeguard.trading.domain import CancelReason, HaltScope
from tradeguard.trading.reference import InstrumentSpec, normalize_symbol
from tradeguard.trading.views import (
    IdPath,
    Limit,
    SymbolPath,
    account_out,
    account_summary,
    alert_out,
    halt_out,
    instrument_out,
    locate_out,
    order_out,
    trading,
)

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


def staff(principal: object) -> Party:
    return Party("staff", principal.user_id)  # type: ignore[attr-defined]


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _spec(body: s.InstrumentIn | s.InstrumentPatch) -> InstrumentSpec:
    """The attributes a create or update request names (None: unchanged on update)."""
    return InstrumentSpec(
        name=body.name,
        tick_size=_decimal(body.tick_size),
        lot_size=body.lot_size,
        min_quantity=body.min_quantity,
        max_quantity=body.max_quantity,
        reference_price=_decimal(body.reference_price),
        band_tier=body.band_tier,
        tradable=body.tradable,
        threshold_security=body.threshold_security,
        easy_to_borrow=body.easy_to_borrow,
    )


# Instruments and the restricted list ----------------------------------------------------------


@router.post("/instruments", status_code=201, **guarded(Permission.ADMIN_CONFIG))
async def create_instrument(
    body: s.InstrumentIn, request: Request, principal: CurrentPrincipal
) -> s.InstrumentOut:
    """Add a tradable instrument (audited)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.reference.create(
            session,
            symbol=body.symbol,
            spec=_spec(body),
            actor=staff(principal),
            request_id=request_id_var.get(),
        )
        await services.reference.refresh_cache(session)
    if services.venue is not None:
        services.venue.list_symbol(row.symbol, tick=row.tick_size, price=row.reference_price)
    return instrument_out(services, row, set())


@router.patch("/instruments/{symbol}", **guarded(Permission.ADMIN_CONFIG))
async def update_instrument(
    symbol: SymbolPath, body: s.InstrumentPatch, request: Request, principal: CurrentPrincipal
) -> s.InstrumentOut:
    """Change an instrument's trading attributes (audited)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.reference.update(
            session,
            symbol=symbol,
            spec=_spec(body),
            actor=staff(principal),
            request_id=request_id_var.get(),
        )
        await services.reference.refresh_cache(session)
        halted = {h.target for h in await services.halts.active(session) if h.scope != "account"}
    return instrument_out(services, row, halted)


@router.get("/restricted-list", **guarded(Permission.ADMIN_CONFIG))
async def list_restricted(request: Request) -> list[s.RestrictedOut]:
    """The firm's restricted list."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.reference.restricted(session)
    return [
        s.RestrictedOut(
            symbol=r.symbol, reason=r.reason, added_by=r.added_by, added_at=s.iso(r.added_ns) or ""
        )
        for r in rows
    ]


@router.put("/restricted-list/{symbol}", status_code=201, **guarded(Permission.ADMIN_CONFIG))
async def restrict_symbol(
    symbol: SymbolPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.RestrictedOut:
    """Put a symbol on the restricted list, with a reason."""
    services = trading(request)
    row = await services.desk.restrict(
        symbol=symbol, reason=body.reason, actor=staff(principal), request_id=request_id_var.get()
    )
    return s.RestrictedOut(
        symbol=row.symbol,
        reason=row.reason,
        added_by=row.added_by,
        added_at=s.iso(row.added_ns) or "",
    )


@router.delete("/restricted-list/{symbol}", status_code=204, **guarded(Permission.ADMIN_CONFIG))
async def unrestrict_symbol(
    symbol: SymbolPath,
    request: Request,
    principal: CurrentPrincipal,
    reason: Annotated[str, Query(min_length=3, max_length=500)],
) -> None:
    """Take a symbol off the restricted list, with a reason."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        await services.reference.unrestrict(
            session,
            symbol=symbol,
            reason=reason,
            actor=staff(principal),
            request_id=request_id_var.get(),
        )


# Kill switches ------------------------------------------------------------------------------------


@router.get("/halts", **guarded(Permission.ADMIN_CONFIG))
async def list_halts(request: Request, limit: Limit = 100) -> list[s.HaltOut]:
    """Halts, newest first (active ones have no `resumed_at`)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.halts.history(session, limit)
    return [halt_out(r) for r in rows]


@router.post("/halts", status_code=201, **guarded(Permission.ADMIN_CONFIG))
async def start_halt(body: s.HaltIn, request: Request, principal: CurrentPrincipal) -> s.HaltOut:
    """Kill switch: stop new orders at once and cancel resting ones (market, symbol or
    account). Latched until resumed; cancels still pass."""
    services = trading(request)
    outcome = await services.desk.halt(
        scope=HaltScope(body.scope),
        target=body.target,
        reason=body.reason,
        actor=staff(principal),
        request_id=request_id_var.get(),
    )
    return halt_out(outcome.halt)


@router.post("/halts/resume", **guarded(Permission.ADMIN_CONFIG))
async def resume_halt(body: s.HaltIn, request: Request, principal: CurrentPrincipal) -> s.HaltOut:
    """Lift a halt (latched until now), with a reason."""
    services = trading(request)
    halt = await services.desk.resume(
        scope=HaltScope(body.scope),
        target=body.target,
        reason=body.reason,
        actor=staff(principal),
        request_id=request_id_var.get(),
    )
    return halt_out(halt)


# Accounts -----------------------------------------------------------------------------------------


@router.get("/accounts", **guarded(Permission.ADMIN_CONFIG))
async def list_all_accounts(
    request: Request, user_id: Annotated[str | None, Query(max_length=36)] = None
) -> list[s.AccountSummaryOut]:
    """Trading accounts of every user (or of one, with `user_id`)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        rows = (
            await services.accounts.list_for(session, user_id)
            if user_id
            else await services.accounts.list_all(session)
        )
    return [account_summary(r) for r in rows]


@router.post("/accounts", status_code=201, **guarded(Permission.ADMIN_CONFIG))
async def open_account_for(
    body: s.StaffAccountIn, request: Request, principal: CurrentPrincipal
) -> s.AccountOut:
    """Open a cash or margin account for a trader."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        role = await identity_services(request).accounts.role_of(session, body.user_id)
        if role is None:
            raise NotFound("no such user")
        if role is not Role.TRADER:
            raise TradingInputError("only traders hold trading accounts")
        row = await services.accounts.open_account(
            session,
            user_id=body.user_id,
            account_type=AccountType(body.type),
            actor=staff(principal),
            request_id=request_id_var.get(),
        )
        view = await services.accounts.view(session, row)
    services.hub.account_opened(body.user_id, row.id)
    return account_out(view)


@router.get("/accounts/{account_id}", **guarded(Permission.ADMIN_CONFIG))
async def get_any_account(account_id: IdPath, request: Request) -> s.AccountOut:
    """Any trading account with its balances."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.accounts.get(session, account_id)
        return account_out(await services.accounts.view(session, row))


@router.post(
    "/accounts/{account_id}/adjustments", status_code=201, **guarded(Permission.ADMIN_CONFIG)
)
async def adjust_account(
    account_id: IdPath, body: s.AdjustmentIn, request: Request, principal: CurrentPrincipal
) -> s.AccountOut:
    """Credit or debit settled cash with a reason (demo cash, corrections); audited."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        await services.accounts.adjust(
            session,
            account_id=account_id,
            amount=Decimal(body.amount),
            reason=body.reason,
            actor=staff(principal),
            request_id=request_id_var.get(),
        )
        row = await services.accounts.get(session, account_id)
        return account_out(await services.accounts.view(session, row))


@router.patch("/accounts/{account_id}", **guarded(Permission.ADMIN_CONFIG))
async def update_account(
    account_id: IdPath, body: s.AccountPatch, request: Request, principal: CurrentPrincipal
) -> s.AccountOut:
    """Change an account's status or trading state, with a reason."""
    services = trading(request)
    row = await services.desk.set_account_status(
        account_id=account_id,
        status=AccountStatus(body.status) if body.status else None,
        trading_state=TradingState(body.trading_state) if body.trading_state else None,
        reason=body.reason,
        actor=staff(principal),
        request_id=request_id_var.get(),
    )
    async with unit_of_work(services.sessions) as session:
        row = await services.accounts.get(session, row.id)
        return account_out(await services.accounts.view(session, row))


@router.put("/accounts/{account_id}/limits", **guarded(Permission.ADMIN_CONFIG))
async def set_account_limits(
    account_id: IdPath, body: s.LimitsIn, request: Request, principal: CurrentPrincipal
) -> s.AccountSummaryOut:
    """Replace the account's overrides (omitted or null: the firm default applies)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.accounts.set_limits(
            session,
            account_id=account_id,
            limits={
                "max_order_quantity": body.max_order_quantity,
                "max_order_notional": _decimal(body.max_order_notional),
                "position_limit": body.position_limit,
                "gross_exposure_cap": _decimal(body.gross_exposure_cap),
                "daily_loss_limit": _decimal(body.daily_loss_limit),
                "max_orders_per_second": body.max_orders_per_second,
            },
            reason=body.reason,
            actor=staff(principal),
            request_id=request_id_var.get(),
        )
    return account_summary(row)


@router.post("/accounts/{account_id}/locates", status_code=201, **guarded(Permission.ADMIN_CONFIG))
async def record_locate(
    account_id: IdPath, body: s.StaffLocateIn, request: Request, principal: CurrentPrincipal
) -> s.LocateOut:
    """Record a locate obtained from an outside lender (source and expiry kept)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        await services.accounts.get(session, account_id)
        row = await services.locates.record(
            session,
            account_id=account_id,
            symbol=normalize_symbol(body.symbol),
            quantity=body.quantity,
            kind=body.kind,
            source=body.source,
            expires_ns=services.deps.clock.now_ns() + body.expires_in_seconds * 1_000_000_000,
            actor=staff(principal),
            request_id=request_id_var.get(),
        )
    return locate_out(row)


@router.delete("/accounts/{account_id}/orders/{order_id}", **guarded(Permission.ADMIN_CONFIG))
async def operator_cancel(
    account_id: IdPath, order_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.OrderOut:
    """Cancel a customer's open order as the operator."""
    services = trading(request)
    row = await services.desk.cancel(
        account_id=account_id,
        order_id=order_id,
        user_id=None,
        actor=staff(principal),
        reason=CancelReason.OPERATOR,
        request_id=request_id_var.get(),
    )
    return order_out(row)


@router.put("/stock-loan/{symbol}", **guarded(Permission.ADMIN_CONFIG))
async def set_stock_loan(
    symbol: SymbolPath, body: s.InventoryIn, request: Request, principal: CurrentPrincipal
) -> s.InventoryOut:
    """Shares the local stock-loan desk can lend (locates are checked against it)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.locates.set_inventory(
            session,
            symbol=normalize_symbol(symbol),
            available=body.available,
            actor=staff(principal),
        )
    return s.InventoryOut(symbol=row.symbol, available=row.available)


# Compliance ---------------------------------------------------------------------------------------


@router.get("/alerts", **guarded(Permission.COMPLIANCE_AUDIT))
async def list_alerts(
    request: Request,
    limit: Limit = 100,
    open_only: Annotated[bool, Query(alias="open")] = False,
) -> list[s.AlertOut]:
    """Risk alerts for the compliance desk (missed Reg SHO close-outs, ...)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.settlement.alerts(session, limit=limit, open_only=open_only)
    return [alert_out(r) for r in rows]


@router.post("/reconcile", **guarded(Permission.ADMIN_CONFIG))
async def reconcile(request: Request, principal: CurrentPrincipal) -> s.ReconcileOut:
    """Prove balances match the journal and the journal matches executions and orders."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        report = await services.reconciler.run(session, actor=staff(principal))
    return s.ReconcileOut(**report.as_json())
