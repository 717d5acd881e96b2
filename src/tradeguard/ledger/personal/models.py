"""The subject key table: one data key per person, wrapped by the keyring (ENC-3).

A row is written once, and changes at most once more: when its subject is forgotten the
wrapped key is cleared and `destroyed_ns` set, which erases every personal field sealed
under it. Database triggers refuse every other UPDATE and every DELETE (migration 0011), so
a key can be destroyed but never swapped, restored or silently removed.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base

LIVE = text("destroyed_ns IS NULL")


class AuditSubjectKeyRow(Base):
    """A subject's data key, sealed by the keyring with the subject as its context."""

    __tablename__ = "audit_subject_key"

    key_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject: Mapped[str] = mapped_column(String(120))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    destroyed_ns: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        # One live key per subject: concurrent first uses on PostgreSQL collide here and
        # the loser takes the winner's key. A forgotten subject's next data gets a new key.
        Index(
            "uq_audit_subject_key_live_subject",
            "subject",
            unique=True,
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),
    )
