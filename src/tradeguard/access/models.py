"""Access tables: time-limited grants, break-glass review items, last use of each permission.

Users are identity's table; these rows refer to them by id. A staff member's access level
and permissions version are columns of `users` (identity/models.py).
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base
from tradeguard.db.types import ScrubbedText


class AccessGrant(Base):
    """A request for a permission or a level, and the grant it becomes (IAC-1).

    pending → approved (live until `expires_ns`) | refused | withdrawn | expired;
    approved → revoked | expired. A break-glass grant is born approved.
    """

    __tablename__ = "access_grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(20))
    permission: Mapped[str | None] = mapped_column(String(40))
    level: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(ScrubbedText())
    # The customers (user ids, at most 20) the grant is for; None: not limited to customers.
    customers: Mapped[list[str] | None] = mapped_column(JSON)
    duration_seconds: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    requested_ns: Mapped[int] = mapped_column(BigInteger)
    # A pending request not decided by then can no longer be approved.
    decide_by_ns: Mapped[int] = mapped_column(BigInteger)
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    decided_ns: Mapped[int | None] = mapped_column(BigInteger)
    decision_note: Mapped[str | None] = mapped_column(ScrubbedText())
    starts_ns: Mapped[int | None] = mapped_column(BigInteger)
    expires_ns: Mapped[int | None] = mapped_column(BigInteger)
    ended_ns: Mapped[int | None] = mapped_column(BigInteger)
    # Who ended it: "user:<id>", "operator:<name>" or "system:expiry".
    ended_by: Mapped[str | None] = mapped_column(String(100))
    end_note: Mapped[str | None] = mapped_column(ScrubbedText())

    __table_args__ = (
        Index("ix_access_grants_user_status", "user_id", "status"),
        Index("ix_access_grants_status_expires", "status", "expires_ns"),
    )


class BreakGlassReview(Base):
    """The review every break-glass grant opens; open until closed with a note."""

    __tablename__ = "access_breakglass_reviews"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("access_grants.id"), unique=True)
    taker_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    opened_ns: Mapped[int] = mapped_column(BigInteger)
    closed_ns: Mapped[int | None] = mapped_column(BigInteger, index=True)
    closed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(ScrubbedText())


class PermissionUse(Base):
    """When a staff member last used each permission (allowed checks; IAC-4 reviews).

    Written by the route guard with the check's audit event, at most once an hour per
    permission and process, so the review has days of precision at almost no cost.
    """

    __tablename__ = "access_permission_use"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    permission: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_used_ns: Mapped[int] = mapped_column(BigInteger)
