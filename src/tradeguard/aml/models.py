"""AML tables: the monitor's checkpoint, the money movements and executions it read, the
alerts its rules raised, the CTRs it aggregated, the cases staff work, and the FinCEN
exports (kept five years, 31 CFR 1010.430).

Personal data: none in clear. Movements, alerts, CTRs and cases name users and accounts by
id; the exports carry the subject's name, address, tax id and date of birth, so their
document is encrypted (class personal_details).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import EncryptedText, PlainField, SealedField
from tradeguard.db.base import Base
from tradeguard.db.types import DecimalString, ScrubbedString, ScrubbedText

FILINGS_TABLE = "aml_filings"
DOCUMENT_COLUMN = "document_enc"


class AmlCheckpoint(Base):
    """How far the monitor has read the ledger."""

    __tablename__ = "aml_checkpoints"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    events_read: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class AmlMovement(Base):
    """A deposit, withdrawal, return or execution of a person, as the rules read it. Its id
    names its source ("deposit:<id>"), so reading an event twice never counts it twice."""

    __tablename__ = "aml_movements"
    __table_args__ = (
        Index("ix_aml_movements_user_time", "user_id", "ts_ns"),
        Index("ix_aml_movements_account_time", "account_id", "ts_ns"),
        Index("ix_aml_movements_user_day", "user_id", "day"),
    )

    id: Mapped[str] = mapped_column(String(60), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[str] = mapped_column(String(36))
    account_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(12))
    rail: Mapped[str | None] = mapped_column(String(8))
    amount: Mapped[Decimal] = mapped_column(DecimalString)
    currency: Mapped[str] = mapped_column(String(3))
    symbol: Mapped[str | None] = mapped_column(String(20))
    bank_account_id: Mapped[str | None] = mapped_column(String(36))
    ts_ns: Mapped[int] = mapped_column(BigInteger)
    # The firm's business day (ISO date in aml_timezone).
    day: Mapped[str] = mapped_column(String(10))


class AmlAlert(Base):
    """One rule's finding about one person in one window (folded while it goes on)."""

    __tablename__ = "aml_alerts"
    __table_args__ = (
        UniqueConstraint("rule", "user_id", "window_key", name="uq_aml_alerts_window"),
        Index("ix_aml_alerts_status", "status", "created_ns"),
        Index("ix_aml_alerts_user", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rule: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[str] = mapped_column(String(36))
    window_key: Mapped[str] = mapped_column(String(80))
    score: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))
    summary: Mapped[str] = mapped_column(ScrubbedString(400))
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    movement_ids: Mapped[list[str]] = mapped_column(JSON)
    occurrences: Mapped[int] = mapped_column(Integer)
    window_start_ns: Mapped[int] = mapped_column(BigInteger)
    window_end_ns: Mapped[int] = mapped_column(BigInteger)
    trigger_seq: Mapped[int] = mapped_column(BigInteger)
    case_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class AmlCtr(Base):
    """A currency transaction report owed: one person, one business day, one direction."""

    __tablename__ = "aml_ctrs"
    __table_args__ = (
        UniqueConstraint("user_id", "day", "direction", name="uq_aml_ctrs_person_day"),
        Index("ix_aml_ctrs_status", "status", "due_day"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    day: Mapped[str] = mapped_column(String(10))
    direction: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(DecimalString)
    movement_ids: Mapped[list[str]] = mapped_column(JSON)
    accounts: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12))
    # 15 days after the transaction day (31 CFR 1010.306(a)(1)).
    due_day: Mapped[str] = mapped_column(String(10))
    # Movements that joined after its final export: an amended CTR is owed.
    amended: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class AmlCase(Base):
    __tablename__ = "aml_cases"
    __table_args__ = (Index("ix_aml_cases_status", "status", "due_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(16))
    assignee: Mapped[str | None] = mapped_column(String(36))
    opened_by: Mapped[str] = mapped_column(String(36))
    # Initial detection: the earliest of its alerts (31 CFR 1023.320(b)(3)).
    detection_ns: Mapped[int] = mapped_column(BigInteger)
    suspect_identified: Mapped[bool] = mapped_column(Boolean)
    due_ns: Mapped[int] = mapped_column(BigInteger)
    # Reminders sent, as days before the deadline.
    reminders_sent: Mapped[list[int]] = mapped_column(JSON)
    overdue_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    # Movements attached besides the alerts' own.
    extra_movement_ids: Mapped[list[str]] = mapped_column(JSON)
    max_score: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str | None] = mapped_column(String(12))
    decision_reason: Mapped[str | None] = mapped_column(ScrubbedText)
    # Four-eyes: the first of two staff members closing without a SAR.
    first_decider: Mapped[str | None] = mapped_column(String(36))
    decided_by: Mapped[str | None] = mapped_column(String(36))
    decided_ns: Mapped[int | None] = mapped_column(BigInteger)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)


class AmlCaseNote(Base):
    __tablename__ = "aml_case_notes"
    __table_args__ = (Index("ix_aml_case_notes_case", "case_id", "created_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36))
    author: Mapped[str] = mapped_column(String(36))
    text: Mapped[str] = mapped_column(ScrubbedText)
    created_ns: Mapped[int] = mapped_column(BigInteger)


class AmlFiling(Base):
    """A FinCEN batch export: a draft (something missing, named) or final."""

    __tablename__ = FILINGS_TABLE
    __table_args__ = (Index("ix_aml_filings_ref", "kind", "ref_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(4))  # ctr, sar
    ref_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(8))  # draft, final
    missing: Mapped[list[str]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    document_enc: Mapped[SealedField | PlainField] = mapped_column(
        EncryptedText(DataClass.PERSONAL_DETAILS, table=FILINGS_TABLE, column=DOCUMENT_COLUMN)
    )
    created_by: Mapped[str] = mapped_column(String(36))
    created_ns: Mapped[int] = mapped_column(BigInteger)
