"""Every query of the vault database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.vault.models import VaultAccessRow, VaultCardRow


async def insert_card(session: AsyncSession, row: VaultCardRow) -> None:
    session.add(row)
    await session.flush()


async def card(session: AsyncSession, token: str) -> VaultCardRow | None:
    return await session.get(VaultCardRow, token)


async def cards(session: AsyncSession, tokens: Sequence[str]) -> Sequence[VaultCardRow]:
    rows = await session.execute(select(VaultCardRow).where(VaultCardRow.token.in_(tokens)))
    return rows.scalars().all()


async def tokens_with_fingerprint(session: AsyncSession, fingerprint: bytes) -> Sequence[str]:
    rows = await session.execute(
        select(VaultCardRow.token)
        .where(VaultCardRow.fingerprint == fingerprint)
        .order_by(VaultCardRow.created_ns, VaultCardRow.token)
    )
    return rows.scalars().all()


async def delete_card(session: AsyncSession, token: str) -> bool:
    result = await session.execute(delete(VaultCardRow).where(VaultCardRow.token == token))
    return bool(getattr(result, "rowcount", 0))


async def log_access(session: AsyncSession, values: Mapping[str, Any]) -> None:
    await session.execute(insert(VaultAccessRow).values(**values))


async def access_log(session: AsyncSession, limit: int = 1000) -> Sequence[VaultAccessRow]:
    rows = await session.execute(
        select(VaultAccessRow).order_by(VaultAccessRow.occurred_ns, VaultAccessRow.id).limit(limit)
    )
    return rows.scalars().all()


async def card_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(VaultCardRow)) or 0)
