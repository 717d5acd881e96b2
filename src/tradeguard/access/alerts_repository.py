"""Every query of the access alerts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.alerts_models import (
    AccessAlert,
    AccessDetectorCheckpoint,
    AccessStaffNetwork,
)
from tradeguard.access.anomalies import AlertStatus


@dataclass(frozen=True, slots=True)
class AlertFilter:
    status: str | None = None
    rule: str | None = None
    severity: str | None = None
    staff_user_id: str | None = None
    before_id: str | None = None
    limit: int = 100


async def lock_checkpoint(
    session: AsyncSession, name: str, now_ns: int
) -> AccessDetectorCheckpoint:
    """The detector's checkpoint row, locked until the transaction ends (PostgreSQL: FOR
    UPDATE, so two detector processes take turns; SQLite: its write lock already does)."""
    query = select(AccessDetectorCheckpoint).where(AccessDetectorCheckpoint.name == name)
    row = (await session.execute(query.with_for_update())).scalar_one_or_none()
    if row is None:
        # The migration seeds the row; a detector of another name starts from the beginning.
        row = AccessDetectorCheckpoint(name=name, last_seq=0, updated_ns=now_ns)
        session.add(row)
        await session.flush()
    return row


async def checkpoint(session: AsyncSession, name: str) -> AccessDetectorCheckpoint | None:
    return await session.get(AccessDetectorCheckpoint, name)


async def networks_of(
    session: AsyncSession, staff_ids: Sequence[str]
) -> dict[str, dict[str, AccessStaffNetwork]]:
    """Each staff member's known networks by key."""
    if not staff_ids:
        return {}
    rows = (
        await session.execute(
            select(AccessStaffNetwork).where(AccessStaffNetwork.staff_user_id.in_(list(staff_ids)))
        )
    ).scalars()
    found: dict[str, dict[str, AccessStaffNetwork]] = {}
    for row in rows:
        found.setdefault(row.staff_user_id, {})[row.network_key] = row
    return found


def add(session: AsyncSession, row: object) -> None:
    session.add(row)


async def live_alert(
    session: AsyncSession, *, rule: str, staff_user_id: str, dedup_key: str
) -> AccessAlert | None:
    """The newest alert of this rule, staff member and key that is not closed, locked (a
    review closing it meanwhile is waited for, and then it no longer matches)."""
    query = (
        select(AccessAlert)
        .where(
            AccessAlert.rule == rule,
            AccessAlert.staff_user_id == staff_user_id,
            AccessAlert.dedup_key == dedup_key,
            AccessAlert.status != AlertStatus.CLOSED.value,
        )
        .order_by(AccessAlert.window_end_ns.desc(), AccessAlert.id.desc())
        .limit(1)
        .with_for_update()
    )
    return (await session.execute(query)).scalar_one_or_none()


async def alert(
    session: AsyncSession, alert_id: str, *, for_update: bool = False
) -> AccessAlert | None:
    query = select(AccessAlert).where(AccessAlert.id == alert_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def alerts(session: AsyncSession, where: AlertFilter) -> Sequence[AccessAlert]:
    """Alerts matching the filter, newest first (ids are time-ordered UUIDv7)."""
    query = select(AccessAlert)
    if where.status is not None:
        query = query.where(AccessAlert.status == where.status)
    if where.rule is not None:
        query = query.where(AccessAlert.rule == where.rule)
    if where.severity is not None:
        query = query.where(AccessAlert.severity == where.severity)
    if where.staff_user_id is not None:
        query = query.where(AccessAlert.staff_user_id == where.staff_user_id)
    if where.before_id is not None:
        query = query.where(AccessAlert.id < where.before_id)
    query = query.order_by(AccessAlert.id.desc()).limit(where.limit)
    return (await session.execute(query)).scalars().all()
