"""Every query of identity documents."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.kyc.documents.models import KycDocument, KycDocumentChunk, KycDocumentRefusal


def add(session: AsyncSession, row: KycDocument, chunks: Sequence[bytes]) -> None:
    session.add(row)
    session.add_all(
        KycDocumentChunk(document_id=row.id, seq=index, blob=blob)
        for index, blob in enumerate(chunks)
    )


async def document(
    session: AsyncSession, document_id: str, *, user_id: str | None = None, lock: bool = False
) -> KycDocument | None:
    query = select(KycDocument).where(KycDocument.id == document_id)
    if user_id is not None:
        query = query.where(KycDocument.user_id == user_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def documents_of(session: AsyncSession, user_id: str) -> Sequence[KycDocument]:
    query = (
        select(KycDocument)
        .where(KycDocument.user_id == user_id)
        .order_by(KycDocument.created_ns.desc(), KycDocument.id)
    )
    return (await session.execute(query)).scalars().all()


async def count_of(session: AsyncSession, user_id: str, *, since_ns: int | None = None) -> int:
    query = select(func.count()).select_from(KycDocument).where(KycDocument.user_id == user_id)
    if since_ns is not None:
        query = query.where(KycDocument.created_ns >= since_ns)
    return int((await session.execute(query)).scalar_one())


async def with_status(
    session: AsyncSession, statuses: Sequence[str], *, limit: int
) -> Sequence[KycDocument]:
    query = (
        select(KycDocument)
        .where(KycDocument.status.in_(statuses))
        .order_by(KycDocument.created_ns, KycDocument.id)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def chunks_of(session: AsyncSession, document_id: str) -> list[bytes]:
    query = (
        select(KycDocumentChunk.blob)
        .where(KycDocumentChunk.document_id == document_id)
        .order_by(KycDocumentChunk.seq)
    )
    return [bytes(blob) for blob in (await session.execute(query)).scalars().all()]


def add_refusal(session: AsyncSession, row: KycDocumentRefusal) -> None:
    session.add(row)


async def refusals_since(session: AsyncSession, user_id: str, since_ns: int) -> list[int]:
    """When the user's uploads were refused since `since_ns`, oldest first."""
    query = (
        select(KycDocumentRefusal.created_ns)
        .where(KycDocumentRefusal.user_id == user_id, KycDocumentRefusal.created_ns >= since_ns)
        .order_by(KycDocumentRefusal.created_ns)
    )
    return list((await session.execute(query)).scalars().all())


async def forget_refusals_before(session: AsyncSession, user_id: str, before_ns: int) -> None:
    await session.execute(
        delete(KycDocumentRefusal).where(
            KycDocumentRefusal.user_id == user_id, KycDocumentRefusal.created_ns < before_ns
        )
    )
