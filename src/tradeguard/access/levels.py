"""Standing access levels of staff members (IAC-2): set by an admin or the operator."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.common import (
    MAX_REASON_CHARS,
    AccessDeps,
    Actor,
    Authority,
    acting_staff,
    approving_sources,
    clean_text,
    find_member,
    notify,
    require,
)
from tradeguard.access.domain import AccessEvent, AccessLevel, Permission, standing_permissions
from tradeguard.core.errors import Conflict, Forbidden, InvalidInput
from tradeguard.identity import staff
from tradeguard.identity.staff import Member
from tradeguard.ledger.domain import LedgerEvent, Party


def _raises(target: Member, wanted: AccessLevel) -> bool:
    """Whether `wanted` gives the member any permission their current level does not."""
    current = standing_permissions(target.role, target.level)
    return not standing_permissions(target.role, wanted) <= current


async def _independent(
    session: AsyncSession, changer: Authority, target: Member, now_ns: int
) -> bool:
    return changer.holds(Permission.ACCESS_APPROVE) and bool(
        await approving_sources(session, changer, requester=target.user_id, now_ns=now_ns)
    )


@dataclass(frozen=True, slots=True)
class LevelChange:
    member: Member
    previous: AccessLevel | None
    level: AccessLevel
    permissions_version: int


class LevelService:
    def __init__(self, deps: AccessDeps) -> None:
        self.deps = deps

    async def set_level(
        self, session: AsyncSession, *, actor: Actor, user: str, level: str, reason: str
    ) -> LevelChange:
        """Change a staff member's standing level. Lowering takes effect on their next request;
        raising with their next access token (a grant is the way to more access now)."""
        now = self.deps.clock.now_ns()
        try:
            wanted = AccessLevel(level)
        except ValueError:
            names = ", ".join(lv.value for lv in AccessLevel)
            raise InvalidInput(f"unknown level; the levels are {names}") from None
        why = clean_text(reason, what="reason", limit=MAX_REASON_CHARS)
        changer: Authority | None = None
        if actor.user_id is not None:
            changer = await acting_staff(session, actor, now)
            require(changer, Permission.ADMIN_USERS, "changing an access level")
        target = await find_member(session, user)
        if actor.user_id is not None and target.user_id == actor.user_id:
            raise Forbidden("staff cannot change their own access level")
        if not target.is_staff:
            raise InvalidInput("only staff members have access levels")
        if target.level is wanted:
            raise Conflict(f"{target.username} is already at the {wanted.value} level")
        # A standing raise is a permanent grant: it follows the approval rules (IAC-1).
        # Authority to approve must be standing or an independent grant; never break-glass,
        # and never a grant the person being raised approved (no lending each other power).
        if (
            changer is not None
            and _raises(target, wanted)
            and not await _independent(session, changer, target, now)
        ):
            raise Forbidden(
                "raising a standing level needs access:approve held standing or through "
                "a grant someone else approved (not break-glass); ask another admin"
            )
        version = await staff.change_level(session, target.user_id, wanted)
        await self.deps.ledger.append(
            session,
            LedgerEvent(
                type=AccessEvent.LEVEL_CHANGED,
                actor=actor.party,
                subject=Party("user", target.user_id),
                data={
                    "from": target.level.value if target.level else None,
                    "to": wanted.value,
                    "reason": why,
                    **actor.audit_data(),
                },
                request_id=actor.request_id,
            ),
        )
        await notify(
            self.deps,
            session,
            target,
            template="access_level_changed",
            subject="Your access level was changed",
            body=(
                f"Your standing access level is now {wanted.value} (it was "
                f"{target.level.value if target.level else 'unset'}).\nReason: {why}"
            ),
        )
        return LevelChange(target, target.level, wanted, version)
