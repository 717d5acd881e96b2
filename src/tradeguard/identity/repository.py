"""Every query of the identity domain."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.identity.models import User


async def user_by_id(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def user_by_login(session: AsyncSession, login: str) -> User | None:
    """Find by username or email (both stored case-folded)."""
    key = login.strip().casefold()
    column = User.email if "@" in key else User.username
    return (await session.execute(select(User).where(column == key))).scalar_one_or_none()


async def username_or_email_taken(session: AsyncSession, username: str, email: str) -> bool:
    query = select(func.count()).where((User.username == username) | (User.email == email))
    return int((await session.execute(query)).scalar_one()) > 0


def add(session: AsyncSession, row: object) -> None:
    session.add(row)
