"""Every query of the trading domain."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from tradeguard.db.base import Base
from tradeguard.ledger.domain import StagedEvent
from tradeguard.trading.domain import MARKET_TARGET, HaltScope
from tradeguard.trading.journal import Movement, account_of
from tradeguard.trading.models import (
    MICROS,
    AccountDay,
    BookBalance,
    DayTrade,
    Execution,
    ExecutionReversal,
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
# Users asked about in one statement (`users_with_executions`): far below any database's
# limit on bound parameters.
USER_BATCH = 500


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


_CONTROL_HELD = "tradeguard_trading_control_held"


async def hold_control(session: AsyncSession) -> int:
    """Take the control row shared for the rest of this transaction and remember its version
    there: while it is held no halt can commit, so every order of a group commit uses it
    without reading it again. Call it outside any savepoint: rolling one back would release
    the lock on PostgreSQL."""
    version = await lock_control(session, exclusive=False)
    session.info[_CONTROL_HELD] = (session.sync_session.get_transaction(), version)
    return version


def held_control(session: AsyncSession) -> int | None:
    """The control version `hold_control` took in this very transaction, if it did."""
    held = session.info.get(_CONTROL_HELD)
    if held is None:
        return None
    transaction, version = held
    current = session.sync_session.get_transaction()
    if current is None or current is not transaction or not current.is_active:
        return None
    return int(version)


# Staged writes of the order path ----------------------------------------------------------------


class StagedWrites:
    """Rows of the order path not yet written (audit events, orders, account versions,
    account days, journal transactions, entries and balances, locates used), written together
    with one statement per table (`write_rows`; the ledger writes the events).

    A group commit (trading/intake.py) stages each order's rows apart and adds them to its
    transaction's staging (`staging`) only once the order went through: an order refused by
    an exception leaves nothing behind, without a savepoint. The rows are written before the
    commit, and before any read that depends on them (`TradingDeps.write_staged`). Objects of
    the session whose rows are staged (an account's version, a locate's used quantity) are
    changed as committed values, so the session never writes them itself, and later orders of
    the transaction read them as they will be.
    """

    __slots__ = (
        "balances",
        "days",
        "entries",
        "events",
        "kept",
        "locates",
        "memos",
        "orders",
        "placed",
        "transactions",
        "undo",
        "versions",
    )

    def __init__(self) -> None:
        self.events: list[StagedEvent] = []
        self.orders: list[dict[str, Any]] = []
        self.placed: dict[tuple[str, str], Order] = {}
        self.versions: dict[str, int] = {}
        self.days: list[dict[str, Any]] = []
        self.transactions: list[dict[str, Any]] = []
        self.entries: list[dict[str, Any]] = []
        self.balances: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.locates: dict[str, int] = {}
        # The session's objects changed as committed values while their rows wait here. The
        # session holds an unmodified object weakly: dropped and read again from the
        # database, it would not show the change.
        self.kept: list[object] = []
        # The values those objects had before (object, attribute, value), newest last: an
        # order that fails after staging puts them back (`revert`), or a later order of the
        # transaction would build on a change that is never written (a locate's used
        # quantity counted twice).
        self.undo: list[tuple[object, str, Any]] = []
        # What later orders of the transaction see of an account (trading/snapshots.py):
        # not rows, so writing the rows keeps them.
        self.memos: dict[str, Any] = {}

    def add_order(self, order: Order) -> None:
        self.orders.append({name: getattr(order, name) for name in _ORDER_COLUMNS})
        self.placed[(order.account_id, order.client_order_id)] = order

    def changed(self, account: TradingAccount) -> None:
        """`changed`, staged: the account's version moves."""
        version = account.version + 1
        self.undo.append((account, "version", account.version))
        set_committed_value(account, "version", version)
        self.versions[account.id] = version
        self.kept.append(account)

    def add_day(self, row: AccountDay) -> None:
        self.days.append({name: getattr(row, name) for name in _DAY_COLUMNS})

    def post(self, txn_id: str, movement: Movement, now_ns: int) -> None:
        """`post`, staged."""
        transaction, entries = _movement_rows(txn_id, movement, now_ns, self.balances)
        self.transactions.append(transaction)
        self.entries += entries

    def use_locate(self, locate: Locate, quantity: int) -> None:
        used = locate.used_quantity + quantity
        self.undo.append((locate, "used_quantity", locate.used_quantity))
        set_committed_value(locate, "used_quantity", used)
        self.locates[locate.id] = used
        self.kept.append(locate)

    def revert(self) -> None:
        """Put back what staging changed on the session's objects: the order these rows
        were staged for failed, and they are dropped unwritten."""
        for target, attribute, value in reversed(self.undo):
            set_committed_value(target, attribute, value)
        self.undo.clear()

    def merge(self, other: StagedWrites) -> None:
        """Add another staging's rows after these (the other's order went through: its
        changes to the session's objects stand)."""
        self.events += other.events
        self.orders += other.orders
        self.placed.update(other.placed)
        self.versions.update(other.versions)
        self.days += other.days
        self.transactions += other.transactions
        self.entries += other.entries
        for key, row in other.balances.items():
            mine = self.balances.get(key)
            if mine is None:
                self.balances[key] = row
            else:
                mine["amount_micros"] += row["amount_micros"]
                mine["updated_ns"] = row["updated_ns"]
        self.locates.update(other.locates)
        self.kept += other.kept
        self.memos.update(other.memos)

    def take_events(self) -> list[StagedEvent]:
        events, self.events = self.events, []
        return events


_STAGING = "tradeguard_trading_staging"


def open_staging(session: AsyncSession) -> StagedWrites:
    """Stage the order path's writes for the rest of this transaction (a group commit's),
    which must write them (`TradingDeps.write_staged`) before it commits."""
    staged = StagedWrites()
    session.info[_STAGING] = (session.sync_session.get_transaction(), staged)
    return staged


def staging(session: AsyncSession) -> StagedWrites | None:
    """The staging `open_staging` opened in this very transaction, if it did."""
    held = session.info.get(_STAGING)
    if held is None:
        return None
    transaction, staged = held
    current = session.sync_session.get_transaction()
    if current is None or current is not transaction or not current.is_active:
        return None
    return staged  # type: ignore[no-any-return]


def staged_order(session: AsyncSession, account_id: str, client_order_id: str) -> Order | None:
    """An order of this transaction still staged, by its client order id."""
    staged = staging(session)
    return None if staged is None else staged.placed.get((account_id, client_order_id))


async def write_rows(session: AsyncSession, rows: StagedWrites) -> None:
    """Write staged rows but the audit events (the ledger writes those), parents first;
    `rows` keeps only its memos."""
    if rows.orders:
        await session.execute(_INSERT_ORDER, rows.orders)
    if rows.versions:
        await session.execute(
            _SET_VERSION,
            [{"account": key, "new_version": value} for key, value in rows.versions.items()],
        )
    if rows.days:
        await session.execute(_INSERT_DAY, rows.days)
    await _write_journal(session, rows)
    if rows.locates:
        await session.execute(
            _SET_LOCATE_USED,
            [{"locate": key, "used": value} for key, value in rows.locates.items()],
        )
    rows.orders, rows.placed, rows.versions, rows.days = [], {}, {}, []
    rows.transactions, rows.entries, rows.balances, rows.locates, rows.kept = [], [], {}, {}, []
    rows.undo = []


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


# Statements of the order path, built once with their values bound at execution: building a
# statement (coercing each value, working out its cache key) costs as much as running it.
_ACCOUNT_QUERIES: dict[tuple[bool, bool], Any] = {}


def _account_query(*, owned: bool, for_update: bool) -> Any:
    key = (owned, for_update)
    query = _ACCOUNT_QUERIES.get(key)
    if query is None:
        query = select(TradingAccount).where(TradingAccount.id == bindparam("account_id"))
        if owned:
            query = query.where(TradingAccount.user_id == bindparam("user_id"))
        if for_update:
            query = query.with_for_update()
        _ACCOUNT_QUERIES[key] = query
    return query


async def account(
    session: AsyncSession, account_id: str, *, user_id: str | None = None, lock: bool = False
) -> TradingAccount | None:
    """An account, optionally only if `user_id` owns it; `lock` serializes writers on it."""
    query = _account_query(owned=user_id is not None, for_update=lock and _is_postgres(session))
    values = {"account_id": account_id}
    if user_id is not None:
        values["user_id"] = user_id
    return (await session.execute(query, values)).scalar_one_or_none()


async def accounts_of(session: AsyncSession, user_id: str) -> Sequence[TradingAccount]:
    query = select(TradingAccount).where(TradingAccount.user_id == user_id)
    return (await session.execute(query.order_by(TradingAccount.created_ns))).scalars().all()


async def account_owners(session: AsyncSession, account_ids: Sequence[str]) -> dict[str, str]:
    """The owning user of each known account among `account_ids`."""
    if not account_ids:
        return {}
    query = select(TradingAccount.id, TradingAccount.user_id).where(
        TradingAccount.id.in_(list(account_ids))
    )
    return {row.id: row.user_id for row in await session.execute(query)}


async def users_with_executions(session: AsyncSession, user_ids: Sequence[str]) -> set[str]:
    """The users among `user_ids` with a trading account that has at least one execution."""
    found: set[str] = set()
    wanted = sorted(set(user_ids))
    for start in range(0, len(wanted), USER_BATCH):
        traded = (
            select(Execution.id).where(Execution.account_id == TradingAccount.id).limit(1).exists()
        )
        query = (
            select(TradingAccount.user_id)
            .where(TradingAccount.user_id.in_(wanted[start : start + USER_BATCH]), traded)
            .distinct()
        )
        found.update(str(row[0]) for row in await session.execute(query))
    return found


async def all_accounts(session: AsyncSession, limit: int = 1000) -> Sequence[TradingAccount]:
    query = select(TradingAccount).order_by(TradingAccount.created_ns).limit(limit)
    return (await session.execute(query)).scalars().all()


async def accounts_page(
    session: AsyncSession, *, user_id: str | None, after: str | None, limit: int
) -> Sequence[TradingAccount]:
    """Accounts in id order (UUIDv7: the order they were opened), optionally one user's,
    starting after the account id `after` (keyset paging: stable while accounts open)."""
    query = select(TradingAccount)
    if user_id is not None:
        query = query.where(TradingAccount.user_id == user_id)
    if after is not None:
        query = query.where(TradingAccount.id > after)
    return (await session.execute(query.order_by(TradingAccount.id).limit(limit))).scalars().all()


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
    # Rows the session holds pending (a new account, an order) go first, as an ORM statement
    # would flush them: the journal's rows refer to them. Then plain table inserts, built once:
    # through the ORM's insert machinery these statements cost four times as much (0.46
    # against 0.11 ms a movement, measured).
    await session.flush()
    rows = StagedWrites()
    rows.post(txn_id, movement, now_ns)
    await _write_journal(session, rows)


def _movement_rows(
    txn_id: str, movement: Movement, now_ns: int, balances: dict[tuple[str, str, str], Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A movement's transaction row and entry rows; adds its deltas to `balances`."""
    transaction = {
        "id": txn_id,
        "kind": movement.kind.value,
        "account_id": movement.account_id,
        "order_id": movement.order_id,
        "execution_id": movement.execution_id,
        "memo": movement.memo[:500],
        "posted_ns": now_ns,
    }
    entries = []
    for e in movement.entries:
        phase = e.phase.value
        entries.append(
            {"txn_id": txn_id, "book": e.book, "asset": e.asset, "phase": phase, "amount": e.amount}
        )
        owner = account_of(e.book)
        if owner is None:
            continue
        key = (e.book, e.asset, phase)
        delta = to_micros(e.amount)
        row = balances.get(key)
        if row is None:
            balances[key] = {
                "book": e.book,
                "asset": e.asset,
                "phase": phase,
                "account_id": owner,
                "amount_micros": delta,
                "updated_ns": now_ns,
            }
        else:
            row["amount_micros"] += delta
            row["updated_ns"] = now_ns
    return transaction, entries


async def _write_journal(session: AsyncSession, rows: StagedWrites) -> None:
    if rows.transactions:
        await session.execute(_INSERT_TRANSACTION, rows.transactions)
        await session.execute(_INSERT_ENTRY, rows.entries)
    if rows.balances:
        # Summed per book beforehand: one row per book, so PostgreSQL never sees one
        # statement touch a row twice.
        await session.execute(_upsert_balance(session), list(rows.balances.values()))


def _table(model: type[Base]) -> Table:
    return Base.metadata.tables[model.__tablename__]


_INSERT_TRANSACTION = insert(_table(JournalTransaction))
_INSERT_ENTRY = insert(_table(JournalEntry))
_ORDERS = _table(Order)
_ORDER_COLUMNS = tuple(column.key for column in _ORDERS.columns)
_INSERT_ORDER = insert(_ORDERS)
_ACCOUNTS = _table(TradingAccount)
_SET_VERSION = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account"))
    .values(version=bindparam("new_version"))
)
_DAYS = _table(AccountDay)
_DAY_COLUMNS = tuple(column.key for column in _DAYS.columns)
_INSERT_DAY = insert(_DAYS)
_LOCATES = _table(Locate)
_SET_LOCATE_USED = (
    update(_LOCATES)
    .where(_LOCATES.c.id == bindparam("locate"))
    .values(used_quantity=bindparam("used"))
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
    # The table, not the mapped class: an ORM-enabled insert goes through the ORM's bulk
    # machinery (about 1 ms a movement, measured), a table insert straight to the driver.
    table = _table(BookBalance)
    statement = (pg_insert if postgres else sqlite_insert)(table)
    upsert = statement.on_conflict_do_update(
        index_elements=[table.c.book, table.c.asset, table.c.phase],
        set_={
            "amount_micros": table.c.amount_micros + statement.excluded.amount_micros,
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


_ORDER_BY_CLIENT_ID = select(Order).where(
    Order.account_id == bindparam("account_id"),
    Order.client_order_id == bindparam("client_order_id"),
)


# The same lookup through the table: almost every order asks it of an id never used, and an
# ORM query costs its row-loading set-up even when it finds nothing.
_ORDER_ID_BY_CLIENT_ID = select(_ORDERS.c.id).where(
    _ORDERS.c.account_id == bindparam("account_id"),
    _ORDERS.c.client_order_id == bindparam("client_order_id"),
)


async def order_by_client_id(
    session: AsyncSession, account_id: str, client_order_id: str
) -> Order | None:
    values = {"account_id": account_id, "client_order_id": client_order_id}
    if (await session.execute(_ORDER_ID_BY_CLIENT_ID, values)).first() is None:
        return None
    return (await session.execute(_ORDER_BY_CLIENT_ID, values)).scalar_one_or_none()


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


# Movements of settled cash that come from no trade: admin adjustments, and money in and out.
CASH_MOVEMENT_KINDS = (
    "adjustment",
    "reversal",
    "deposit",
    "deposit_returned",
    "withdrawal",
    "withdrawal_released",
)


async def adjustment_entries(session: AsyncSession) -> list[tuple[str, Decimal]]:
    """Customer-book entries of admin adjustments, deposits and withdrawals (settled cash
    that came from no trade)."""
    query = (
        select(JournalEntry.book, JournalEntry.amount)
        .join(JournalTransaction, JournalEntry.txn_id == JournalTransaction.id)
        .where(
            JournalTransaction.kind.in_(CASH_MOVEMENT_KINDS),
            JournalEntry.book.like("acct:%"),
        )
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


# Reversals (ATO-3) --------------------------------------------------------------------------------


async def execution(session: AsyncSession, execution_id: str) -> Execution | None:
    return await session.get(Execution, execution_id)


async def reversal_of(session: AsyncSession, execution_id: str) -> ExecutionReversal | None:
    return await session.get(ExecutionReversal, execution_id)


async def reversed_execution_ids(session: AsyncSession) -> set[str]:
    return set((await session.execute(select(ExecutionReversal.execution_id))).scalars().all())


async def executions_in_order(
    session: AsyncSession, account_id: str, symbol: str
) -> Sequence[Execution]:
    """Every execution of one account in one symbol, oldest first (a position's replay)."""
    query = (
        select(Execution)
        .where(Execution.account_id == account_id, Execution.symbol == symbol)
        .order_by(Execution.executed_ns, Execution.id)
    )
    return (await session.execute(query)).scalars().all()


async def open_orders_in(session: AsyncSession, account_id: str, symbol: str) -> int:
    query = (
        select(func.count())
        .select_from(Order)
        .where(Order.account_id == account_id, Order.symbol == symbol, Order.open.is_(True))
    )
    return int((await session.execute(query)).scalar_one())
