"""Every sanctions query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.kyc.sanctions.models import (
    SanctionsEntry,
    SanctionsHit,
    SanctionsListVersion,
    SanctionsName,
    SanctionsRescreen,
)

# Rows per INSERT statement when a list is stored (SQLite's bound-parameter limit).
_CHUNK = 500


async def current_version(session: AsyncSession, list_name: str) -> SanctionsListVersion | None:
    result = await session.execute(
        select(SanctionsListVersion)
        .where(SanctionsListVersion.list_name == list_name)
        .order_by(SanctionsListVersion.loaded_ns.desc(), SanctionsListVersion.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def versions(session: AsyncSession, limit: int = 50) -> Sequence[SanctionsListVersion]:
    result = await session.execute(
        select(SanctionsListVersion)
        .order_by(SanctionsListVersion.loaded_ns.desc(), SanctionsListVersion.id.desc())
        .limit(limit)
    )
    return result.scalars().all()


async def version(session: AsyncSession, version_id: str) -> SanctionsListVersion | None:
    return await session.get(SanctionsListVersion, version_id)


def add(session: AsyncSession, row: object) -> None:
    session.add(row)


async def insert_entries(
    session: AsyncSession, entries: list[dict[str, Any]], names: list[dict[str, Any]]
) -> None:
    for start in range(0, len(entries), _CHUNK):
        await session.execute(insert(SanctionsEntry), entries[start : start + _CHUNK])
    for start in range(0, len(names), _CHUNK):
        await session.execute(insert(SanctionsName), names[start : start + _CHUNK])


async def entries_of(session: AsyncSession, version_id: str) -> Sequence[SanctionsEntry]:
    result = await session.execute(
        select(SanctionsEntry).where(SanctionsEntry.version_id == version_id)
    )
    return result.scalars().all()


async def names_of(session: AsyncSession, version_id: str) -> Sequence[tuple[str, str, str]]:
    result = await session.execute(
        select(SanctionsName.entry_id, SanctionsName.kind, SanctionsName.name)
        .where(SanctionsName.version_id == version_id)
        .order_by(SanctionsName.id)
    )
    return [(r[0], r[1], r[2]) for r in result.all()]


async def entry(session: AsyncSession, version_id: str, entry_id: str) -> SanctionsEntry | None:
    return await session.get(SanctionsEntry, (version_id, entry_id))


async def hits_of_subject(
    session: AsyncSession, kind: str, ref: str, *, lock: bool = False
) -> Sequence[SanctionsHit]:
    query = (
        select(SanctionsHit)
        .where(SanctionsHit.subject_kind == kind, SanctionsHit.subject_ref == ref)
        .order_by(SanctionsHit.created_ns, SanctionsHit.id)
    )
    if lock:
        query = query.with_for_update()
    result = await session.execute(query)
    return result.scalars().all()


async def hit(session: AsyncSession, hit_id: str, *, lock: bool = False) -> SanctionsHit | None:
    query = select(SanctionsHit).where(SanctionsHit.id == hit_id)
    if lock:
        query = query.with_for_update()
    result = await session.execute(query)
    return result.scalar_one_or_none()


async def hits(
    session: AsyncSession,
    *,
    status: str | None = None,
    subject_kind: str | None = None,
    subject_ref: str | None = None,
    limit: int = 100,
) -> Sequence[SanctionsHit]:
    query = select(SanctionsHit)
    if status is not None:
        query = query.where(SanctionsHit.status == status)
    if subject_kind is not None:
        query = query.where(SanctionsHit.subject_kind == subject_kind)
    if subject_ref is not None:
        query = query.where(SanctionsHit.subject_ref == subject_ref)
    result = await session.execute(
        query.order_by(SanctionsHit.created_ns.desc(), SanctionsHit.id.desc()).limit(limit)
    )
    return result.scalars().all()


async def known_pairs(session: AsyncSession) -> set[tuple[str, str, str, str]]:
    """(subject kind, subject ref, entry id, entry content hash) of every hit on file."""
    result = await session.execute(
        select(
            SanctionsHit.subject_kind,
            SanctionsHit.subject_ref,
            SanctionsHit.entry_id,
            SanctionsHit.entry_hash,
        )
    )
    return {(r[0], r[1], r[2], r[3]) for r in result.all()}


async def hit_count(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(SanctionsHit))).scalar_one())


async def rescreen(session: AsyncSession, rescreen_id: str) -> SanctionsRescreen | None:
    return await session.get(SanctionsRescreen, rescreen_id)


async def rescreens(session: AsyncSession, limit: int = 20) -> Sequence[SanctionsRescreen]:
    result = await session.execute(
        select(SanctionsRescreen)
        .order_by(SanctionsRescreen.started_ns.desc(), SanctionsRescreen.id.desc())
        .limit(limit)
    )
    return result.scalars().all()
