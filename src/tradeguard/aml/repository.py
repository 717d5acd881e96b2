"""Every query of AML monitoring, CTRs, cases and filings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.aml.models import (
    AmlAlert,
    AmlCase,
    AmlCaseNote,
    AmlCheckpoint,
    AmlCtr,
    AmlFiling,
    AmlMovement,
)


async def lock_checkpoint(session: AsyncSession, name: str, now_ns: int) -> AmlCheckpoint:
    """The monitor's checkpoint row, locked until the transaction ends (PostgreSQL: FOR
    UPDATE, so monitors in several processes take turns; SQLite: its write lock does)."""
    query = select(AmlCheckpoint).where(AmlCheckpoint.name == name).with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        # The migration seeds the default row; a monitor of another name starts at the
        # beginning of the ledger.
        row = AmlCheckpoint(name=name, last_seq=0, events_read=0, updated_ns=now_ns)
        session.add(row)
        await session.flush()
    return row


async def checkpoint(session: AsyncSession, name: str) -> AmlCheckpoint | None:
    return await session.get(AmlCheckpoint, name)


# Movements ------------------------------------------------------------------------------------


async def movement(session: AsyncSession, movement_id: str) -> AmlMovement | None:
    return await session.get(AmlMovement, movement_id)


async def existing_movement_ids(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    query = select(AmlMovement.id).where(AmlMovement.id.in_(list(ids)))
    return set((await session.execute(query)).scalars().all())


async def movements_by_id(session: AsyncSession, ids: Sequence[str]) -> Sequence[AmlMovement]:
    if not ids:
        return []
    query = select(AmlMovement).where(AmlMovement.id.in_(list(ids))).order_by(AmlMovement.seq)
    return (await session.execute(query)).scalars().all()


async def movements_since(
    session: AsyncSession, user_id: str, since_ns: int, through_seq: int
) -> Sequence[AmlMovement]:
    query = (
        select(AmlMovement)
        .where(
            AmlMovement.user_id == user_id,
            AmlMovement.ts_ns >= since_ns,
            AmlMovement.seq <= through_seq,
        )
        .order_by(AmlMovement.seq)
    )
    return (await session.execute(query)).scalars().all()


async def previous_activity_ns(
    session: AsyncSession, account_id: str, before_seq: int
) -> int | None:
    query = select(func.max(AmlMovement.ts_ns)).where(
        AmlMovement.account_id == account_id, AmlMovement.seq < before_seq
    )
    value = (await session.execute(query)).scalar_one_or_none()
    return int(value) if value is not None else None


async def cash_totals_before(
    session: AsyncSession, user_id: str, before_seq: int
) -> list[tuple[str, Decimal]]:
    """(kind, amount) of the person's deposits and withdrawals before `before_seq` (summed
    in Python: amounts are stored as decimal strings)."""
    query = select(AmlMovement.kind, AmlMovement.amount).where(
        AmlMovement.user_id == user_id,
        AmlMovement.seq < before_seq,
        AmlMovement.kind.in_(("deposit", "withdrawal", "return")),
    )
    return [(str(kind), amount) for kind, amount in (await session.execute(query)).all()]


# Alerts ---------------------------------------------------------------------------------------


async def alert_in_window(
    session: AsyncSession, rule: str, user_id: str, window_key: str
) -> AmlAlert | None:
    query = select(AmlAlert).where(
        AmlAlert.rule == rule, AmlAlert.user_id == user_id, AmlAlert.window_key == window_key
    )
    return (await session.execute(query.with_for_update())).scalar_one_or_none()


async def alert(session: AsyncSession, alert_id: str, *, lock: bool = False) -> AmlAlert | None:
    return await session.get(AmlAlert, alert_id, with_for_update=lock)


@dataclass(frozen=True, slots=True)
class AlertFilter:
    status: str | None = None
    rule: str | None = None
    user_id: str | None = None
    limit: int = 100


async def alerts(session: AsyncSession, where: AlertFilter) -> Sequence[AmlAlert]:
    query = select(AmlAlert)
    if where.status is not None:
        query = query.where(AmlAlert.status == where.status)
    if where.rule is not None:
        query = query.where(AmlAlert.rule == where.rule)
    if where.user_id is not None:
        query = query.where(AmlAlert.user_id == where.user_id)
    query = query.order_by(AmlAlert.created_ns.desc(), AmlAlert.id).limit(where.limit)
    return (await session.execute(query)).scalars().all()


async def alerts_of_case(session: AsyncSession, case_id: str) -> Sequence[AmlAlert]:
    query = select(AmlAlert).where(AmlAlert.case_id == case_id).order_by(AmlAlert.created_ns)
    return (await session.execute(query)).scalars().all()


async def alerts_by_id(
    session: AsyncSession, ids: Sequence[str], *, lock: bool = False
) -> Sequence[AmlAlert]:
    query = select(AmlAlert).where(AmlAlert.id.in_(list(ids))).order_by(AmlAlert.id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalars().all()


# CTRs -----------------------------------------------------------------------------------------


async def ctr_of(session: AsyncSession, user_id: str, day: str, direction: str) -> AmlCtr | None:
    query = select(AmlCtr).where(
        AmlCtr.user_id == user_id, AmlCtr.day == day, AmlCtr.direction == direction
    )
    return (await session.execute(query.with_for_update())).scalar_one_or_none()


async def ctr(session: AsyncSession, ctr_id: str) -> AmlCtr | None:
    return await session.get(AmlCtr, ctr_id)


async def ctrs(
    session: AsyncSession, *, status: str | None, user_id: str | None, limit: int
) -> Sequence[AmlCtr]:
    query = select(AmlCtr)
    if status is not None:
        query = query.where(AmlCtr.status == status)
    if user_id is not None:
        query = query.where(AmlCtr.user_id == user_id)
    query = query.order_by(AmlCtr.day.desc(), AmlCtr.id).limit(limit)
    return (await session.execute(query)).scalars().all()


async def ctrs_on(session: AsyncSession, user_id: str, day: str) -> Sequence[AmlCtr]:
    query = select(AmlCtr).where(AmlCtr.user_id == user_id, AmlCtr.day == day)
    return (await session.execute(query)).scalars().all()


# Cases ----------------------------------------------------------------------------------------


async def case(session: AsyncSession, case_id: str, *, lock: bool = False) -> AmlCase | None:
    return await session.get(AmlCase, case_id, with_for_update=lock)


async def cases(
    session: AsyncSession, *, status: str | None, assignee: str | None, limit: int
) -> Sequence[AmlCase]:
    query = select(AmlCase)
    if status is not None:
        query = query.where(AmlCase.status == status)
    if assignee is not None:
        query = query.where(AmlCase.assignee == assignee)
    query = query.order_by(AmlCase.due_ns, AmlCase.id).limit(limit)
    return (await session.execute(query)).scalars().all()


async def open_case_ids(session: AsyncSession, limit: int) -> Sequence[str]:
    query = (
        select(AmlCase.id)
        .where(AmlCase.status.in_(("open", "pending_second")))
        .order_by(AmlCase.due_ns)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def notes(session: AsyncSession, case_id: str) -> Sequence[AmlCaseNote]:
    query = select(AmlCaseNote).where(AmlCaseNote.case_id == case_id)
    return (await session.execute(query.order_by(AmlCaseNote.created_ns))).scalars().all()


# Filings --------------------------------------------------------------------------------------


async def filing(session: AsyncSession, filing_id: str) -> AmlFiling | None:
    return await session.get(AmlFiling, filing_id)


async def filings_of(session: AsyncSession, kind: str, ref_id: str) -> Sequence[AmlFiling]:
    query = select(AmlFiling).where(AmlFiling.kind == kind, AmlFiling.ref_id == ref_id)
    return (await session.execute(query.order_by(AmlFiling.created_ns))).scalars().all()


# Retention ------------------------------------------------------------------------------------


async def purge_before(session: AsyncSession, cutoff_ns: int) -> dict[str, int]:
    """Delete AML records created before `cutoff_ns`; a case goes only once decided, with
    its notes and its alerts."""
    counts: dict[str, int] = {}
    old_cases = (
        (
            await session.execute(
                select(AmlCase.id).where(
                    AmlCase.created_ns < cutoff_ns, AmlCase.status.in_(("closed", "sar_filed"))
                )
            )
        )
        .scalars()
        .all()
    )
    if old_cases:
        counts["case_notes"] = await _deleted(
            session, delete(AmlCaseNote).where(AmlCaseNote.case_id.in_(old_cases))
        )
        counts["cases"] = await _deleted(session, delete(AmlCase).where(AmlCase.id.in_(old_cases)))
    counts["filings"] = await _deleted(
        session, delete(AmlFiling).where(AmlFiling.created_ns < cutoff_ns)
    )
    counts["alerts"] = await _deleted(
        session,
        delete(AmlAlert).where(
            AmlAlert.created_ns < cutoff_ns,
            (AmlAlert.case_id.is_(None)) | (AmlAlert.case_id.in_(old_cases)),
        ),
    )
    counts["ctrs"] = await _deleted(session, delete(AmlCtr).where(AmlCtr.created_ns < cutoff_ns))
    counts["movements"] = await _deleted(
        session, delete(AmlMovement).where(AmlMovement.ts_ns < cutoff_ns)
    )
    return counts


async def _deleted(session: AsyncSession, statement: object) -> int:
    result = await session.execute(statement)  # type: ignore[call-overload]
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_filing(session: AsyncSession, row: AmlFiling) -> None:
    await session.delete(row)
