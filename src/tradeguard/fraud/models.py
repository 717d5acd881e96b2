"""Tables of the account-takeover defence: the sign-in history it compares against, the
"was this you?" prompts, withdrawal freezes and takeover reviews.

No address in the clear: a sign-in keeps the country and the announcing network's name (an
organisation, not a person), never the IP (that stays in identity's sealed ledger events).
Prompt tokens are stored as their SHA-256 only.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, LargeBinary, String
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
