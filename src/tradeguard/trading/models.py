"""Trading tables: reference data, accounts, the double-entry money journal, orders,
executions, positions, halts, and the Reg SHO records.

Money and prices are exact decimals stored as text (`DecimalString`); share quantities are
integers. Other domains' rows are referenced by id.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base
from tradeguard.db.types import DecimalString, ScrubbedString

# Reference data -----------------------------------------------------------------------------


class Instrument(Base):
    __tablename__ = "instruments"

    symbol: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(3))
    tick_size: Mapped[Decimal] = mapped_column(DecimalString)
    lot_size: Mapped[Decimal] = mapped_column(DecimalString)
    status: Mapped[str] = mapped_column(String(20))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    min_quantity: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    max_quantity: Mapped[int] = mapped_column(Integer, server_default=text("1000000"))
    reference_price: Mapped[Decimal | None] = mapped_column(DecimalString)
    band_tier: Mapped[int] = mapped_column(Integer, server_default=text("2"))
    threshold_security: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    easy_to_borrow: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    updated_ns: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class RestrictedSecurity(Base):
    """The firm's restricted list: symbols its customers may not trade (PRE-4)."""

    __tablename__ = "restricted_list"

    symbol: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"), primary_key=True)
    reason: Mapped[str] = mapped_column(ScrubbedString(500))
    added_by: Mapped[str] = mapped_column(String(80))
    added_ns: Mapped[int] = mapped_column(BigInteger)


class TradingControl(Base):
    """One row. Order placement takes it shared and halts take it exclusive, so a halt and
    an order in flight can never both miss each other; its version tells running servers
    that reference data or halts changed (e.g. from the CLI)."""

    __tablename__ = "trading_control"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class TradingHalt(Base):
    """A kill switch (HALT-2): market-wide, one symbol, or one account; latched until resumed."""

    __tablename__ = "trading_halts"
    __table_args__ = (Index("ix_trading_halts_active", "scope", "target", "resumed_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    scope: Mapped[str] = mapped_column(String(10))
    target: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(ScrubbedString(500))
    halted_by: Mapped[str] = mapped_column(String(80))
    halted_ns: Mapped[int] = mapped_column(BigInteger)
    cancelled_orders: Mapped[int] = mapped_column(Integer)
    resumed_by: Mapped[str | None] = mapped_column(String(80))
    resumed_ns: Mapped[int | None] = mapped_column(BigInteger)
    resume_reason: Mapped[str | None] = mapped_column(ScrubbedString(500))


# Accounts and the money journal ---------------------------------------------------------------


class TradingAccount(Base):
    __tablename__ = "trading_accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    account_type: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    trading_state: Mapped[str] = mapped_column(String(10))
    currency: Mapped[str] = mapped_column(String(3))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)
    # Moves with every change to the account's money, positions or orders (cache validation).
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    # Per-account overrides of the firm's limits (NULL = the firm default).
    max_order_quantity: Mapped[int | None] = mapped_column(Integer)
    max_order_notional: Mapped[Decimal | None] = mapped_column(DecimalString)
    position_limit: Mapped[int | None] = mapped_column(Integer)
    gross_exposure_cap: Mapped[Decimal | None] = mapped_column(DecimalString)
    daily_loss_limit: Mapped[Decimal | None] = mapped_column(DecimalString)
    max_orders_per_second: Mapped[int | None] = mapped_column(Integer)


class AccountDay(Base):
    """An account's start-of-day equity, recorded on its first activity of a trading day."""

    __tablename__ = "account_days"

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"), primary_key=True)
    trading_date: Mapped[str] = mapped_column(String(10), primary_key=True)
    start_equity: Mapped[Decimal] = mapped_column(DecimalString)
    created_ns: Mapped[int] = mapped_column(BigInteger)


class JournalTransaction(Base):
    """One atomic movement (hold, release, fill, fee, settlement, adjustment): its entries
    balance to zero per asset and phase."""

    __tablename__ = "journal_transactions"
    __table_args__ = (Index("ix_journal_transactions_account", "account_id", "posted_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    account_id: Mapped[str | None] = mapped_column(ForeignKey("trading_accounts.id"))
    order_id: Mapped[str | None] = mapped_column(String(36))
    execution_id: Mapped[str | None] = mapped_column(String(36))
    memo: Mapped[str] = mapped_column(ScrubbedString(500))
    posted_ns: Mapped[int] = mapped_column(BigInteger)


class JournalEntry(Base):
    __tablename__ = "journal_entries"
    __table_args__ = (Index("ix_journal_entries_book", "book", "asset"),)

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    txn_id: Mapped[str] = mapped_column(ForeignKey("journal_transactions.id"), index=True)
    book: Mapped[str] = mapped_column(String(80))
    asset: Mapped[str] = mapped_column(String(12))
    phase: Mapped[str] = mapped_column(String(6))
    amount: Mapped[Decimal] = mapped_column(DecimalString)


MICROS = Decimal(1_000_000)


class BookBalance(Base):
    """The running balance of one customer book, kept in the same transaction as its entries
    (firm books are summed on demand, so no firm-wide row becomes a point of contention).

    Stored as an exact integer of millionths, so a movement adds to it in SQL
    (`amount_micros + :delta`) without reading it first; every amount the journal moves has
    at most six decimals, and a finer one is refused rather than rounded.
    """

    __tablename__ = "book_balances"

    book: Mapped[str] = mapped_column(String(80), primary_key=True)
    asset: Mapped[str] = mapped_column(String(12), primary_key=True)
    phase: Mapped[str] = mapped_column(String(6), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"), index=True)
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)

    @property
    def amount(self) -> Decimal:
        return Decimal(self.amount_micros) / MICROS


# Orders, executions, positions -----------------------------------------------------------------


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("uq_orders_account_client_order_id", "account_id", "client_order_id", unique=True),
        Index("ix_orders_account_created", "account_id", "created_ns"),
        Index("ix_orders_open", "open", "symbol"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"))
    client_order_id: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(12))
    side: Mapped[str] = mapped_column(String(10))
    order_type: Mapped[str] = mapped_column(String(6))
    time_in_force: Mapped[str] = mapped_column(String(3))
    quantity: Mapped[int] = mapped_column(BigInteger)
    limit_price: Mapped[Decimal | None] = mapped_column(DecimalString)
    status: Mapped[str] = mapped_column(String(20))
    open: Mapped[bool] = mapped_column(Boolean)
    filled_quantity: Mapped[int] = mapped_column(BigInteger)
    filled_notional: Mapped[Decimal] = mapped_column(DecimalString)
    fees: Mapped[Decimal] = mapped_column(DecimalString)
    hold_cash: Mapped[Decimal] = mapped_column(DecimalString)
    hold_shares: Mapped[int] = mapped_column(BigInteger)
    locate_quantity: Mapped[int] = mapped_column(BigInteger)
    preborrow_quantity: Mapped[int] = mapped_column(BigInteger)
    reducing: Mapped[bool] = mapped_column(Boolean)
    day_trade: Mapped[bool] = mapped_column(Boolean)
    reject_code: Mapped[str | None] = mapped_column(String(40))
    reject_detail: Mapped[str | None] = mapped_column(String(300))
    cancel_reason: Mapped[str | None] = mapped_column(String(40))
    replaces_order_id: Mapped[str | None] = mapped_column(String(36))
    replaced_by_order_id: Mapped[str | None] = mapped_column(String(36))
    trading_date: Mapped[str] = mapped_column(String(10))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        Index("ix_executions_account_date", "account_id", "trading_date"),
        Index("ix_executions_unsettled", "settled_ns", "settlement_date"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"))
    symbol: Mapped[str] = mapped_column(String(12))
    side: Mapped[str] = mapped_column(String(10))
    quantity: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[Decimal] = mapped_column(DecimalString)
    notional: Mapped[Decimal] = mapped_column(DecimalString)
    fee: Mapped[Decimal] = mapped_column(DecimalString)
    liquidity: Mapped[str] = mapped_column(String(5))
    contra: Mapped[str] = mapped_column(String(40))
    match_id: Mapped[str] = mapped_column(String(36))
    executed_ns: Mapped[int] = mapped_column(BigInteger)
    trading_date: Mapped[str] = mapped_column(String(10))
    settlement_date: Mapped[str] = mapped_column(String(10))
    settled_ns: Mapped[int | None] = mapped_column(BigInteger)


class ExecutionReversal(Base):
    """An execution undone by compensating journal entries (ATO-3): the execution and its
    entries stay untouched; this row (one per execution, the primary key) says it was
    reversed, by whom, why and by which journal transaction."""

    __tablename__ = "execution_reversals"
    __table_args__ = (Index("ix_execution_reversals_account", "account_id", "symbol"),)

    execution_id: Mapped[str] = mapped_column(ForeignKey("executions.id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"))
    symbol: Mapped[str] = mapped_column(String(12))
    txn_id: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(500))
    reference: Mapped[str | None] = mapped_column(String(80))
    reversed_by: Mapped[str] = mapped_column(String(80))
    reversed_ns: Mapped[int] = mapped_column(BigInteger)


class Position(Base):
    __tablename__ = "positions"

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(12), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    cost_basis: Mapped[Decimal] = mapped_column(DecimalString)
    realized_pnl: Mapped[Decimal] = mapped_column(DecimalString)
    activity_date: Mapped[str] = mapped_column(String(10))
    opened_today_long: Mapped[int] = mapped_column(BigInteger)
    opened_today_short: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class DayTrade(Base):
    """A day trade (FINRA 4210(f)(8)(B)) counted against the account's five-day window."""

    __tablename__ = "day_trades"
    __table_args__ = (Index("ix_day_trades_account_date", "account_id", "trading_date"),)

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"))
    symbol: Mapped[str] = mapped_column(String(12))
    trading_date: Mapped[str] = mapped_column(String(10))
    created_ns: Mapped[int] = mapped_column(BigInteger)


# Reg SHO ---------------------------------------------------------------------------------------


class Locate(Base):
    """A recorded locate or pre-borrow (Reg SHO Rule 203(b)(1)): source, quantity, expiry."""

    __tablename__ = "locates"
    __table_args__ = (Index("ix_locates_account_symbol", "account_id", "symbol"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"))
    symbol: Mapped[str] = mapped_column(String(12))
    kind: Mapped[str] = mapped_column(String(10))
    quantity: Mapped[int] = mapped_column(BigInteger)
    used_quantity: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(120))
    expires_ns: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(80))
    created_ns: Mapped[int] = mapped_column(BigInteger)


class StockLoanInventory(Base):
    """Shares the firm's stock-loan source can lend (the local locate provider's book)."""

    __tablename__ = "stock_loan_inventory"

    symbol: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"), primary_key=True)
    available: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class SettlementFail(Base):
    """A fail to deliver tracked against its Reg SHO Rule 204 close-out deadline."""

    __tablename__ = "settlement_fails"
    __table_args__ = (Index("ix_settlement_fails_account_symbol", "account_id", "symbol"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"))
    symbol: Mapped[str] = mapped_column(String(12))
    kind: Mapped[str] = mapped_column(String(5))
    quantity: Mapped[int] = mapped_column(BigInteger)
    closed_quantity: Mapped[int] = mapped_column(BigInteger)
    trade_date: Mapped[str] = mapped_column(String(10))
    settlement_date: Mapped[str] = mapped_column(String(10))
    deadline_ns: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))
    alerted_ns: Mapped[int | None] = mapped_column(BigInteger)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    closed_ns: Mapped[int | None] = mapped_column(BigInteger)


class RiskAlert(Base):
    """An alert for the compliance desk (missed close-out, unusual pattern, ...)."""

    __tablename__ = "risk_alerts"
    __table_args__ = (Index("ix_risk_alerts_created", "created_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))
    account_id: Mapped[str | None] = mapped_column(String(36))
    symbol: Mapped[str | None] = mapped_column(String(12))
    detail: Mapped[str] = mapped_column(Text)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    resolved_by: Mapped[str | None] = mapped_column(String(80))
    resolved_ns: Mapped[int | None] = mapped_column(BigInteger)
