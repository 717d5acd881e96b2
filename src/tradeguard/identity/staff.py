"""The staff directory that access control works with: who is staff, at which access level,
and the permissions version that every change to their access bumps (IAC-1, IAC-2)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import STAFF_ROLES, AccessLevel, Role, parse_level
from tradeguard.identity import repository
from tradeguard.identity.models import User


@dataclass(frozen=True, slots=True)
class Member:
    """A user as access control sees them (traders included: they have no level)."""

    user_id: str
    username: str
    email: str
    role: Role
    level: AccessLevel | None
    active: bool
    created_ns: int
    permissions_version: int

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


def _member(user: User) -> Member:
    role = Role(user.role)
    return Member(
        user_id=user.id,
        username=user.username,
        email=user.email,
        role=role,
        level=parse_level(user.access_level) if role in STAFF_ROLES else None,
        active=user.status == "active",
        created_ns=user.created_ns,
        permissions_version=user.permissions_version,
    )


async def member(session: AsyncSession, user_id: str) -> Member | None:
    user = await repository.user_by_id(session, user_id)
    return None if user is None else _member(user)


async def member_by_username(session: AsyncSession, username: str) -> Member | None:
    key = username.strip().casefold()
    if not key or "@" in key:
        return None
    user = await repository.user_by_login(session, key)
    return None if user is None else _member(user)


async def staff_members(
    session: AsyncSession, roles: frozenset[Role] = STAFF_ROLES
) -> list[Member]:
    """Staff of the given roles, by username (active or not)."""
    return [
        _member(u) for u in await repository.users_with_roles(session, {r.value for r in roles})
    ]


async def permissions_changed(session: AsyncSession, user_id: str) -> int:
    """Bump the user's permissions version; the new version (0 if there is no such user)."""
    return await repository.bump_permissions_version(session, user_id) or 0


async def change_level(session: AsyncSession, user_id: str, level: AccessLevel) -> int:
    """Set a staff member's standing level and bump their permissions version."""
    return (
        await repository.bump_permissions_version(session, user_id, access_level=level.value) or 0
    )
