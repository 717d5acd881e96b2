"""Funds tables: customers' bank accounts, deposits and withdrawals.

Bank account numbers are encrypted (`EncryptedText`, class bank_details) with a blind index
to find the same bank account on two users without decrypting; only the last four digits
are kept in clear. The holder's name is encrypted under the same class. Money is
`DecimalString`. Other domains' rows are referenced by id.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import EncryptedText, PlainField, SealedField
from tradeguard.db.base import Base
from tradeguard.db.types import DecimalString, ScrubbedString

BANK_ACCOUNTS_TABLE = "funds_bank_accounts"
ACCOUNT_NUMBER_COLUMN = "account_number_enc"
HOLDER_NAME_COLUMN = "holder_name_enc"


class FundsCustomer(Base):
    """One row per customer who moves money: the row every withdrawal of theirs locks first,
    so the limit checks of parallel requests run one after the other (WDL-1/2)."""

    __tablename__ = "funds_customers"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    created_ns: Mapped[int] = mapped_column(BigInteger)


class BankAccount(Base):
    __tablename__ = BANK_ACCOUNTS_TABLE

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    nickname: Mapped[str] = mapped_column(ScrubbedString(60))
    routing_number: Mapped[str] = mapped_column(String(9))
    account_type: Mapped[str] = mapped_column(String(10))
    account_number_enc: Mapped[SealedField | PlainField] = mapped_column(
        EncryptedText(
            DataClass.BANK_DETAILS, table=BANK_ACCOUNTS_TABLE, column=ACCOUNT_NUMBER_COLUMN
        )
    )
    # HMAC of routing and account number under the class's index key: the same bank account
    # on two users (a shared bank account links their owners; surveillance, fraud).
    account_index: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    last4: Mapped[str] = mapped_column(String(4))
    # The account holder's name as the customer gave it (encrypted): screened against the
    # sanctions list as a payee (KYC-2). None on accounts added before it was asked for.
    holder_name_enc: Mapped[SealedField | PlainField | None] = mapped_column(
        EncryptedText(DataClass.BANK_DETAILS, table=BANK_ACCOUNTS_TABLE, column=HOLDER_NAME_COLUMN)
    )
    status: Mapped[str] = mapped_column(String(24))
    micro_attempts_left: Mapped[int] = mapped_column(Integer, default=0)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    verified_ns: Mapped[int | None] = mapped_column(BigInteger)
    removed_ns: Mapped[int | None] = mapped_column(BigInteger)


class Deposit(Base):
    __tablename__ = "funds_deposits"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_funds_deposits_idempotency"),
        Index("ix_funds_deposits_open", "status", "settles_ns"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"), index=True)
    bank_account_id: Mapped[str | None] = mapped_column(ForeignKey("funds_bank_accounts.id"))
    # A card deposit's stored card (customer_card.id): the card itself stays in the vault.
    card_id: Mapped[str | None] = mapped_column(String(36))
    rail: Mapped[str] = mapped_column(String(8))
    amount: Mapped[Decimal] = mapped_column(DecimalString)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12))
    # The processor's decline code of a refused card charge (no card data).
    decline_code: Mapped[str | None] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    processor_ref: Mapped[str | None] = mapped_column(String(120))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    settles_ns: Mapped[int] = mapped_column(BigInteger)
    settled_ns: Mapped[int | None] = mapped_column(BigInteger)
    returned_ns: Mapped[int | None] = mapped_column(BigInteger)
    return_code: Mapped[str | None] = mapped_column(String(4))


class Withdrawal(Base):
    __tablename__ = "funds_withdrawals"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_funds_withdrawals_idempotency"),
        Index("ix_funds_withdrawals_user_time", "user_id", "created_ns"),
        Index("ix_funds_withdrawals_status", "status", "updated_ns"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id"), index=True)
    bank_account_id: Mapped[str] = mapped_column(ForeignKey("funds_bank_accounts.id"))
    rail: Mapped[str] = mapped_column(String(8))
    amount: Mapped[Decimal] = mapped_column(DecimalString)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(24))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    # Why it waits for staff (WDL-3 amount, a takeover signal), None when it does not.
    review_reason: Mapped[str | None] = mapped_column(ScrubbedString(120))
    # Four-eyes: the first staff approval, then a second, different staff member's.
    first_approver: Mapped[str | None] = mapped_column(String(36))
    decided_by: Mapped[str | None] = mapped_column(String(36))
    # The emailed "this was not me" link (hash of a random token; single use).
    refuse_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    verify_deadline_ns: Mapped[int] = mapped_column(BigInteger)
    processor_ref: Mapped[str | None] = mapped_column(String(120))
    settles_ns: Mapped[int | None] = mapped_column(BigInteger)
    failure_code: Mapped[str | None] = mapped_column(String(40))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)
    verified_ns: Mapped[int | None] = mapped_column(BigInteger)
    completed_ns: Mapped[int | None] = mapped_column(BigInteger)
