"""Every onboarding query."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.kyc.onboarding.domain import OPEN, ApplicationStatus
from tradeguard.kyc.onboarding.models import Application


def add(session: AsyncSession, row: Application) -> None:
    session.add(row)


async def application(
    session: AsyncSession, application_id: str, *, lock: bool = False
) -> Application | None:
    query = select(Application).where(Application.id == application_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def latest_of(
    session: AsyncSession, user_id: str, *, lock: bool = False
) -> Application | None:
    """The user's newest application (ids are time-ordered)."""
    query = (
        select(Application)
        .where(Application.user_id == user_id)
        .order_by(Application.created_ns.desc(), Application.id.desc())
        .limit(1)
    )
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def open_of(session: AsyncSession, user_id: str) -> Application | None:
    query = select(Application).where(
        Application.user_id == user_id, Application.status.in_([s.value for s in OPEN])
    )
    return (await session.execute(query.limit(1))).scalar_one_or_none()


async def approved_of(session: AsyncSession, user_id: str) -> Application | None:
    query = (
        select(Application)
        .where(
            Application.user_id == user_id,
            Application.status == ApplicationStatus.APPROVED.value,
        )
        .order_by(Application.decided_ns.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def by_status(
    session: AsyncSession, statuses: Sequence[ApplicationStatus], limit: int = 200
) -> Sequence[Application]:
    query = (
        select(Application)
        .where(Application.status.in_([s.value for s in statuses]))
        .order_by(Application.submitted_ns, Application.created_ns, Application.id)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def others_with_tax_id(
    session: AsyncSession, forms: Sequence[bytes], user_id: str
) -> Sequence[Application]:
    """Other users' applications holding the same tax id (any live index version)."""
    query = select(Application).where(
        Application.tax_id_index.in_(list(forms)),
        Application.user_id != user_id,
        Application.status != ApplicationStatus.WITHDRAWN.value,
    )
    return (await session.execute(query)).scalars().all()


async def reviews_due(session: AsyncSession, on_or_before: str) -> Sequence[Application]:
    query = (
        select(Application)
        .where(
            Application.status == ApplicationStatus.APPROVED.value,
            Application.next_review_on.is_not(None),
            Application.next_review_on <= on_or_before,
        )
        .order_by(Application.next_review_on, Application.id)
    )
    return (await session.execute(query)).scalars().all()


async def approved(session: AsyncSession) -> Sequence[Application]:
    query = (
        select(Application)
        .where(Application.status == ApplicationStatus.APPROVED.value)
        .order_by(Application.id)
    )
    return (await session.execute(query)).scalars().all()
