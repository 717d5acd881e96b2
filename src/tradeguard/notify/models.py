"""The notification outbox: written in the same transaction as the change it reports."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base


class OutboxMessage(Base):
    __tablename__ = "notify_outbox"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    template: Mapped[str] = mapped_column(String(60))
    # Recipient and body are personal data and may hold one-time codes: encrypted at rest.
    recipient_enc: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(String(200))
    body_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    next_attempt_ns: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_ns: Mapped[int | None] = mapped_column(BigInteger)
    dead_ns: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(200))


Index("ix_notify_outbox_pending", OutboxMessage.sent_ns, OutboxMessage.next_attempt_ns)
