"""Tables of the account-takeover defence: the sign-in history it compares against, the
"was this you?" prompts, withdrawal freezes and takeover reviews.

No address in the clear: a sign-in keeps the country and the announcing network's name (an
organisation, not a person), never the IP (that stays in identity's sealed ledger events).
Prompt tokens are stored as their SHA-256 only.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base


class FraudSignIn(Base):
    """One assessed sign-in: what the next one is compared with."""

    __tablename__ = "fraud_sign_ins"
    __table_args__ = (Index("ix_fraud_sign_ins_user_at", "user_id", "at_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    session_id: Mapped[str] = mapped_column(String(36))
    at_ns: Mapped[int] = mapped_column(BigInteger)
    device_id: Mapped[str | None] = mapped_column(String(36))
    country: Mapped[str | None] = mapped_column(String(2))
    network: Mapped[str | None] = mapped_column(String(120))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    score: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(String(16))
    # Set once the trading that followed this sign-in was judged unusual (raised once).
    trading_flagged_ns: Mapped[int | None] = mapped_column(BigInteger)
    # Set when the owner answered "yes, it was me": the sign-in no longer weighs on their
    # withdrawals nor makes their trading suspect.
    confirmed_ns: Mapped[int | None] = mapped_column(BigInteger)


class TakeoverPrompt(Base):
    """A "was this you?" question sent by email: one single-use token, both answers."""

    __tablename__ = "fraud_takeover_prompts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    sign_in_id: Mapped[str | None] = mapped_column(String(36))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    expires_ns: Mapped[int] = mapped_column(BigInteger)
    answered_ns: Mapped[int | None] = mapped_column(BigInteger)
    answer: Mapped[str | None] = mapped_column(String(8))


class WithdrawalFreeze(Base):
    """Withdrawals of a user are refused while a freeze is not lifted; lifting needs one staff
    member to ask and another to approve (four-eyes)."""

    __tablename__ = "fraud_withdrawal_freezes"
    __table_args__ = (Index("ix_fraud_withdrawal_freezes_user", "user_id", "lifted_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    frozen_ns: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(40))
    review_id: Mapped[str | None] = mapped_column(String(36))
    lift_requested_by: Mapped[str | None] = mapped_column(String(36))
    lift_requested_ns: Mapped[int | None] = mapped_column(BigInteger)
    lift_reason: Mapped[str | None] = mapped_column(String(500))
    lifted_by: Mapped[str | None] = mapped_column(String(36))
    lifted_ns: Mapped[int | None] = mapped_column(BigInteger)


class TakeoverReview(Base):
    """A possible takeover for staff to review: opened by the policy or by the owner's "no"."""

    __tablename__ = "fraud_takeover_reviews"
    __table_args__ = (Index("ix_fraud_takeover_reviews_status", "status", "opened_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(40))
    score: Mapped[int] = mapped_column(Integer)
    signals: Mapped[str] = mapped_column(String(400))
    opened_ns: Mapped[int] = mapped_column(BigInteger)
    assignee: Mapped[str | None] = mapped_column(String(36))
    closed_ns: Mapped[int | None] = mapped_column(BigInteger)
    closed_by: Mapped[str | None] = mapped_column(String(36))
    outcome: Mapped[str | None] = mapped_column(String(24))
    note: Mapped[str | None] = mapped_column(String(1000))


class RecoveryCase(Base):
    """An account recovery after a takeover (ATO-3), worked by staff: identity re-verified,
    credentials reset, activity reviewed, fraudulent trades reversed, then closed.

    Nothing the caller stated is kept: only whether and how identity was re-verified and how
    many attempts against the record were spent."""

    __tablename__ = "fraud_recovery_cases"
    __table_args__ = (Index("ix_fraud_recovery_cases_status", "status", "opened_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    review_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16))
    opened_ns: Mapped[int] = mapped_column(BigInteger)
    opened_by: Mapped[str] = mapped_column(String(80))
    # The identity document on file when the case opened: a document re-verification needs
    # a different one (the intruder may have had the old one's picture).
    document_on_file: Mapped[str | None] = mapped_column(String(36))
    record_attempts: Mapped[int] = mapped_column(Integer, default=0)
    verified_ns: Mapped[int | None] = mapped_column(BigInteger)
    verified_by: Mapped[str | None] = mapped_column(String(80))
    verified_method: Mapped[str | None] = mapped_column(String(16))
    credentials_reset_ns: Mapped[int | None] = mapped_column(BigInteger)
    closed_ns: Mapped[int | None] = mapped_column(BigInteger)
    closed_by: Mapped[str | None] = mapped_column(String(80))
    outcome: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(1000))


class RecoveryProposal(Base):
    """A consequential step of a recovery, proposed by one staff member and carried out only
    when a different one approves (four-eyes): reset credentials, reverse an execution,
    close the case."""

    __tablename__ = "fraud_recovery_proposals"
    __table_args__ = (Index("ix_fraud_recovery_proposals_case", "case_id", "proposed_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("fraud_recovery_cases.id"))
    action: Mapped[str] = mapped_column(String(24))
    # The execution to reverse, or the outcome to close with.
    target: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))
    proposed_by: Mapped[str] = mapped_column(String(80))
    proposed_ns: Mapped[int] = mapped_column(BigInteger)
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_ns: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryMark(Base):
    """A timeline entry staff marked as fraudulent (an execution to reverse, a withdrawal to
    chase), by its ledger sequence number."""

    __tablename__ = "fraud_recovery_marks"
    __table_args__ = (UniqueConstraint("case_id", "seq"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("fraud_recovery_cases.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[str | None] = mapped_column(String(36))
    note: Mapped[str] = mapped_column(String(500))
    marked_by: Mapped[str] = mapped_column(String(80))
    marked_ns: Mapped[int] = mapped_column(BigInteger)
