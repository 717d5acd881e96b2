"""`tradeguard trading`: instruments, accounts, orders, halts, reconciliation, settlement.

Commands change the database directly and are audited as the operator; a running server
notices (it watches the trading-control version) and reloads reference data, halts and its
order books within a fraction of a second.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import Role
from tradeguard.backoffice.container import build_backoffice, install_staff_access_log
from tradeguard.cli.bootstrap import existing_settings
from tradeguard.cli.common import (
    DataDirOption,
    console,
    fail,
    operator_party,
    os_operator,
    run_async,
)
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.ids import IdGenerator
from tradeguard.core.masking import mask_account_number
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.kyc.onboarding.container import build_onboarding
from tradeguard.ledger.domain import Party
from tradeguard.risk.domain import AccountStatus, AccountType, TradingState
from tradeguard.trading.common import StaffAccessLog, StaffActor
from tradeguard.trading.container import TradingServices, build_trading
from tradeguard.trading.domain import CancelReason, HaltScope, StaffAccountAction
from tradeguard.trading.events import TradingEvent
from tradeguard.trading.models import TradingAccount
from tradeguard.trading.reference import InstrumentSpec

T = TypeVar("T")

app = typer.Typer(
    help="Trading: instruments, accounts, orders, kill switches, reconciliation.",
    no_args_is_help=True,
)
instruments_app = typer.Typer(help="Reference data: instruments.", no_args_is_help=True)
restricted_app = typer.Typer(help="The firm's restricted list.", no_args_is_help=True)
accounts_app = typer.Typer(help="Trading accounts.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders.", no_args_is_help=True)
app.add_typer(instruments_app, name="instruments")
app.add_typer(restricted_app, name="restricted")
app.add_typer(accounts_app, name="accounts")
app.add_typer(orders_app, name="orders")


def _reason(value: str) -> str:
    if len(" ".join(value.split())) < 3:
        raise typer.BadParameter("give a reason of at least 3 characters (it is audited)")
    return value


ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (kept in the audit ledger).", callback=_reason)
]


def _with_trading(data_dir: Path | None, work: Callable[[TradingServices], Awaitable[T]]) -> T:
    settings = existing_settings(data_dir)

    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
            ids = IdGenerator(clock)
            sessions = session_factory(engine)
            services = build_trading(
                settings, clock=clock, ids=ids, sessions=sessions, with_venue=False
            )
            # What the operator reads or changes of a customer's account shows in that
            # customer's access log (IAC-4), as it does over the staff API.
            identity = await start_identity(settings, clock=clock, ids=ids, sessions=sessions)
            install_staff_access_log(services, build_backoffice(identity, services.accounts))
            # KYC-2: accounts opened here wait for an approved application as over the API.
            build_onboarding(
                settings, identity=identity, accounts=services.accounts, sessions=sessions
            )
            async with unit_of_work(services.sessions) as session:
                await services.reference.refresh_cache(session)
            return await work(services)
        finally:
            await engine.dispose()

    return run_async(run())


def _access_log(services: TradingServices) -> StaffAccessLog:
    log = services.staff_access_log
    if log is None:  # pragma: no cover - _with_trading installs it
        fail("the customer access log is not available")
    return log


async def _logged(
    services: TradingServices,
    session: AsyncSession,
    account: TradingAccount,
    action: StaffAccountAction,
    reason: str | None = None,
) -> None:
    """One line in the account owner's access log, in the command's transaction."""
    await _access_log(services).record(
        session,
        customer_id=account.user_id,
        staff=StaffActor.console(os_operator()),
        action=action,
        account_id=account.id,
        reason=reason,
    )


def _decimal(value: str, name: str) -> Decimal:
    try:
        result = Decimal(value)
    except InvalidOperation:
        fail(f"{name} must be a decimal number like 187.25", code=2)
    if not result.is_finite():
        fail(f"{name} must be a finite number", code=2)
    return result


# Instruments -------------------------------------------------------------------------------------


@instruments_app.command("list")
def instruments_list(
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List instruments with their trading attributes."""

    async def work(services: TradingServices) -> list[dict[str, object]]:
        async with unit_of_work(services.sessions) as session:
            rows = await services.reference.list(session)
            restricted = {r.symbol for r in await services.reference.restricted(session)}
        return [
            {
                "symbol": r.symbol,
                "name": r.name,
                "tick_size": str(r.tick_size),
                "lot_size": int(r.lot_size),
                "reference_price": str(r.reference_price) if r.reference_price else None,
                "band_tier": r.band_tier,
                "status": r.status,
                "restricted": r.symbol in restricted,
                "threshold_security": r.threshold_security,
                "easy_to_borrow": r.easy_to_borrow,
            }
            for r in rows
        ]

    rows = _with_trading(data_dir, work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("symbol", "name", "tick", "lot", "ref price", "tier", "status", "flags")
    for r in rows:
        flags = [
            name
            for name, on in (
                ("restricted", r["restricted"]),
                ("threshold", r["threshold_security"]),
                ("ETB", r["easy_to_borrow"]),
            )
            if on
        ]
        table.add_row(
            str(r["symbol"]),
            str(r["name"]),
            str(r["tick_size"]),
            str(r["lot_size"]),
            str(r["reference_price"] or "-"),
            str(r["band_tier"]),
            str(r["status"]),
            ", ".join(flags),
        )
    console.print(table)


@instruments_app.command("add")
def instruments_add(
    symbol: Annotated[str, typer.Argument(help="Ticker, e.g. AAPL.")],
    name: Annotated[str, typer.Option(help="Issuer or fund name.")],
    price: Annotated[str, typer.Option(help="Reference price (the collar centre).")],
    tick: Annotated[str, typer.Option(help="Tick size.")] = "0.01",
    lot: Annotated[int, typer.Option(help="Lot size in shares.", min=1)] = 1,
    tier: Annotated[int, typer.Option(help="LULD tier (1 or 2).", min=1, max=2)] = 2,
    easy_to_borrow: Annotated[
        bool, typer.Option("--etb", help="On the easy-to-borrow list.")
    ] = False,
    threshold: Annotated[
        bool, typer.Option("--threshold", help="A Reg SHO threshold security.")
    ] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Add a tradable instrument (audited)."""
    spec = InstrumentSpec(
        name=name,
        tick_size=_decimal(tick, "--tick"),
        lot_size=lot,
        reference_price=_decimal(price, "--price"),
        band_tier=tier,
        easy_to_borrow=easy_to_borrow,
        threshold_security=threshold,
    )

    async def work(services: TradingServices) -> str:
        async with unit_of_work(services.sessions) as session:
            row = await services.reference.create(
                session, symbol=symbol, spec=spec, actor=operator_party()
            )
            return row.symbol

    console.print(f"added {_with_trading(data_dir, work)}")


@instruments_app.command("update")
def instruments_update(
    symbol: Annotated[str, typer.Argument(help="Ticker.")],
    price: Annotated[str | None, typer.Option(help="New reference price.")] = None,
    tradable: Annotated[bool | None, typer.Option("--tradable/--not-tradable")] = None,
    easy_to_borrow: Annotated[bool | None, typer.Option("--etb/--no-etb")] = None,
    threshold: Annotated[bool | None, typer.Option("--threshold/--no-threshold")] = None,
    tier: Annotated[int | None, typer.Option(min=1, max=2, help="LULD tier.")] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Change an instrument's trading attributes (audited)."""
    spec = InstrumentSpec(
        reference_price=_decimal(price, "--price") if price is not None else None,
        tradable=tradable,
        easy_to_borrow=easy_to_borrow,
        threshold_security=threshold,
        band_tier=tier,
    )

    async def work(services: TradingServices) -> None:
        async with unit_of_work(services.sessions) as session:
            await services.reference.update(
                session, symbol=symbol, spec=spec, actor=operator_party()
            )

    _with_trading(data_dir, work)
    console.print(f"updated {symbol.upper()}")


# Restricted list ----------------------------------------------------------------------------------


@restricted_app.command("add")
def restricted_add(
    symbol: Annotated[str, typer.Argument(help="Ticker.")],
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Put a symbol on the firm's restricted list (customers may only close positions)."""

    async def work(services: TradingServices) -> None:
        await services.desk.restrict(symbol=symbol, reason=reason, actor=operator_party())
        async with unit_of_work(services.sessions) as session:
            await services.reference.signal_change(session)

    _with_trading(data_dir, work)
    console.print(f"{symbol.upper()} is restricted")


@restricted_app.command("remove")
def restricted_remove(
    symbol: Annotated[str, typer.Argument(help="Ticker.")],
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Take a symbol off the restricted list."""

    async def work(services: TradingServices) -> None:
        async with unit_of_work(services.sessions) as session:
            await services.reference.unrestrict(
                session, symbol=symbol, reason=reason, actor=operator_party()
            )

    _with_trading(data_dir, work)
    console.print(f"{symbol.upper()} is no longer restricted")


# Accounts -----------------------------------------------------------------------------------------


@accounts_app.command("list")
def accounts_list(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """List trading accounts (numbers masked; each owner's access log shows the listing)."""

    async def work(services: TradingServices) -> list[tuple[str, ...]]:
        async with unit_of_work(services.sessions) as session:
            rows = await services.accounts.list_all(session)
            out: list[tuple[str, ...]] = []
            log = _access_log(services)
            owners = sorted({row.user_id for row in rows})
            # The console has no permission check to record the read: the listing is its
            # own ledger event, naming the customers on it (as the API's listing does).
            await services.deps.audit(
                session,
                TradingEvent.ACCOUNTS_LISTED,
                actor=operator_party(),
                data={"user_id": None, "accounts": len(rows), "customers": owners},
            )
            for owner in owners:
                await log.record(
                    session,
                    customer_id=owner,
                    staff=StaffActor.console(os_operator()),
                    action=StaffAccountAction.ACCOUNTS_LISTED,
                )
            for row in rows:
                view = await services.accounts.view(session, row)
                out.append(
                    (
                        row.id,
                        mask_account_number(row.number),
                        row.account_type,
                        row.status,
                        row.trading_state,
                        str(view.state.cash_settled),
                        str(view.buying_power),
                    )
                )
            return out

    table = Table("id", "number", "type", "status", "state", "settled cash", "buying power")
    for row in _with_trading(data_dir, work):
        table.add_row(*row)
    console.print(table)


@accounts_app.command("open")
def accounts_open(
    username: Annotated[str, typer.Argument(help="The trader's username or email.")],
    account_type: Annotated[
        AccountType, typer.Option("--type", help="cash or margin.")
    ] = AccountType.CASH,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Open a trading account for a trader (pending until their account application is
    approved, with kyc_required on)."""
    settings = existing_settings(data_dir)

    async def work(services: TradingServices) -> str:
        identity = await start_identity(
            settings, clock=services.deps.clock, ids=services.deps.ids, sessions=services.sessions
        )
        async with unit_of_work(services.sessions) as session:
            found = await identity.accounts.find_user(session, username)
            if found is None:
                fail(f"no user {username!r}", hint="create one with `tradeguard users create`")
            user_id, role = found
            if role is not Role.TRADER:
                fail("only traders hold trading accounts")
            row = await services.accounts.open_account(
                session, user_id=user_id, account_type=account_type, actor=operator_party()
            )
            await _logged(services, session, row, StaffAccountAction.ACCOUNT_OPENED)
            return f"{row.id} ({mask_account_number(row.number)}, {row.account_type})"

    console.print(f"opened {_with_trading(data_dir, work)}")


@accounts_app.command("adjust")
def accounts_adjust(
    account_id: Annotated[str, typer.Argument(help="Account id.")],
    amount: Annotated[str, typer.Argument(help="USD amount; negative debits.")],
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Credit or debit settled cash (audited, reason required)."""
    value = _decimal(amount, "AMOUNT")

    async def work(services: TradingServices) -> None:
        async with unit_of_work(services.sessions) as session:
            await services.accounts.adjust(
                session, account_id=account_id, amount=value, reason=reason, actor=operator_party()
            )
            account = await services.accounts.get(session, account_id)
            await _logged(services, session, account, StaffAccountAction.CASH_ADJUSTED, reason)

    _with_trading(data_dir, work)
    console.print(f"adjusted {account_id} by {value} USD")


@accounts_app.command("status")
def accounts_status(
    account_id: Annotated[str, typer.Argument(help="Account id.")],
    reason: ReasonOption,
    status: Annotated[AccountStatus | None, typer.Option(help="New account status.")] = None,
    trading_state: Annotated[
        TradingState | None, typer.Option(help="ACTIVE or REDUCING (halts: `trading halt`).")
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Change an account's status or trading state."""
    if status is None and trading_state is None:
        fail("give --status or --trading-state", code=2)

    async def work(services: TradingServices) -> None:
        async def logged(session: AsyncSession, account: TradingAccount) -> None:
            await _logged(services, session, account, StaffAccountAction.STATUS_CHANGED, reason)

        await services.desk.set_account_status(
            account_id=account_id,
            status=status,
            trading_state=trading_state,
            reason=reason,
            actor=operator_party(),
            within=logged,
        )
        async with unit_of_work(services.sessions) as session:
            await services.reference.signal_change(session)

    _with_trading(data_dir, work)
    console.print(f"updated {account_id}")


# Orders -------------------------------------------------------------------------------------------


@orders_app.command("list")
def orders_list(
    account_id: Annotated[str, typer.Argument(help="Account id.")],
    open_only: Annotated[bool, typer.Option("--open", help="Open orders only.")] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """List an account's orders, newest first."""

    async def work(services: TradingServices) -> list[tuple[str, ...]]:
        async with unit_of_work(services.sessions) as session:
            account = await services.accounts.get(session, account_id)
            await _logged(services, session, account, StaffAccountAction.ACCOUNT_VIEWED)
            await services.deps.audit(
                session,
                TradingEvent.ACCOUNT_VIEWED,
                actor=operator_party(),
                subject=Party("account", account.id),
                data={"view": "orders", "open_only": open_only, "customers": [account.user_id]},
            )
            rows = await services.orders.list(
                session,
                account_id=account_id,
                user_id=None,
                open_only=open_only,
                before_ns=None,
                limit=200,
            )
        return [
            (
                r.id,
                ns_to_iso(r.created_ns)[:23],
                r.symbol,
                r.side,
                r.order_type,
                str(r.quantity),
                str(r.limit_price or "-"),
                r.status,
                str(r.filled_quantity),
                r.reject_code or r.cancel_reason or "",
            )
            for r in rows
        ]

    table = Table(
        "id", "created", "symbol", "side", "type", "qty", "limit", "status", "filled", "why"
    )
    for row in _with_trading(data_dir, work):
        table.add_row(*row)
    console.print(table)


@orders_app.command("cancel")
def orders_cancel(
    account_id: Annotated[str, typer.Argument(help="Account id.")],
    order_id: Annotated[str, typer.Argument(help="Order id.")],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Cancel an open order as the operator (a running server drops it from its book)."""

    async def work(services: TradingServices) -> str:
        async def logged(session: AsyncSession, account: TradingAccount) -> None:
            await _logged(services, session, account, StaffAccountAction.ORDER_CANCELLED)

        row = await services.desk.cancel(
            account_id=account_id,
            order_id=order_id,
            user_id=None,
            actor=operator_party(),
            reason=CancelReason.OPERATOR,
            within=logged,
        )
        async with unit_of_work(services.sessions) as session:
            await services.reference.signal_change(session)
        return row.status

    console.print(f"order {order_id} is {_with_trading(data_dir, work)}")


# Kill switches ------------------------------------------------------------------------------------


def _scope(market: bool, symbol: str | None, account: str | None) -> tuple[HaltScope, str]:
    chosen = [x for x in (market, symbol, account) if x]
    if len(chosen) != 1:
        fail("choose exactly one of --market, --symbol SYMBOL, --account ACCOUNT_ID", code=2)
    if market:
        return HaltScope.MARKET, "*"
    if symbol:
        return HaltScope.SYMBOL, symbol
    assert account is not None  # noqa: S101 - one of the three was chosen
    return HaltScope.ACCOUNT, account


MarketOption = Annotated[bool, typer.Option("--market", help="Every symbol, every account.")]
SymbolOption = Annotated[str | None, typer.Option("--symbol", help="One symbol.")]
AccountOption = Annotated[str | None, typer.Option("--account", help="One account id.")]


@app.command("halt")
def halt(
    reason: ReasonOption,
    market: MarketOption = False,
    symbol: SymbolOption = None,
    account: AccountOption = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Kill switch: stop new orders and cancel resting ones; latched until `resume`."""
    scope, target = _scope(market, symbol, account)

    async def work(services: TradingServices) -> int:
        async def logged(session: AsyncSession, row: TradingAccount) -> None:
            await _logged(services, session, row, StaffAccountAction.ACCOUNT_HALTED, reason)

        outcome = await services.desk.halt(
            scope=scope, target=target, reason=reason, actor=operator_party(), within=logged
        )
        return len(outcome.cancelled)

    cancelled = _with_trading(data_dir, work)
    console.print(f"halted {scope.value} {target}: {cancelled} resting order(s) cancelled")


@app.command("resume")
def resume(
    reason: ReasonOption,
    market: MarketOption = False,
    symbol: SymbolOption = None,
    account: AccountOption = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Lift a halt (audited with the reason)."""
    scope, target = _scope(market, symbol, account)

    async def work(services: TradingServices) -> None:
        async def logged(session: AsyncSession, row: TradingAccount) -> None:
            await _logged(services, session, row, StaffAccountAction.ACCOUNT_RESUMED, reason)

        await services.desk.resume(
            scope=scope, target=target, reason=reason, actor=operator_party(), within=logged
        )

    _with_trading(data_dir, work)
    console.print(f"resumed {scope.value} {target}")


@app.command("halts")
def halts(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Halts in force and recently lifted, newest first."""

    async def work(services: TradingServices) -> list[tuple[str, ...]]:
        async with unit_of_work(services.sessions) as session:
            rows = await services.halts.history(session, 50)
        return [
            (
                r.scope,
                r.target,
                ns_to_iso(r.halted_ns)[:19],
                r.halted_by,
                r.reason,
                "in force" if r.resumed_ns is None else f"resumed {ns_to_iso(r.resumed_ns)[:19]}",
            )
            for r in rows
        ]

    table = Table("scope", "target", "halted", "by", "reason", "state")
    for row in _with_trading(data_dir, work):
        table.add_row(*row)
    console.print(table)


# Books --------------------------------------------------------------------------------------------


@app.command("reconcile")
def reconcile(
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Prove balances match the journal, and the journal the executions and open orders.

    Exit 1 (naming each difference) when anything disagrees.
    """

    async def work(services: TradingServices) -> dict[str, object]:
        async with unit_of_work(services.sessions) as session:
            report = await services.reconciler.run(session, actor=operator_party())
        return report.as_json()

    result = _with_trading(data_dir, work)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        console.print(
            f"{result['transactions']} journal transactions, {result['books']} books, "
            f"{result['positions']} positions, {result['executions']} executions, "
            f"{result['orders']} open orders"
        )
        for problem in result["problems"]:  # type: ignore[attr-defined]
            console.print(f"[red]mismatch[/]: {problem}")
    if not result["ok"]:
        raise typer.Exit(1)
    if not as_json:
        console.print("[green]reconciled[/]: every balance matches the journal and executions")


@app.command("settle")
def settle(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Run T+1 settlement for every trade due today (the server also does this by itself)."""

    async def work(services: TradingServices) -> tuple[int, int, int]:
        async with unit_of_work(services.sessions) as session:
            report = await services.settlement.settle_due(session)
        async with unit_of_work(services.sessions) as session:
            await services.settlement.check_fail_deadlines(session)
        return report.settled_executions, report.accounts, report.fails_opened

    executions, accounts, fails = _with_trading(data_dir, work)
    console.print(f"settled {executions} execution(s) in {accounts} account(s); {fails} fail(s)")


@app.command("stock-loan")
def stock_loan(
    symbol: Annotated[str, typer.Argument(help="Ticker.")],
    available: Annotated[int, typer.Argument(help="Shares the stock-loan desk can lend.", min=0)],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Set the local stock-loan desk's lendable inventory for a symbol (locates check it)."""

    async def work(services: TradingServices) -> None:
        async with unit_of_work(services.sessions) as session:
            await services.locates.set_inventory(
                session, symbol=symbol.upper(), available=available, actor=operator_party()
            )

    _with_trading(data_dir, work)
    console.print(f"{symbol.upper()}: {available} shares available to borrow")
