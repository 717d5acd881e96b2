"""Every query of the trading domain."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.trading.domain import MARKET_TARGET, HaltScope
from tradeguard.trading.journal import Movement, account_of
from tradeguard.trading.models import (
    MICROS,
    AccountDay,
    BookBalance,
    DayTrade,
    Execution,
    Instrument,
    JournalEntry,
    JournalTransaction,
    Locate,
    Order,
    Position,
    RestrictedSecurity,
    RiskAlert,
    SettlementFail,
    StockLoanInventory,
    TradingAccount,
    TradingControl,
    TradingHalt,
)

CONTROL_ID = 1


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def add(session: AsyncSession, row: object) -> None:
    session.add(row)


def changed(account: TradingAccount) -> None:
    """Mark an account changed: its version moves, so cached views of it are reloaded."""
    account.version = account.version + 1


# Control row and halts ---------------------------------------------------------------------------


async def lock_control(session: AsyncSession, *, exclusive: bool) -> int:
    """Take the trading-control row shared (order placement) or exclusive (halts, reference
    data changes) and return its version. SQLite transactions are already serialized."""
    query = select(TradingControl.version).where(TradingControl.id == CONTROL_ID)
    if _is_postgres(session):
        query = query.with_for_update(read=not exclusive)
    version = (await session.execute(query)).scalar_one_or_none()
    if version is None:
        raise RuntimeError("trading_control row missing: run `tradeguard db upgrade`")
    return int(version)


async def control_version(session: AsyncSession) -> int:
    query = select(TradingControl.version).where(TradingControl.id == CONTROL_ID)
    return int((await session.execute(query)).scalar_one())


async def bump_control(session: AsyncSession, now_ns: int) -> None:
    await session.execute(
        update(TradingControl)
        .where(TradingControl.id == CONTROL_ID)
        .values(version=TradingControl.version + 1, updated_ns=now_ns)
    )


async def active_halts(session: AsyncSession) -> Sequence[TradingHalt]:
    query = select(TradingHalt).where(TradingHalt.resumed_ns.is_(None))
    return (await session.execute(query.order_by(TradingHalt.halted_ns))).scalars().all()


async def halts_affecting(session: AsyncSession, symbol: str) -> list[tuple[str, str]]:
    """Active market-wide and symbol halts for one symbol: [(scope, reason)]."""
    query = select(TradingHalt.scope, TradingHalt.reason).where(
        TradingHalt.resumed_ns.is_(None),
        ((TradingHalt.scope == HaltScope.MARKET) & (TradingHalt.target == MARKET_TARGET))
        | ((TradingHalt.scope == HaltScope.SYMBOL) & (TradingHalt.target == symbol)),
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


async def active_halt(session: AsyncSession, scope: str, target: str) -> TradingHalt | None:
    query = select(TradingHalt).where(
        TradingHalt.scope == scope, TradingHalt.target == target, TradingHalt.resumed_ns.is_(None)
    )
    return (await session.execute(query)).scalars().first()


async def halt_by_id(session: AsyncSession, halt_id: str) -> TradingHalt | None:
    return await session.get(TradingHalt, halt_id)


async def halt_history(session: AsyncSession, limit: int) -> Sequence[TradingHalt]:
    query = select(TradingHalt).order_by(TradingHalt.halted_ns.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


# Reference data -----------------------------------------------------------------------------------


async def instrument(session: AsyncSession, symbol: str) -> Instrument | None:
    return await session.get(Instrument, symbol)


async def instruments(session: AsyncSession) -> Sequence[Instrument]:
    return (await session.execute(select(Instrument).order_by(Instrument.symbol))).scalars().all()


async def restricted(session: AsyncSession) -> Sequence[RestrictedSecurity]:
    query = select(RestrictedSecurity).order_by(RestrictedSecurity.symbol)
    return (await session.execute(query)).scalars().all()


async def restricted_entry(session: AsyncSession, symbol: str) -> RestrictedSecurity | None:
    return await session.get(RestrictedSecurity, symbol)


async def delete_row(session: AsyncSession, row: object) -> None:
    await session.delete(row)


# Accounts -----------------------------------------------------------------------------------------


async def account(
    session: AsyncSession, account_id: str, *, user_id: str | None = None, lock: bool = False
) -> TradingAccount | None:
    """An account, optionally only if `user_id` owns it; `lock` serializes writers on it."""
    query = select(TradingAccount).where(TradingAccount.id == account_id)
    if user_id is not None:
        query = query.where(TradingAccount.user_id == user_id)
    if lock and _is_postgres(session):
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def accounts_of(session: AsyncSession, user_id: str) -> Sequence[TradingAccount]:
    query = select(TradingAccount).where(TradingAccount.user_id == user_id)
    return (await session.execute(query.order_by(TradingAccount.created_ns))).scalars().all()


async def all_accounts(session: AsyncSession, limit: int = 1000) -> Sequence[TradingAccount]:
    query = select(TradingAccount).order_by(TradingAccount.created_ns).limit(limit)
    return (await session.execute(query)).scalars().all()


async def account_number_taken(session: AsyncSession, number: str) -> bool:
    query = select(func.count()).where(TradingAccount.number == number)
    return int((await session.execute(query)).scalar_one()) > 0


async def account_day(session: AsyncSession, account_id: str, day: str) -> AccountDay | None:
    return await session.get(AccountDay, (account_id, day))


# Journal ------------------------------------------------------------------------------------------


async def balances(session: AsyncSession, account_id: str) -> Sequence[BookBalance]:
    """Every book balance of one account (loaded into the session, so posting reuses them)."""
    query = select(BookBalance).where(BookBalance.account_id == account_id)
    return (await session.execute(query)).scalars().all()


async def post(session: AsyncSession, txn_id: str, movement: Movement, now_ns: int) -> None:
    """Store a movement and update the running balance of every customer book it touches."""
    await session.execute(
        insert(JournalTransaction).values(
            id=txn_id,
            kind=movement.kind.value,
            account_id=movement.account_id,
            order_id=movement.order_id,
            execution_id=movement.execution_id,
            memo=movement.memo[:500],
            posted_ns=now_ns,
        )
    )
    await session.execute(
        insert(JournalEntry),
        [
            {
                "txn_id": txn_id,
                "book": e.book,
                "asset": e.asset,
                "phase": e.phase.value,
                "amount": e.amount,
            }
            for e in movement.entries
        ],
    )
    deltas: dict[tuple[str, str, str], int] = {}
    owners: dict[str, str] = {}
    for entry in movement.entries:
        owner = account_of(entry.book)
        if owner is None:
            continue
        key = (entry.book, entry.asset, entry.phase.value)
        deltas[key] = deltas.get(key, 0) + to_micros(entry.amount)
        owners[entry.book] = owner
    if deltas:
        await session.execute(
            _upsert_balance(session),
            [
                {
                    "book": book,
                    "asset": asset,
                    "phase": phase,
                    "account_id": owners[book],
                    "amount_micros": delta,
                    "updated_ns": now_ns,
                }
                for (book, asset, phase), delta in deltas.items()
            ],
        )


def to_micros(amount: Decimal) -> int:
    """An exact amount in millionths; anything finer is a bug, refused rather than rounded."""
    scaled = amount * MICROS
    if scaled != scaled.to_integral_value():
        raise ValueError("journal amounts carry at most six decimal places")
    return int(scaled)


_UPSERTS: dict[bool, Any] = {}


def _upsert_balance(session: AsyncSession) -> Any:
    # Add to the running balance in SQL: no read, and concurrent writers of other books of
    # the same account never overwrite each other. Built once per dialect (a new statement
    # object each time would be compiled each time).
    postgres = _is_postgres(session)
    cached = _UPSERTS.get(postgres)
    if cached is not None:
        return cached
    statement = (pg_insert if postgres else sqlite_insert)(BookBalance)
    upsert = statement.on_conflict_do_update(
        index_elements=[BookBalance.book, BookBalance.asset, BookBalance.phase],
        set_={
            "amount_micros": BookBalance.amount_micros + statement.excluded.amount_micros,
            "updated_ns": statement.excluded.updated_ns,
        },
    )
    _UPSERTS[postgres] = upsert
    return upsert


async def journal_page(
    session: AsyncSession, account_id: str, *, before_ns: int | None, limit: int
) -> Sequence[JournalTransaction]:
    query = select(JournalTransaction).where(JournalTransaction.account_id == account_id)
    if before_ns is not None:
        query = query.where(JournalTransaction.posted_ns < before_ns)
    query = query.order_by(JournalTransaction.posted_ns.desc(), JournalTransaction.id.desc())
    return (await session.execute(query.limit(limit))).scalars().all()


async def entries_of(session: AsyncSession, txn_ids: Sequence[str]) -> Sequence[JournalEntry]:
    if not txn_ids:
        return []
    query = select(JournalEntry).where(JournalEntry.txn_id.in_(txn_ids)).order_by(JournalEntry.pk)
    return (await session.execute(query)).scalars().all()


# Orders -------------------------------------------------------------------------------------------


async def order(
    session: AsyncSession, order_id: str, *, account_id: str | None = None
) -> Order | None:
    query = select(Order).where(Order.id == order_id)
    if account_id is not None:
        query = query.where(Order.account_id == account_id)
    return (await session.execute(query)).scalar_one_or_none()


async def order_by_client_id(
    session: AsyncSession, account_id: str, client_order_id: str
) -> Order | None:
    query = select(Order).where(
        Order.account_id == account_id, Order.client_order_id == client_order_id
    )
    return (await session.execute(query)).scalar_one_or_none()


async def orders_of(
    session: AsyncSession,
    account_id: str,
    *,
    open_only: bool,
    before_ns: int | None,
    limit: int,
) -> Sequence[Order]:
    query = select(Order).where(Order.account_id == account_id)
    if open_only:
        query = query.where(Order.open.is_(True))
    if before_ns is not None:
        query = query.where(Order.created_ns < before_ns)
    query = query.order_by(Order.created_ns.desc(), Order.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def open_orders_of_account(session: AsyncSession, account_id: str) -> Sequence[Order]:
    query = select(Order).where(Order.account_id == account_id, Order.open.is_(True))
    return (await session.execute(query.order_by(Order.created_ns, Order.id))).scalars().all()


async def open_order_summaries(session: AsyncSession, account_id: str) -> list[Any]:
    """(id, symbol, side, remaining, limit price) of an account's open orders."""
    query = (
        select(
            Order.id,
            Order.symbol,
            Order.side,
            Order.quantity - Order.filled_quantity,
            Order.limit_price,
        )
        .where(Order.account_id == account_id, Order.open.is_(True))
        .order_by(Order.created_ns, Order.id)
    )
    return list((await session.execute(query)).all())


async def recent_orders(session: AsyncSession, account_id: str, limit: int) -> list[Any]:
    query = (
        select(
            Order.symbol,
            Order.side,
            Order.quantity,
            Order.limit_price,
            Order.created_ns,
            Order.status,
            Order.cancel_reason,
        )
        .where(Order.account_id == account_id)
        .order_by(Order.created_ns.desc(), Order.id.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).all())


async def open_orders(
    session: AsyncSession, *, symbol: str | None = None, account_id: str | None = None
) -> Sequence[Order]:
    """Open orders in time priority (the venue rebuilds its books from these)."""
    query = select(Order).where(Order.open.is_(True))
    if symbol is not None:
        query = query.where(Order.symbol == symbol)
    if account_id is not None:
        query = query.where(Order.account_id == account_id)
    return (await session.execute(query.order_by(Order.created_ns, Order.id))).scalars().all()


async def orders_by_ids(
    session: AsyncSession, order_ids: Sequence[str], *, lock: bool = True
) -> dict[str, Order]:
    if not order_ids:
        return {}
    query = select(Order).where(Order.id.in_(order_ids))
    if lock and _is_postgres(session):
        query = query.with_for_update()
    return {row.id: row for row in (await session.execute(query)).scalars().all()}


async def open_day_orders_before(session: AsyncSession, trading_date: str) -> Sequence[Order]:
    query = select(Order).where(
        Order.open.is_(True), Order.time_in_force == "day", Order.trading_date < trading_date
    )
    return (await session.execute(query.order_by(Order.created_ns))).scalars().all()


# Executions and positions -------------------------------------------------------------------------


async def positions(session: AsyncSession, account_id: str) -> Sequence[Position]:
    query = select(Position).where(Position.account_id == account_id).order_by(Position.symbol)
    return (await session.execute(query)).scalars().all()


async def position(session: AsyncSession, account_id: str, symbol: str) -> Position | None:
    return await session.get(Position, (account_id, symbol))


async def executions_of(
    session: AsyncSession,
    account_id: str,
    *,
    order_id: str | None = None,
    before_ns: int | None = None,
    limit: int = 100,
) -> Sequence[Execution]:
    query = select(Execution).where(Execution.account_id == account_id)
    if order_id is not None:
        query = query.where(Execution.order_id == order_id)
    if before_ns is not None:
        query = query.where(Execution.executed_ns < before_ns)
    query = query.order_by(Execution.executed_ns.desc(), Execution.id.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def executed_orders_in(session: AsyncSession, account_id: str, days: Sequence[str]) -> int:
    """Orders with at least one execution on the given trading dates (PDT trade count)."""
    query = select(func.count(func.distinct(Execution.order_id))).where(
        Execution.account_id == account_id, Execution.trading_date.in_(days)
    )
    return int((await session.execute(query)).scalar_one())


async def day_trades_in(session: AsyncSession, account_id: str, days: Sequence[str]) -> int:
    query = select(func.count()).where(
        DayTrade.account_id == account_id, DayTrade.trading_date.in_(days)
    )
    return int((await session.execute(query)).scalar_one())


async def unsettled_executions(session: AsyncSession, up_to: str) -> Sequence[Execution]:
    query = select(Execution).where(
        Execution.settled_ns.is_(None), Execution.settlement_date <= up_to
    )
    query = query.order_by(Execution.account_id, Execution.settlement_date, Execution.id)
    return (await session.execute(query)).scalars().all()


# Reg SHO ------------------------------------------------------------------------------------------


async def locates_for(
    session: AsyncSession, account_id: str, symbol: str, now_ns: int
) -> Sequence[Locate]:
    """Unexpired locates and pre-borrows with quantity left, oldest first."""
    query = select(Locate).where(
        Locate.account_id == account_id,
        Locate.symbol == symbol,
        Locate.expires_ns > now_ns,
        Locate.used_quantity < Locate.quantity,
    )
    return (await session.execute(query.order_by(Locate.created_ns, Locate.id))).scalars().all()


async def outstanding_locates(session: AsyncSession, symbol: str, now_ns: int) -> int:
    """Shares of a symbol promised by unexpired locates (every account), used or not."""
    query = select(func.coalesce(func.sum(Locate.quantity), 0)).where(
        Locate.symbol == symbol, Locate.kind == "locate", Locate.expires_ns > now_ns
    )
    return int((await session.execute(query)).scalar_one())


async def locates_of(session: AsyncSession, account_id: str, limit: int) -> Sequence[Locate]:
    query = select(Locate).where(Locate.account_id == account_id)
    query = query.order_by(Locate.created_ns.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def stock_loan(
    session: AsyncSession, symbol: str, *, lock: bool
) -> StockLoanInventory | None:
    query = select(StockLoanInventory).where(StockLoanInventory.symbol == symbol)
    if lock and _is_postgres(session):
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def open_fails(
    session: AsyncSession, *, account_id: str | None = None, symbol: str | None = None
) -> Sequence[SettlementFail]:
    query = select(SettlementFail).where(SettlementFail.status == "open")
    if account_id is not None:
        query = query.where(SettlementFail.account_id == account_id)
    if symbol is not None:
        query = query.where(SettlementFail.symbol == symbol)
    return (await session.execute(query.order_by(SettlementFail.created_ns))).scalars().all()


async def alerts(session: AsyncSession, *, limit: int, open_only: bool) -> Sequence[RiskAlert]:
    query = select(RiskAlert)
    if open_only:
        query = query.where(RiskAlert.resolved_ns.is_(None))
    query = query.order_by(RiskAlert.created_ns.desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


# Reconciliation -----------------------------------------------------------------------------------


async def entry_sums_by_transaction(session: AsyncSession) -> list[Any]:
    """Per (transaction, asset, phase) amounts, for the balance check (amounts summed in
    Python: they are exact decimals stored as text)."""
    query = select(
        JournalEntry.txn_id, JournalEntry.asset, JournalEntry.phase, JournalEntry.amount
    ).order_by(JournalEntry.txn_id)
    return list((await session.execute(query)).all())


async def customer_entries(session: AsyncSession) -> list[Any]:
    query = select(
        JournalEntry.book, JournalEntry.asset, JournalEntry.phase, JournalEntry.amount
    ).where(JournalEntry.book.like("acct:%"))
    return list((await session.execute(query)).all())


async def all_balances(session: AsyncSession) -> Sequence[BookBalance]:
    return (await session.execute(select(BookBalance))).scalars().all()


async def all_positions(session: AsyncSession) -> Sequence[Position]:
    return (await session.execute(select(Position))).scalars().all()


async def all_executions(session: AsyncSession) -> Sequence[Execution]:
    return (await session.execute(select(Execution))).scalars().all()


async def all_open_orders(session: AsyncSession) -> Sequence[Order]:
    return (await session.execute(select(Order).where(Order.open.is_(True)))).scalars().all()


async def adjustment_entries(session: AsyncSession) -> list[tuple[str, Decimal]]:
    """Customer-book entries of admin adjustments (settled cash that came from no trade)."""
    query = (
        select(JournalEntry.book, JournalEntry.amount)
        .join(JournalTransaction, JournalEntry.txn_id == JournalTransaction.id)
        .where(JournalTransaction.kind == "adjustment", JournalEntry.book.like("acct:%"))
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]
