"""Trading HTTP API under /api/v1: a trader's own accounts, orders, positions, executions,
journal and locates, and the instrument list. Another user's ids answer 404."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from tradeguard.access.domain import Permission
from tradeguard.core.context import request_id_var
from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import AUTHENTICATED, CurrentPrincipal, guarded
from tradeguard.ledger.domain import Party
from tradeguard.risk.bands import price_band
from tradeguard.risk.domain import AccountType
from tradeguard.trading import repository
from tradeguard.trading import schemas as s
from tradeguard.trading.accounts import AccountView
from tradeguard.trading.container import TradingServices
from tradeguard.trading.desk import ReplaceRequest
from tradeguard.trading.locates import LocateRefused
from tradeguard.trading.models import (
    Execution,
    Instrument,
    Locate,
    Order,
    RiskAlert,
    TradingAccount,
    TradingHalt,
)
from tradeguard.trading.orders import OrderRequest, PlaceOutcome, rejection
from tradeguard.trading.reference import normalize_symbol

router = APIRouter(prefix="/api/v1", tags=["trading"])

IdPath = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
SymbolPath = Annotated[str, Path(pattern=r"^[A-Za-z][A-Za-z0-9.]{0,11}$")]
Limit = Annotated[int, Query(ge=1, le=500)]


def trading(request: Request) -> TradingServices:
    services: TradingServices = request.app.state.trading
    return services


def user(principal: object) -> Party:
    return Party("user", principal.user_id)  # type: ignore[attr-defined]


# Mapping --------------------------------------------------------------------------------------


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
        filled_notional=str(order.filled_notional),
        fees=str(order.fees),
        day_trade=order.day_trade,
        cancel_reason=order.cancel_reason,
        reject_code=order.reject_code,
        reject_detail=order.reject_detail,
        replaces_order_id=order.replaces_order_id,
        replaced_by_order_id=order.replaced_by_order_id,
        created_at=s.iso(order.created_ns) or "",
        updated_at=s.iso(order.updated_ns) or "",
    )


def account_out(view: AccountView) -> s.AccountOut:
    state = view.state
    account = view.account
    return s.AccountOut(
        id=account.id,
        number=account.number,
        type=account.account_type,
        status=account.status,
        trading_state=account.trading_state,
        currency=account.currency,
        balances=s.BalancesOut(
            cash_settled=str(state.cash_settled),
            cash_unsettled=str(state.cash_unsettled),
            cash_held=str(state.cash_held),
            long_market_value=str(state.long_market_value),
            short_market_value=str(state.short_market_value),
            equity=str(state.equity),
            buying_power=str(view.buying_power),
        ),
        day_trades_in_window=view.day_trades,
        pattern_day_trader=view.pdt_flagged,
        created_at=s.iso(account.created_ns) or "",
    )


def account_summary(account: TradingAccount) -> s.AccountSummaryOut:
    return s.AccountSummaryOut(
        id=account.id,
        number=account.number,
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
        price=str(row.price),
        notional=str(row.notional),
        fee=str(row.fee),
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
    band = price_band(reference, row.band_tier, row.tick_size) if reference is not None else None
    bid, ask = services.deps.market.nbbo(row.symbol)
    return s.InstrumentOut(
        symbol=row.symbol,
        name=row.name,
        currency=row.currency,
        tick_size=str(row.tick_size),
        lot_size=int(row.lot_size),
        min_quantity=row.min_quantity,
        max_quantity=row.max_quantity,
        band_tier=row.band_tier,
        reference_price=s.money(reference),
        price_band=(str(band[0]), str(band[1])) if band else None,
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
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.reference.get(session, symbol)
        halted = {h.target for h in await services.halts.active(session) if h.scope != "account"}
    return instrument_out(services, row, halted)


@router.get("/market/halts", **guarded(AUTHENTICATED))
async def market_halts(request: Request) -> list[s.HaltOut]:
    """Market-wide and symbol halts in force (account halts are private)."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.halts.active(session)
    return [halt_out(r) for r in rows if r.scope != "account"]


# Accounts ---------------------------------------------------------------------------------------


@router.get("/accounts", **guarded(Permission.ACCOUNT_VIEW))
async def list_accounts(request: Request, principal: CurrentPrincipal) -> list[s.AccountOut]:
    """Your trading accounts with balances derived from the money journal."""
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.accounts.list_for(session, principal.user_id)
        return [account_out(await services.accounts.view(session, row)) for row in rows]


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
    return account_out(view)


@router.get("/accounts/{account_id}", **guarded(Permission.ACCOUNT_VIEW))
async def get_account(
    account_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.AccountOut:
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.accounts.owned(session, account_id, principal.user_id)
        return account_out(await services.accounts.view(session, row))


@router.get("/accounts/{account_id}/positions", **guarded(Permission.ACCOUNT_VIEW))
async def list_positions(
    account_id: IdPath, request: Request, principal: CurrentPrincipal
) -> list[s.PositionOut]:
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.accounts.owned(session, account_id, principal.user_id)
        view = await services.accounts.view(session, row)
    return [
        s.PositionOut(
            symbol=p.symbol,
            quantity=p.quantity,
            held_for_sale=p.held_for_sale,
            average_price=s.money(p.average_price.quantize(Decimal("0.0001")) if p.average_price else None),
            mark_price=s.money(p.mark_price),
            market_value=s.money(p.market_value),
            unrealized_pnl=s.money(p.unrealized_pnl),
            realized_pnl=str(p.realized_pnl),
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
    services = trading(request)
    async with unit_of_work(services.sessions) as session:
        await services.accounts.owned(session, account_id, principal.user_id)
        rows = await repository.executions_of(session, account_id, limit=limit)
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
        txns = await repository.journal_page(session, account_id, before_ns=None, limit=limit)
        entries = await repository.entries_of(session, [t.id for t in txns])
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


@router.post("/accounts/{account_id}/orders", status_code=201, **guarded(Permission.ORDER_PLACE))
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
    )
    return placed(outcome, response)


@router.get("/accounts/{account_id}/orders/{order_id}", **guarded(Permission.ACCOUNT_VIEW))
async def get_order(
    account_id: IdPath, order_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.OrderOut:
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


# Locates --------------------------------------------------------------------------------------------


@router.get("/accounts/{account_id}/locates", **guarded(Permission.ACCOUNT_VIEW))
async def list_locates(
    account_id: IdPath, request: Request, principal: CurrentPrincipal
) -> list[s.LocateOut]:
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


__all__ = ["alert_out", "halt_out", "router"]
