"""Staff trading API under /api/v1/admin: reference data, the restricted list, kill switches,
accounts (open, adjust, status, limits, locates), alerts and reconciliation. Every change is
audited with its reason.

Every read or change of a customer's account is also a line in that customer's own access
log (IAC-4), written in the transaction of the read or change; without an access log
installed these routes refuse. Account numbers are shown masked.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import Permission, Role
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import NotFound
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import (
    CurrentPrincipal,
    Principal,
    guarded,
    identity_services,
    request_info,
)
from tradeguard.ledger.domain import Party
from tradeguard.risk.domain import AccountStatus, AccountType, TradingState
from tradeguard.trading import schemas as s
from tradeguard.trading.common import (
    StaffAccessLog,
    StaffAccessLogMissing,
    StaffActor,
    TradingInputError,
)
from tradeguard.trading.container import TradingServices
from tradeguard.trading.desk import AccountWork
from tradeguard.trading.domain import CancelReason, HaltScope, StaffAccountAction
from tradeguard.trading.events import TradingEvent
from tradeguard.trading.models import TradingAccount
from tradeguard.trading.reference import InstrumentSpec, normalize_symbol
from tradeguard.trading.views import (
    AfterId,
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


def staff_actor(request: Request, principal: Principal) -> StaffActor:
    return StaffActor(
        user_id=principal.user_id,
        role=principal.role.value,
        request_id=request_id_var.get(),
        ip=request_info(request).ip,
    )


def access_log(services: TradingServices) -> StaffAccessLog:
    """The customer's access log; 503 without one. Checked before anything is read, so a
    customer's account is never shown or changed by staff without the customer seeing it."""
    if services.staff_access_log is None:
        raise StaffAccessLogMissing(
            "staff account routes are off until the customer access log is installed"
        )
    return services.staff_access_log


class AccountAccess:
    """One staff request's lines in customers' access logs (IAC-4)."""

    def __init__(self, request: Request, principal: Principal) -> None:
        self.services = trading(request)
        self.log = access_log(self.services)
        self.staff = staff_actor(request, principal)

    async def record(
        self,
        session: AsyncSession,
        account: TradingAccount,
        action: StaffAccountAction,
        *,
        reason: str | None = None,
    ) -> None:
        """One line in the account owner's log, in the caller's transaction."""
        await self.log.record(
            session,
            customer_id=account.user_id,
            staff=self.staff,
            action=action,
            account_id=account.id,
            reason=reason,
        )


def halt_access_log(
    request: Request, principal: Principal, action: StaffAccountAction, reason: str
) -> AccountWork:
    """The owner's access-log line for an account halt or resume, in its transaction. The
    log is looked up only when an account is named: a market or symbol halt, the emergency
    kill switch, never waits on the back office."""
    services = trading(request)
    actor = staff_actor(request, principal)

    async def logged(session: AsyncSession, account: TradingAccount) -> None:
        await access_log(services).record(
            session,
            customer_id=account.user_id,
            staff=actor,
            action=action,
            account_id=account.id,
            reason=reason,
        )

    return logged


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
    account). Latched until resumed; cancels still pass. An account halt is a line, with
    the reason, in the owner's access log."""
    services = trading(request)
    logged = halt_access_log(request, principal, StaffAccountAction.ACCOUNT_HALTED, body.reason)
    outcome = await services.desk.halt(
        scope=HaltScope(body.scope),
        target=body.target,
        reason=body.reason,
        actor=staff(principal),
        request_id=request_id_var.get(),
        within=logged,
    )
    return halt_out(outcome.halt)


@router.post("/halts/resume", **guarded(Permission.ADMIN_CONFIG))
async def resume_halt(body: s.HaltIn, request: Request, principal: CurrentPrincipal) -> s.HaltOut:
    """Lift a halt (latched until now), with a reason (in the owner's access log for an
    account halt)."""
    services = trading(request)
    logged = halt_access_log(request, principal, StaffAccountAction.ACCOUNT_RESUMED, body.reason)
    halt = await services.desk.resume(
        scope=HaltScope(body.scope),
        target=body.target,
        reason=body.reason,
        actor=staff(principal),
        request_id=request_id_var.get(),
        within=logged,
    )
    return halt_out(halt)


# Accounts -----------------------------------------------------------------------------------------


@router.get("/accounts", **guarded(Permission.ADMIN_CONFIG))
async def list_all_accounts(
    request: Request,
    principal: CurrentPrincipal,
    user_id: Annotated[str | None, Query(max_length=36)] = None,
    after: AfterId = None,
    limit: Limit = 100,
) -> list[s.AccountSummaryOut]:
    """Trading accounts of every user (or of one, with `user_id`) in the order they were
    opened, `limit` at a time: pass the last id of a page as `after` for the next. Numbers
    masked; every customer on the page gets one line in their access log."""
    access = AccountAccess(request, principal)
    services = access.services
    async with unit_of_work(services.sessions) as session:
        rows = await services.accounts.page(
            session, user_id=user_id or None, after=after, limit=limit
        )
        owners = sorted({row.user_id for row in rows})
        await services.deps.audit(
            session,
            TradingEvent.ACCOUNTS_LISTED,
            actor=access.staff.party,
            subject=None,
            # The permission check names a `user_id` filter, not who was on the page.
            data={"user_id": user_id or None, "accounts": len(rows), "customers": owners},
            request_id=access.staff.request_id,
        )
        for owner in owners:
            await access.log.record(
                session,
                customer_id=owner,
                staff=access.staff,
                action=StaffAccountAction.ACCOUNTS_LISTED,
            )
    return [account_summary(r) for r in rows]


@router.post("/accounts", status_code=201, **guarded(Permission.ADMIN_CONFIG))
async def open_account_for(
    body: s.StaffAccountIn, request: Request, principal: CurrentPrincipal
) -> s.AccountOut:
    """Open a cash or margin account for a trader."""
    access = AccountAccess(request, principal)
    services = access.services
    async with unit_of_work(services.sessions) as session:
        role = await (await identity_services(request)).accounts.role_of(session, body.user_id)
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
        await access.record(session, row, StaffAccountAction.ACCOUNT_OPENED)
    services.hub.account_opened(body.user_id, row.id)
    return account_out(view)


@router.get("/accounts/{account_id}", **guarded(Permission.ADMIN_CONFIG))
async def get_any_account(
    account_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.AccountOut:
    """Any trading account with its balances (number masked; the view is in the owner's
    access log)."""
    access = AccountAccess(request, principal)
    services = access.services
    async with unit_of_work(services.sessions) as session:
        row = await services.accounts.get(session, account_id)
        view = await services.accounts.view(session, row)
        await access.record(session, row, StaffAccountAction.ACCOUNT_VIEWED)
    return account_out(view)


@router.post(
    "/accounts/{account_id}/adjustments", status_code=201, **guarded(Permission.ADMIN_CONFIG)
)
async def adjust_account(
    account_id: IdPath, body: s.AdjustmentIn, request: Request, principal: CurrentPrincipal
) -> s.AccountOut:
    """Credit or debit settled cash with a reason (demo cash, corrections); audited, and
    shown with the reason in the owner's access log."""
    access = AccountAccess(request, principal)
    services = access.services
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
        view = await services.accounts.view(session, row)
        await access.record(session, row, StaffAccountAction.CASH_ADJUSTED, reason=body.reason)
    return account_out(view)


@router.patch("/accounts/{account_id}", **guarded(Permission.ADMIN_CONFIG))
async def update_account(
    account_id: IdPath, body: s.AccountPatch, request: Request, principal: CurrentPrincipal
) -> s.AccountOut:
    """Change an account's status or trading state, with a reason (shown in the owner's
    access log)."""
    access = AccountAccess(request, principal)
    services = access.services

    async def logged(session: AsyncSession, account: TradingAccount) -> None:
        await access.record(session, account, StaffAccountAction.STATUS_CHANGED, reason=body.reason)

    row = await services.desk.set_account_status(
        account_id=account_id,
        status=AccountStatus(body.status) if body.status else None,
        trading_state=TradingState(body.trading_state) if body.trading_state else None,
        reason=body.reason,
        actor=staff(principal),
        request_id=request_id_var.get(),
        within=logged,
    )
    async with unit_of_work(services.sessions) as session:
        row = await services.accounts.get(session, row.id)
        return account_out(await services.accounts.view(session, row))


@router.put("/accounts/{account_id}/limits", **guarded(Permission.ADMIN_CONFIG))
async def set_account_limits(
    account_id: IdPath, body: s.LimitsIn, request: Request, principal: CurrentPrincipal
) -> s.AccountSummaryOut:
    """Replace the account's overrides (omitted or null: the firm default applies); the
    change and its reason are shown in the owner's access log."""
    access = AccountAccess(request, principal)
    services = access.services
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
        await access.record(session, row, StaffAccountAction.LIMITS_CHANGED, reason=body.reason)
    return account_summary(row)


@router.post("/accounts/{account_id}/locates", status_code=201, **guarded(Permission.ADMIN_CONFIG))
async def record_locate(
    account_id: IdPath, body: s.StaffLocateIn, request: Request, principal: CurrentPrincipal
) -> s.LocateOut:
    """Record a locate obtained from an outside lender (source and expiry kept)."""
    access = AccountAccess(request, principal)
    services = access.services
    async with unit_of_work(services.sessions) as session:
        account = await services.accounts.get(session, account_id)
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
        await access.record(session, account, StaffAccountAction.LOCATE_RECORDED)
    return locate_out(row)


@router.delete("/accounts/{account_id}/orders/{order_id}", **guarded(Permission.ADMIN_CONFIG))
async def operator_cancel(
    account_id: IdPath, order_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.OrderOut:
    """Cancel a customer's open order as the operator (shown in the owner's access log)."""
    access = AccountAccess(request, principal)

    async def logged(session: AsyncSession, account: TradingAccount) -> None:
        await access.record(session, account, StaffAccountAction.ORDER_CANCELLED)

    row = await access.services.desk.cancel(
        account_id=account_id,
        order_id=order_id,
        user_id=None,
        actor=staff(principal),
        reason=CancelReason.OPERATOR,
        request_id=request_id_var.get(),
        within=logged,
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
