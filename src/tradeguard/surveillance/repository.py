"""Every query of market surveillance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.surveillance.domain import CaseStatus
from tradeguard.surveillance.models import (
    SurveillanceAction,
    SurveillanceActionRule,
    SurveillanceAlert,
    SurveillanceCase,
    SurveillanceCaseAlert,
    SurveillanceCaseEntry,
    SurveillanceCheckpoint,
    SurveillanceLink,
    SurveillanceReport,
)


@dataclass(frozen=True, slots=True)
class AlertFilter:
    alert_type: str | None = None
    detector: str | None = None
    symbol: str | None = None
    owner: str | None = None
    account_id: str | None = None
    before_id: str | None = None
    limit: int = 100
    status: str | None = None


async def lock_checkpoint(session: AsyncSession, name: str, now_ns: int) -> SurveillanceCheckpoint:
    """The consumer's checkpoint row, locked until the transaction ends (PostgreSQL: FOR
    UPDATE, so consumers in several processes take turns; SQLite: its write lock does)."""
    query = select(SurveillanceCheckpoint).where(SurveillanceCheckpoint.name == name)
    row = (await session.execute(query.with_for_update())).scalar_one_or_none()
    if row is None:
        # The migration seeds the default row; a consumer of another name starts at the
        # beginning of the ledger.
        row = SurveillanceCheckpoint(
            name=name,
            last_seq=0,
            replay_from_seq=None,
            replay_floor_ns=0,
            events_read=0,
            updated_ns=now_ns,
        )
        session.add(row)
        await session.flush()
    return row


async def checkpoint(session: AsyncSession, name: str) -> SurveillanceCheckpoint | None:
    return await session.get(SurveillanceCheckpoint, name)


def add(session: AsyncSession, row: object) -> None:
    session.add(row)


async def latest_alert(
    session: AsyncSession, *, alert_type: str, owner: str, symbol: str
) -> SurveillanceAlert | None:
    """The alert of this type, owner and symbol with the latest trigger, locked."""
    query = (
        select(SurveillanceAlert)
        .where(
            SurveillanceAlert.alert_type == alert_type,
            SurveillanceAlert.owner == owner,
            SurveillanceAlert.symbol == symbol,
        )
        .order_by(SurveillanceAlert.latest_trigger_ns.desc(), SurveillanceAlert.id.desc())
        .limit(1)
        .with_for_update()
    )
    return (await session.execute(query)).scalar_one_or_none()


async def alert(session: AsyncSession, alert_id: str) -> SurveillanceAlert | None:
    return await session.get(SurveillanceAlert, alert_id)


async def alerts(session: AsyncSession, where: AlertFilter) -> Sequence[SurveillanceAlert]:
    """Alerts matching the filter, newest first (ids are time-ordered UUIDv7)."""
    query = select(SurveillanceAlert)
    if where.alert_type is not None:
        query = query.where(SurveillanceAlert.alert_type == where.alert_type)
    if where.detector is not None:
        query = query.where(SurveillanceAlert.detector == where.detector)
    if where.symbol is not None:
        query = query.where(SurveillanceAlert.symbol == where.symbol)
    if where.owner is not None:
        query = query.where(SurveillanceAlert.owner == where.owner)
    if where.status is not None:
        query = query.where(SurveillanceAlert.status == where.status)
    if where.before_id is not None:
        query = query.where(SurveillanceAlert.id < where.before_id)
    query = query.order_by(SurveillanceAlert.id.desc())
    if where.account_id is None:
        return (await session.execute(query.limit(where.limit))).scalars().all()
    # The accounts are a JSON list (no portable index into it): filter page by page.
    found: list[SurveillanceAlert] = []
    page_query = query.limit(max(where.limit, 200))
    while len(found) < where.limit:
        page = (await session.execute(page_query)).scalars().all()
        found.extend(row for row in page if where.account_id in row.accounts)
        if len(page) < max(where.limit, 200):
            break
        page_query = query.where(SurveillanceAlert.id < page[-1].id).limit(max(where.limit, 200))
    return found[: where.limit]


async def links(
    session: AsyncSession,
    *,
    kind: str | None = None,
    status: str | None = None,
    before_id: str | None = None,
    limit: int | None = None,
) -> Sequence[SurveillanceLink]:
    """Links matching the filters, newest first (ids are time-ordered UUIDv7); all of them
    without a `limit`."""
    query = select(SurveillanceLink)
    if kind is not None:
        query = query.where(SurveillanceLink.kind == kind)
    if status is not None:
        query = query.where(SurveillanceLink.status == status)
    if before_id is not None:
        query = query.where(SurveillanceLink.id < before_id)
    query = query.order_by(SurveillanceLink.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return (await session.execute(query)).scalars().all()


async def links_signature(session: AsyncSession) -> tuple[int, int, str | None]:
    """(links, active links, the newest id): changes whenever a link is added, removed or
    dismissed (ids are time-ordered UUIDv7), so a reader can keep the live links cached."""
    query = select(
        func.count(),
        func.count().filter(SurveillanceLink.status == "active"),
        func.max(SurveillanceLink.id),
    ).select_from(SurveillanceLink)
    row = (await session.execute(query)).one()
    return int(row[0]), int(row[1]), row[2]


async def account_link(
    session: AsyncSession, kind: str, account_a: str, account_b: str
) -> SurveillanceLink | None:
    query = select(SurveillanceLink).where(
        SurveillanceLink.kind == kind,
        SurveillanceLink.account_a == account_a,
        SurveillanceLink.account_b == account_b,
    )
    return (await session.execute(query)).scalar_one_or_none()


async def linked_pairs(session: AsyncSession, kind: str) -> set[tuple[str, str]]:
    """Every pair (accounts or users) a link of this kind joins, dismissed ones included."""
    query = select(
        SurveillanceLink.account_a,
        SurveillanceLink.account_b,
        SurveillanceLink.user_a,
        SurveillanceLink.user_b,
    ).where(SurveillanceLink.kind == kind)
    found: set[tuple[str, str]] = set()
    for row in await session.execute(query):
        if row.user_a is not None and row.user_b is not None:
            found.add((row.user_a, row.user_b))
        elif row.account_a is not None and row.account_b is not None:
            found.add((row.account_a, row.account_b))
    return found


async def link_by_id(
    session: AsyncSession, link_id: str, *, lock: bool = False
) -> SurveillanceLink | None:
    query = select(SurveillanceLink).where(SurveillanceLink.id == link_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def remove_link(session: AsyncSession, link_id: str) -> None:
    await session.execute(delete(SurveillanceLink).where(SurveillanceLink.id == link_id))


# Cases ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseFilter:
    status: str | None = None
    assignee: str | None = None
    before_id: str | None = None
    limit: int = 100


async def case(
    session: AsyncSession, case_id: str, *, lock: bool = False
) -> SurveillanceCase | None:
    query = select(SurveillanceCase).where(SurveillanceCase.id == case_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def cases(session: AsyncSession, where: CaseFilter) -> Sequence[SurveillanceCase]:
    """Cases matching the filter, newest first."""
    query = select(SurveillanceCase)
    if where.status is not None:
        query = query.where(SurveillanceCase.status == where.status)
    if where.assignee is not None:
        query = query.where(SurveillanceCase.assignee == where.assignee)
    if where.before_id is not None:
        query = query.where(SurveillanceCase.id < where.before_id)
    query = query.order_by(SurveillanceCase.id.desc()).limit(where.limit)
    return (await session.execute(query)).scalars().all()


async def alerts_by_ids(
    session: AsyncSession, alert_ids: Sequence[str], *, lock: bool = False
) -> dict[str, SurveillanceAlert]:
    if not alert_ids:
        return {}
    query = select(SurveillanceAlert).where(SurveillanceAlert.id.in_(sorted(set(alert_ids))))
    if lock:
        query = query.with_for_update()
    return {row.id: row for row in (await session.execute(query)).scalars()}


async def case_memberships(
    session: AsyncSession, alert_ids: Sequence[str]
) -> dict[str, SurveillanceCaseAlert]:
    """The case each of these alerts is in (alerts in none are left out)."""
    if not alert_ids:
        return {}
    query = select(SurveillanceCaseAlert).where(
        SurveillanceCaseAlert.alert_id.in_(sorted(set(alert_ids)))
    )
    return {row.alert_id: row for row in (await session.execute(query)).scalars()}


async def in_closed_case(session: AsyncSession, alert_id: str) -> bool:
    """Whether the alert is in a closed case (a decided alert: nothing folds into it)."""
    query = (
        select(SurveillanceCaseAlert.alert_id)
        .join(SurveillanceCase, SurveillanceCase.id == SurveillanceCaseAlert.case_id)
        .where(
            SurveillanceCaseAlert.alert_id == alert_id,
            SurveillanceCase.status == CaseStatus.CLOSED.value,
        )
    )
    return (await session.execute(query)).first() is not None


async def case_alert_ids(session: AsyncSession, case_id: str) -> list[str]:
    query = (
        select(SurveillanceCaseAlert.alert_id)
        .where(SurveillanceCaseAlert.case_id == case_id)
        .order_by(SurveillanceCaseAlert.added_ns, SurveillanceCaseAlert.alert_id)
    )
    return list((await session.execute(query)).scalars())


async def remove_case_alert(session: AsyncSession, case_id: str, alert_id: str) -> None:
    await session.execute(
        delete(SurveillanceCaseAlert).where(
            SurveillanceCaseAlert.case_id == case_id, SurveillanceCaseAlert.alert_id == alert_id
        )
    )


async def case_entries(session: AsyncSession, case_id: str) -> Sequence[SurveillanceCaseEntry]:
    query = (
        select(SurveillanceCaseEntry)
        .where(SurveillanceCaseEntry.case_id == case_id)
        .order_by(SurveillanceCaseEntry.id)
    )
    return (await session.execute(query)).scalars().all()


# Actions -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionFilter:
    account_id: str | None = None
    alert_id: str | None = None
    status: str | None = None
    before_id: str | None = None
    limit: int = 100


async def action_rules(session: AsyncSession) -> Sequence[SurveillanceActionRule]:
    query = select(SurveillanceActionRule).order_by(
        SurveillanceActionRule.alert_type, SurveillanceActionRule.min_score
    )
    return (await session.execute(query)).scalars().all()


async def clear_action_rules(session: AsyncSession) -> None:
    await session.execute(delete(SurveillanceActionRule))


async def actions_of_alert(session: AsyncSession, alert_id: str) -> Sequence[SurveillanceAction]:
    query = select(SurveillanceAction).where(SurveillanceAction.alert_id == alert_id)
    return (await session.execute(query)).scalars().all()


async def action(
    session: AsyncSession, action_id: str, *, lock: bool = False
) -> SurveillanceAction | None:
    query = select(SurveillanceAction).where(SurveillanceAction.id == action_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def actions(session: AsyncSession, where: ActionFilter) -> Sequence[SurveillanceAction]:
    query = select(SurveillanceAction)
    if where.account_id is not None:
        query = query.where(SurveillanceAction.account_id == where.account_id)
    if where.alert_id is not None:
        query = query.where(SurveillanceAction.alert_id == where.alert_id)
    if where.status is not None:
        query = query.where(SurveillanceAction.status == where.status)
    if where.before_id is not None:
        query = query.where(SurveillanceAction.id < where.before_id)
    query = query.order_by(SurveillanceAction.id.desc()).limit(where.limit)
    return (await session.execute(query)).scalars().all()


# Reports -------------------------------------------------------------------------------------


async def report_of_case(
    session: AsyncSession, case_id: str, *, lock: bool = False
) -> SurveillanceReport | None:
    query = select(SurveillanceReport).where(SurveillanceReport.case_id == case_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def reports(
    session: AsyncSession, *, overdue_at_ns: int | None, limit: int
) -> Sequence[SurveillanceReport]:
    """Report drafts by due date, soonest first; with `overdue_at_ns`, only those not filed
    and past due at that time."""
    query = select(SurveillanceReport)
    if overdue_at_ns is not None:
        query = query.where(
            SurveillanceReport.filed_ns.is_(None), SurveillanceReport.due_ns <= overdue_at_ns
        )
    query = query.order_by(SurveillanceReport.due_ns, SurveillanceReport.id).limit(limit)
    return (await session.execute(query)).scalars().all()
