"""Trading HTTP API under /api/v1: a trader's own accounts, orders, positions, executions,
journal and locates, and the instrument list. Another user's ids answer 404."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from tradeguard.access.domain import Permission
from tradeguard.core.context import request_id_var
from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import (
    AUTHENTICATED,
    CurrentPrincipal,
    audit_committed,
    guarded,
    pending_audit,
)
from tradeguard.risk.domain import AccountType
from tradeguard.trading import schemas as s
from tradeguard.trading.desk import ReplaceRequest
from tradeguard.trading.locates import LocateRefused
from tradeguard.trading.orders import OrderRequest
from tradeguard.trading.reference import normalize_symbol
from tradeguard.trading.views import (
    IdPath,
    Limit,
    SymbolPath,
    account_out,
    execution_out,
    instrument_out,
    locate_out,
    order_out,
    placed,
    trading,
    user,
)

router = APIRouter(prefix="/api/v1", tags=["trading"])

# Instruments and market status ------------------------------------------------------------------


@router.get("/instruments", **guarded(AUTHENTICATED))
async def list_instruments(request: Request) -> list[s.InstrumentOut]:
    """Tradable instruments with their live quote and price collar."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.reference.list(session)
        halted = {h.target for h in await services.halts.active(session) if h.scope != "account"}
    return [instrument_out(services, row, halted) for row in rows]


@router.get("/instruments/{symbol}", **guarded(AUTHENTICATED))
async def get_instrument(symbol: SymbolPath, request: Request) -> s.InstrumentOut:
    """One instrument: trading attributes, live quote and price collar."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.reference.get(session, symbol)
        halted = {h.target for h in await services.halts.active(session) if h.scope != "account"}
    return instrument_out(services, row, halted)


@router.get("/market/halts", **guarded(AUTHENTICATED))
async def market_halts(request: Request) -> list[s.MarketHaltOut]:
    """Market-wide and symbol halts in force (account halts are private)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.halts.active(session)
    return [
        s.MarketHaltOut(
            scope=r.scope, target=r.target, reason=r.reason, halted_at=s.iso(r.halted_ns) or ""
        )
        for r in rows
        if r.scope != "account"
    ]


# Accounts ---------------------------------------------------------------------------------------


@router.get("/accounts", **guarded(Permission.ACCOUNT_VIEW))
async def list_accounts(request: Request, principal: CurrentPrincipal) -> list[s.AccountOut]:
    """Your trading accounts with balances derived from the money journal."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.accounts.list_for(session, principal.user_id)
        return [
            account_out(await services.accounts.view(session, row), full_number=True)
            for row in rows
        ]


@router.post("/accounts", status_code=201, **guarded(Permission.ORDER_PLACE))
async def open_account(
    body: s.OpenAccountIn, request: Request, principal: CurrentPrincipal
) -> s.AccountOut:
    """Open a cash or margin account (short selling needs margin)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.accounts.open_account(
            session,
            user_id=principal.user_id,
            account_type=AccountType(body.type),
            actor=user(principal),
            request_id=request_id_var.get(),
        )
        view = await services.accounts.view(session, row)
    services.hub.account_opened(principal.user_id, row.id)
    return account_out(view, full_number=True)


@router.get("/accounts/{account_id}", **guarded(Permission.ACCOUNT_VIEW))
async def get_account(
    account_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.AccountOut:
    """One of your accounts with balances, buying power and PDT day-trade count."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.accounts.owned(session, account_id, principal.user_id)
        return account_out(await services.accounts.view(session, row), full_number=True)


@router.get("/accounts/{account_id}/positions", **guarded(Permission.ACCOUNT_VIEW))
async def list_positions(
    account_id: IdPath, request: Request, principal: CurrentPrincipal
) -> list[s.PositionOut]:
    """Positions with average price, mark, market value and P&L."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.accounts.owned(session, account_id, principal.user_id)
        view = await services.accounts.view(session, row)
    return [
        s.PositionOut(
            symbol=p.symbol,
            quantity=p.quantity,
            held_for_sale=p.held_for_sale,
            average_price=s.money(
                p.average_price.quantize(Decimal("0.0001")) if p.average_price else None
            ),
            mark_price=s.money(p.mark_price),
            market_value=s.money(p.market_value),
            unrealized_pnl=s.money(p.unrealized_pnl),
            realized_pnl=s.money(p.realized_pnl) or "",
        )
        for p in view.positions
    ]


@router.get("/accounts/{account_id}/executions", **guarded(Permission.ACCOUNT_VIEW))
async def list_executions(
    account_id: IdPath,
    request: Request,
    principal: CurrentPrincipal,
    limit: Limit = 100,
) -> list[s.ExecutionOut]:
    """Executions (fills), newest first, with their settlement dates."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        await services.accounts.owned(session, account_id, principal.user_id)
        rows = await services.accounts.executions(session, account_id, limit=limit)
    return [execution_out(r) for r in rows]


@router.get("/accounts/{account_id}/journal", **guarded(Permission.ACCOUNT_VIEW))
async def list_journal(
    account_id: IdPath,
    request: Request,
    principal: CurrentPrincipal,
    limit: Limit = 100,
) -> list[s.MovementOut]:
    """Every movement of money and shares in the account, newest first, with its entries."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        await services.accounts.owned(session, account_id, principal.user_id)
        txns, entries = await services.accounts.journal(session, account_id, limit=limit)
    by_txn: dict[str, list[s.EntryOut]] = {}
    for e in entries:
        by_txn.setdefault(e.txn_id, []).append(
            s.EntryOut(book=e.book, asset=e.asset, phase=e.phase, amount=str(e.amount))
        )
    return [
        s.MovementOut(
            id=t.id,
            kind=t.kind,
            memo=t.memo,
            order_id=t.order_id,
            execution_id=t.execution_id,
            posted_at=s.iso(t.posted_ns) or "",
            entries=by_txn.get(t.id, []),
        )
        for t in txns
    ]


# Orders -------------------------------------------------------------------------------------------


@router.get("/accounts/{account_id}/orders", **guarded(Permission.ACCOUNT_VIEW))
async def list_orders(
    account_id: IdPath,
    request: Request,
    principal: CurrentPrincipal,
    open_only: Annotated[bool, Query(alias="open")] = False,
    limit: Limit = 100,
) -> list[s.OrderOut]:
    """Orders of an account, newest first (`open=true`: working orders only)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.orders.list(
            session,
            account_id=account_id,
            user_id=principal.user_id,
            open_only=open_only,
            before_ns=None,
            limit=limit,
        )
    return [order_out(r) for r in rows]


@router.post(
    "/accounts/{account_id}/orders",
    status_code=201,
    **guarded(Permission.ORDER_PLACE, audit_in_transaction=True),
)
async def place_order(
    account_id: IdPath,
    body: s.OrderIn,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
) -> s.OrderOut:
    """Place an order. Answered after it is committed; refused orders answer 422 with a
    stable `code` (e.g. RISK_BUYING_POWER). A retry with the same client_order_id returns
    the original order (header `Idempotent-Replayed: true`)."""
    services = trading(request)
    outcome = await services.desk.place(
        account_id=account_id,
        user_id=principal.user_id,
        request=OrderRequest(
            client_order_id=body.client_order_id,
            symbol=normalize_symbol(body.symbol),
            side=Side(body.side),
            order_type=OrderType(body.type),
            time_in_force=TimeInForce(body.time_in_force),
            quantity=body.quantity,
            limit_price=Decimal(body.limit_price) if body.limit_price is not None else None,
        ),
        actor=user(principal),
        request_id=request_id_var.get(),
        audit=pending_audit(request),
    )
    audit_committed(request)
    return placed(outcome, response)


@router.get("/accounts/{account_id}/orders/{order_id}", **guarded(Permission.ACCOUNT_VIEW))
async def get_order(
    account_id: IdPath, order_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.OrderOut:
    """One order as it stands now."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.orders.get_owned(
            session, account_id=account_id, order_id=order_id, user_id=principal.user_id
        )
    return order_out(row)


@router.delete("/accounts/{account_id}/orders/{order_id}", **guarded(Permission.ORDER_CANCEL))
async def cancel_order(
    account_id: IdPath, order_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.OrderOut:
    """Cancel an open order. Cancels always pass: halts and risk limits never block them."""
    services = trading(request)
    row = await services.desk.cancel(
        account_id=account_id,
        order_id=order_id,
        user_id=principal.user_id,
        actor=user(principal),
        request_id=request_id_var.get(),
    )
    return order_out(row)


@router.put("/accounts/{account_id}/orders/{order_id}", **guarded(Permission.ORDER_MODIFY))
async def replace_order(
    *,
    account_id: IdPath,
    order_id: IdPath,
    body: s.ReplaceIn,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
) -> s.OrderOut:
    """Cancel-replace: a new order (new client_order_id) takes the old one's place if it
    passes every pre-trade check; otherwise the old order stays as it was (422)."""
    services = trading(request)
    outcome = await services.desk.replace(
        account_id=account_id,
        order_id=order_id,
        user_id=principal.user_id,
        request=ReplaceRequest(
            client_order_id=body.client_order_id,
            quantity=body.quantity,
            limit_price=Decimal(body.limit_price) if body.limit_price is not None else None,
        ),
        actor=user(principal),
        request_id=request_id_var.get(),
    )
    return placed(outcome, response)


# Locates ------------------------------------------------------------------------------------------


@router.get("/accounts/{account_id}/locates", **guarded(Permission.ACCOUNT_VIEW))
async def list_locates(
    account_id: IdPath, request: Request, principal: CurrentPrincipal
) -> list[s.LocateOut]:
    """Reg SHO locates and pre-borrows of an account, newest first."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        await services.accounts.owned(session, account_id, principal.user_id)
        rows = await services.locates.list_for(session, account_id)
    return [locate_out(r) for r in rows]


@router.post("/accounts/{account_id}/locates", status_code=201, **guarded(Permission.ORDER_PLACE))
async def request_locate(
    account_id: IdPath, body: s.LocateIn, request: Request, principal: CurrentPrincipal
) -> s.LocateOut:
    """Ask the firm's stock-loan desk for a locate (Reg SHO 203(b)) or a pre-borrow."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        await services.accounts.owned(session, account_id, principal.user_id)
        row = await services.locates.request(
            session,
            account_id=account_id,
            symbol=normalize_symbol(body.symbol),
            quantity=body.quantity,
            preborrow=body.preborrow,
            actor=user(principal),
            request_id=request_id_var.get(),
        )
    if isinstance(row, LocateRefused):
        raise row
    return locate_out(row)
