"""Back-office tables: the customer-facing access log and second-factor reset requests.

Users are referenced by id only (no foreign key into identity's tables): the access log is a
record about a person that must outlive whatever happens to their account rows.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base
from tradeguard.db.types import ScrubbedString


class AccessLogEntry(Base):
    """One staff access to one customer's data, as the customer sees it (IAC-4)."""

    __tablename__ = "backoffice_access_log"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    # Who, for investigators ("staff:<user id>" or "operator:<os user>"); never shown to the
    # customer, who sees the role and the pseudonym.
    actor: Mapped[str] = mapped_column(String(80))
    actor_role: Mapped[str] = mapped_column(String(20))
    actor_pseudonym: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(40))
    field: Mapped[str | None] = mapped_column(String(60))
    reason: Mapped[str | None] = mapped_column(ScrubbedString(500))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[str | None] = mapped_column(String(64))


class FactorResetRequest(Base):
    """A request to remove a user's second factors, waiting for a second admin (four eyes)."""

    __tablename__ = "backoffice_factor_resets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    requested_by: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(ScrubbedString(500))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    expires_ns: Mapped[int] = mapped_column(BigInteger)
    # pending -> approved | refused; a pending request past `expires_ns` is expired.
    status: Mapped[str] = mapped_column(String(20))
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_ns: Mapped[int | None] = mapped_column(BigInteger)
    decision_note: Mapped[str | None] = mapped_column(ScrubbedString(500))


Index("ix_backoffice_access_log_customer", AccessLogEntry.customer_id, AccessLogEntry.created_ns)
Index("ix_backoffice_factor_resets_user", FactorResetRequest.user_id, FactorResetRequest.status)
