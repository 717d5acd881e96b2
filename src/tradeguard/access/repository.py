"""Every query of the access tables (grants, break-glass reviews, permission use)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import case, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import (
    GrantKind,
    GrantStatus,
    GrantTarget,
    LiveGrant,
    Permission,
    parse_level,
)
from tradeguard.access.models import AccessGrant, BreakGlassReview, PermissionUse

_APPROVED = GrantStatus.APPROVED.value
_PENDING = GrantStatus.PENDING.value


def target_of(row: AccessGrant) -> GrantTarget:
    if row.permission is not None:
        return GrantTarget(permission=Permission(row.permission))
    return GrantTarget(level=parse_level(row.level))


def live_grant(row: AccessGrant) -> LiveGrant:
    return LiveGrant(
        grant_id=row.id,
        target=target_of(row),
        expires_ns=row.expires_ns or 0,
        kind=GrantKind(row.kind),
        approved_by=row.decided_by,
        customers=frozenset(row.customers or ()),
    )


async def live_grants(session: AsyncSession, user_id: str, now_ns: int) -> list[LiveGrant]:
    """A user's approved grants that have not expired yet (one indexed read per state load)."""
    rows = (
        await session.execute(
            select(AccessGrant).where(
                AccessGrant.user_id == user_id,
                AccessGrant.status == _APPROVED,
                AccessGrant.expires_ns > now_ns,
            )
        )
    ).scalars()
    return [live_grant(row) for row in rows]


def add_grant(session: AsyncSession, row: AccessGrant) -> None:
    session.add(row)


async def grant(session: AsyncSession, grant_id: str) -> AccessGrant | None:
    return await session.get(AccessGrant, grant_id, populate_existing=True)


async def open_grants_for(
    session: AsyncSession, user_id: str, target: GrantTarget, now_ns: int
) -> Sequence[AccessGrant]:
    """The user's pending requests and live grants for exactly this target."""
    same_target = (
        AccessGrant.permission == target.permission.value
        if target.permission is not None
        else AccessGrant.level == (target.level.value if target.level else None)
    )
    query = select(AccessGrant).where(
        AccessGrant.user_id == user_id,
        same_target,
        or_(
            (AccessGrant.status == _PENDING) & (AccessGrant.decide_by_ns > now_ns),
            (AccessGrant.status == _APPROVED) & (AccessGrant.expires_ns > now_ns),
        ),
    )
    return (await session.execute(query)).scalars().all()


async def transition(
    session: AsyncSession,
    grant_id: str,
    *,
    from_status: GrantStatus,
    values: dict[str, Any],
    live_at_ns: int | None = None,
) -> bool:
    """Move a grant out of `from_status` if it is still there (and, with `live_at_ns`, still
    within its deadline): a conditional update, so two admins acting at once cannot both win."""
    conditions = [AccessGrant.id == grant_id, AccessGrant.status == from_status.value]
    if live_at_ns is not None:
        deadline = (
            AccessGrant.decide_by_ns
            if from_status is GrantStatus.PENDING
            else AccessGrant.expires_ns
        )
        conditions.append(deadline > live_at_ns)
    result = await session.execute(
        update(AccessGrant)
        .where(*conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def grants(
    session: AsyncSession,
    *,
    user_id: str | None = None,
    statuses: Iterable[GrantStatus] | None = None,
    limit: int = 500,
) -> Sequence[AccessGrant]:
    """Grants, newest first, optionally one user's and in some statuses."""
    query = select(AccessGrant).order_by(AccessGrant.requested_ns.desc(), AccessGrant.id)
    if user_id is not None:
        query = query.where(AccessGrant.user_id == user_id)
    if statuses is not None:
        query = query.where(AccessGrant.status.in_([s.value for s in statuses]))
    return (await session.execute(query.limit(limit))).scalars().all()


async def end_all_for(session: AsyncSession, user_id: str, now_ns: int, note: str) -> list[str]:
    """Withdraw a user's pending requests and end their live grants (their role changed: what
    was asked for and approved meant the old role's duties). Returns the grant ids."""
    rows = (
        await session.execute(
            select(AccessGrant.id, AccessGrant.status).where(
                AccessGrant.user_id == user_id,
                or_(
                    (AccessGrant.status == _PENDING) & (AccessGrant.decide_by_ns > now_ns),
                    (AccessGrant.status == _APPROVED) & (AccessGrant.expires_ns > now_ns),
                ),
            )
        )
    ).all()
    for grant_id, status in rows:
        ended = GrantStatus.WITHDRAWN if status == _PENDING else GrantStatus.REVOKED
        await session.execute(
            update(AccessGrant)
            .where(AccessGrant.id == grant_id, AccessGrant.status == status)
            .values(status=ended.value, ended_ns=now_ns, ended_by="role change", end_note=note)
            .execution_options(synchronize_session=False)
        )
    return [str(grant_id) for grant_id, _ in rows]


async def live_grants_of_all(session: AsyncSession, now_ns: int) -> Sequence[AccessGrant]:
    query = (
        select(AccessGrant)
        .where(AccessGrant.status == _APPROVED, AccessGrant.expires_ns > now_ns)
        .order_by(AccessGrant.user_id, AccessGrant.starts_ns)
    )
    return (await session.execute(query)).scalars().all()


async def due_to_expire(session: AsyncSession, now_ns: int, limit: int) -> Sequence[AccessGrant]:
    """Pending requests past their decision deadline and grants past their end."""
    query = (
        select(AccessGrant)
        .where(
            or_(
                (AccessGrant.status == _PENDING) & (AccessGrant.decide_by_ns <= now_ns),
                (AccessGrant.status == _APPROVED) & (AccessGrant.expires_ns <= now_ns),
            )
        )
        .order_by(AccessGrant.requested_ns)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


# Break-glass reviews -----------------------------------------------------------------------------


def add_review(session: AsyncSession, row: BreakGlassReview) -> None:
    session.add(row)


async def review(session: AsyncSession, review_id: str) -> BreakGlassReview | None:
    return await session.get(BreakGlassReview, review_id, populate_existing=True)


async def reviews(
    session: AsyncSession, *, open_only: bool, limit: int = 500
) -> Sequence[tuple[BreakGlassReview, AccessGrant]]:
    query = (
        select(BreakGlassReview, AccessGrant)
        .join(AccessGrant, AccessGrant.id == BreakGlassReview.grant_id)
        .order_by(BreakGlassReview.opened_ns.desc(), BreakGlassReview.id)
        .limit(limit)
    )
    if open_only:
        query = query.where(BreakGlassReview.closed_ns.is_(None))
    return [(r, g) for r, g in (await session.execute(query)).all()]


async def close_review(
    session: AsyncSession, review_id: str, *, closed_by: str, now_ns: int, note: str
) -> bool:
    result = await session.execute(
        update(BreakGlassReview)
        .where(BreakGlassReview.id == review_id, BreakGlassReview.closed_ns.is_(None))
        .values(closed_ns=now_ns, closed_by=closed_by, note=note)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


# Permission use ----------------------------------------------------------------------------------


async def record_use(session: AsyncSession, user_id: str, permission: str, now_ns: int) -> None:
    """Remember that `user_id` used `permission` at `now_ns` (never moves the time back)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    upsert: Any = pg_insert(PermissionUse) if postgres else sqlite_insert(PermissionUse)
    column = PermissionUse.__table__.c.last_used_ns
    later = case((column < now_ns, now_ns), else_=column)
    await session.execute(
        upsert.values(
            user_id=user_id, permission=permission, last_used_ns=now_ns
        ).on_conflict_do_update(
            index_elements=["user_id", "permission"], set_={"last_used_ns": later}
        )
    )


async def last_uses(session: AsyncSession) -> dict[tuple[str, str], int]:
    rows = (await session.execute(select(PermissionUse))).scalars()
    return {(row.user_id, row.permission): row.last_used_ns for row in rows}
