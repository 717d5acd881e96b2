"""Admin user management (RBAC-1: ADMIN manages users): list and search, lock and unlock,
change role, force sign-out, and second-factor resets under the four-eyes rule.

Every action needs a stated reason, is a ledger event in the transaction of the change, and
is entered in the target's own access log. Nobody acts on their own account here, and the
admin who asks for a factor reset can never be the one who approves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import STAFF_ROLES, Permission, Role
from tradeguard.backoffice import repository
from tradeguard.backoffice.access_log import AccessLog
from tradeguard.backoffice.common import Actor, BackofficeDeps
from tradeguard.backoffice.customers import MaskedValue, search_terms
from tradeguard.backoffice.domain import (
    AccessAction,
    BackofficeEvent,
    FieldKind,
    FieldRef,
    NothingToChange,
    ResetAlreadyPending,
    ResetRequestClosed,
    SecondApproverRequired,
    SelfActionRefused,
    StaffStaysStaff,
    stated_reason,
)
from tradeguard.backoffice.models import FactorResetRequest
from tradeguard.core.errors import InvalidInput, NotFound
from tradeguard.core.masking import mask_email
from tradeguard.identity.administration import (
    LOCKED,
    USER_STATUSES,
    RoleChange,
    UserAdministration,
    UserRecord,
)
from tradeguard.identity.common import RequestInfo
from tradeguard.ledger.domain import Party

# How long a factor-reset request waits for its second admin before it lapses.
FACTOR_RESET_TTL_SECONDS = 24 * 3600
USERNAME_CURSOR = re.compile(r"^[a-z0-9][a-z0-9._-]{2,31}$")
NO_SUCH_USER = "no user with that id"
PENDING, APPROVED, REFUSED, EXPIRED = "pending", "approved", "refused", "expired"


@dataclass(frozen=True, slots=True)
class UserSummary:
    id: str
    username: str
    email: MaskedValue
    role: str
    status: str
    created_ns: int


@dataclass(frozen=True, slots=True)
class UserPage:
    items: list[UserSummary]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class FactorResetView:
    id: str
    user_id: str
    requested_by: str
    reason: str
    status: str
    created_ns: int
    expires_ns: int
    decided_by: str | None
    decided_ns: int | None
    decision_note: str | None


def _summary(user: UserRecord) -> UserSummary:
    return UserSummary(
        id=user.id,
        username=user.username,
        email=MaskedValue(FieldRef(FieldKind.EMAIL, None).name, mask_email(user.email)),
        role=user.role.value,
        status=user.status,
        created_ns=user.created_ns,
    )


def _info(actor: Actor) -> RequestInfo:
    return RequestInfo(ip=actor.ip, request_id=actor.request_id)


class UserManagement:
    def __init__(
        self,
        deps: BackofficeDeps,
        *,
        administration: UserAdministration,
        access_log: AccessLog,
    ) -> None:
        self.deps = deps
        self.administration = administration
        self.access_log = access_log

    async def _target(self, session: AsyncSession, user_id: str, actor: Actor) -> UserRecord:
        """The user acted upon: never the actor's own account (refused before the lookup, so
        the answer does not depend on anything but the ids)."""
        actor.require(Permission.ADMIN_USERS)
        if user_id == actor.user_id:
            raise SelfActionRefused(
                "staff cannot act on their own account through the staff tools; ask another admin"
            )
        user = await self.administration.user(session, user_id)
        if user is None:
            raise NotFound(NO_SUCH_USER)
        return user

    async def _audit(
        self,
        session: AsyncSession,
        event: BackofficeEvent,
        *,
        actor: Actor,
        user_id: str,
        data: dict[str, object],
        action: AccessAction,
        reason: str | None,
    ) -> None:
        """The action's ledger event, and its line in the customer's access log."""
        await self.deps.audit(
            session, event, actor=actor, subject=Party("user", user_id), data=data
        )
        await self.access_log.record(
            session, customer_id=user_id, actor=actor, action=action, reason=reason
        )

    # Reading ---------------------------------------------------------------------------------

    async def resolve(self, session: AsyncSession, login_or_id: str) -> UserRecord:
        """A user by id, username or email (the command line names users this way)."""
        user = await self.administration.find(session, login_or_id)
        if user is None:
            raise NotFound("no such user (give a username, an email address or a user id)")
        return user

    async def list_users(
        self,
        session: AsyncSession,
        *,
        query: str | None,
        role: Role | None,
        status: str | None,
        cursor: str | None,
        limit: int,
        actor: Actor,
    ) -> UserPage:
        """Users by exact email or username prefix (`query`), or all in username order."""
        actor.require(Permission.ADMIN_USERS)
        if status is not None and status not in USER_STATUSES:
            raise InvalidInput(f"status must be one of: {', '.join(USER_STATUSES)}")
        if cursor is not None and not USERNAME_CURSOR.fullmatch(cursor):
            raise InvalidInput("cursor must be a next_cursor value from a previous page")
        roles = [role] if role is not None else None
        if query is not None:
            kind, normalized = search_terms(query)
            found = await self.administration.search(
                session, query=normalized, roles=roles, limit=limit
            )
            found = [u for u in found if status is None or u.status == status]
            data: dict[str, object] = {
                "kind": kind,
                "query_digest": self.deps.query_digest(normalized),
                "results": len(found),
            }
            more = False
        else:
            found = await self.administration.page(
                session, roles=roles, status=status, after_username=cursor, limit=limit + 1
            )
            more = len(found) > limit
            found = found[:limit]
            data = {"kind": "page", "results": len(found)}
        await self.deps.audit(
            session, BackofficeEvent.USERS_LISTED, actor=actor, subject=None, data=data
        )
        return UserPage(
            items=[_summary(u) for u in found],
            next_cursor=found[-1].username if more and found else None,
        )

    # Lock, unlock, role, sign-out ----------------------------------------------------------------

    async def lock(
        self, session: AsyncSession, *, user_id: str, reason: str, actor: Actor
    ) -> tuple[str, ...]:
        """Lock the account and end its sessions; returns the sessions ended."""
        why = stated_reason(reason)
        user = await self._target(session, user_id, actor)
        if user.status == LOCKED:
            raise NothingToChange("the account is already locked")
        ended = await self.administration.lock(
            session, user_id=user.id, actor=actor.party, reason=why, request=_info(actor)
        )
        await self._audit(
            session,
            BackofficeEvent.USER_LOCKED,
            actor=actor,
            user_id=user.id,
            data={"reason": why, "sessions_ended": len(ended)},
            action=AccessAction.ACCOUNT_LOCKED,
            reason=why,
        )
        return ended

    async def unlock(
        self, session: AsyncSession, *, user_id: str, reason: str, actor: Actor
    ) -> list[str]:
        """Lift a staff lock, a second-factor lock and the account's sign-in throttles."""
        why = stated_reason(reason)
        user = await self._target(session, user_id, actor)
        cleared = await self.administration.unlock(
            session, user_id=user.id, actor=actor.party, reason=why, request=_info(actor)
        )
        await self._audit(
            session,
            BackofficeEvent.USER_UNLOCKED,
            actor=actor,
            user_id=user.id,
            data={"reason": why, "cleared": cleared},
            action=AccessAction.ACCOUNT_UNLOCKED,
            reason=why,
        )
        return cleared

    async def set_role(
        self, session: AsyncSession, *, user_id: str, role: Role, reason: str, actor: Actor
    ) -> RoleChange:
        why = stated_reason(reason)
        user = await self._target(session, user_id, actor)
        if user.role is role:
            raise NothingToChange(f"the user already has the {role.value} role")
        if user.role in STAFF_ROLES and role not in STAFF_ROLES:
            # Symmetric with "a customer account cannot become staff": a demoted account
            # could never be staff again nor its email be invited again, so one admin (or a
            # break-glass grant) could off-board a colleague for good.
            raise StaffStaysStaff(
                "a staff account cannot become a customer account; to off-board a staff "
                "member, lock the account (`tradeguard users lock`)"
            )
        change = await self.administration.change_role(
            session,
            user_id=user.id,
            role=role,
            actor=actor.party,
            reason=why,
            request=_info(actor),
        )
        await self._audit(
            session,
            BackofficeEvent.USER_ROLE_CHANGED,
            actor=actor,
            user_id=user.id,
            data={
                "from": change.previous.value,
                "to": role.value,
                "reason": why,
                "sessions_ended": len(change.sessions_ended),
            },
            action=AccessAction.ROLE_CHANGED,
            reason=why,
        )
        return change

    async def sign_out(
        self, session: AsyncSession, *, user_id: str, reason: str, actor: Actor
    ) -> tuple[str, ...]:
        why = stated_reason(reason)
        user = await self._target(session, user_id, actor)
        ended = await self.administration.sign_out_everywhere(
            session, user_id=user.id, actor=actor.party, reason=why, request=_info(actor)
        )
        await self._audit(
            session,
            BackofficeEvent.USER_SIGNED_OUT,
            actor=actor,
            user_id=user.id,
            data={"reason": why, "sessions_ended": len(ended)},
            action=AccessAction.SIGNED_OUT,
            reason=why,
        )
        return ended

    # Second-factor resets (four eyes) ---------------------------------------------------------

    def _view(self, row: FactorResetRequest) -> FactorResetView:
        status = row.status
        if status == PENDING and row.expires_ns <= self.deps.clock.now_ns():
            status = EXPIRED
        return FactorResetView(
            id=row.id,
            user_id=row.user_id,
            requested_by=row.requested_by,
            reason=row.reason,
            status=status,
            created_ns=row.created_ns,
            expires_ns=row.expires_ns,
            decided_by=row.decided_by,
            decided_ns=row.decided_ns,
            decision_note=row.decision_note,
        )

    async def request_factor_reset(
        self, session: AsyncSession, *, user_id: str, reason: str, actor: Actor
    ) -> FactorResetView:
        """Ask for a reset; nothing changes until a different admin approves it."""
        why = stated_reason(reason)
        user = await self._target(session, user_id, actor)
        now = self.deps.clock.now_ns()
        if await repository.live_factor_reset_for(session, user.id, now) is not None:
            raise ResetAlreadyPending("approve or refuse the open request for this user first")
        row = FactorResetRequest(
            id=self.deps.ids.new_str(),
            user_id=user.id,
            requested_by=actor.label,
            reason=why,
            created_ns=now,
            expires_ns=now + FACTOR_RESET_TTL_SECONDS * 1_000_000_000,
            status=PENDING,
        )
        repository.add(session, row)
        await self._audit(
            session,
            BackofficeEvent.FACTOR_RESET_REQUESTED,
            actor=actor,
            user_id=user.id,
            data={"request_id": row.id, "reason": why},
            action=AccessAction.FACTOR_RESET_REQUESTED,
            reason=why,
        )
        await self.administration.tell_reset_requested(session, user_id=user.id)
        return self._view(row)

    async def _open_request(
        self, session: AsyncSession, request_id: str, actor: Actor
    ) -> tuple[FactorResetRequest, UserRecord]:
        actor.require(Permission.ADMIN_USERS)
        row = await repository.factor_reset(session, request_id)
        if row is None:
            raise NotFound("no factor-reset request with that id")
        user = await self._target(session, row.user_id, actor)
        return row, user

    async def approve_factor_reset(
        self, session: AsyncSession, *, request_id: str, note: str | None, actor: Actor
    ) -> tuple[FactorResetView, tuple[str, ...]]:
        """A second admin approves: factors removed, sessions ended (returned), the user
        told."""
        note_text = stated_reason(note) if note else None
        row, user = await self._open_request(session, request_id, actor)
        if row.requested_by == actor.label:
            raise SecondApproverRequired(
                "you asked for this reset; a different admin must approve it"
            )
        if not await repository.decide_factor_reset(
            session,
            row.id,
            status=APPROVED,
            decided_by=actor.label,
            note=note_text,
            now_ns=self.deps.clock.now_ns(),
        ):
            raise ResetRequestClosed(
                "this request was already decided or has expired; ask for a new one"
            )
        requester_kind, _, requester_id = row.requested_by.partition(":")
        removed, ended = await self.administration.reset_second_factors(
            session,
            user_id=user.id,
            actor=Party(requester_kind, requester_id),
            approved_by=actor.party,
            reason=row.reason,
            request=_info(actor),
        )
        await self._audit(
            session,
            BackofficeEvent.FACTOR_RESET_APPROVED,
            actor=actor,
            user_id=user.id,
            data={
                "request_id": row.id,
                "requested_by": row.requested_by,
                "note": note_text,
                "factors_removed": removed,
                "sessions_ended": len(ended),
            },
            action=AccessAction.FACTORS_RESET,
            reason=row.reason,
        )
        return self._view(row), ended

    async def refuse_factor_reset(
        self, session: AsyncSession, *, request_id: str, reason: str, actor: Actor
    ) -> FactorResetView:
        """Close a request without changing anything (its requester may withdraw it too)."""
        why = stated_reason(reason)
        row, user = await self._open_request(session, request_id, actor)
        if not await repository.decide_factor_reset(
            session,
            row.id,
            status=REFUSED,
            decided_by=actor.label,
            note=why,
            now_ns=self.deps.clock.now_ns(),
        ):
            raise ResetRequestClosed("this request was already decided or has expired")
        await self._audit(
            session,
            BackofficeEvent.FACTOR_RESET_REFUSED,
            actor=actor,
            user_id=user.id,
            data={"request_id": row.id, "reason": why},
            action=AccessAction.FACTOR_RESET_REFUSED,
            reason=why,
        )
        # The user was told a reset was asked for: they are told it will not happen too.
        await self.administration.tell_reset_refused(session, user_id=user.id)
        return self._view(row)

    async def factor_resets(
        self, session: AsyncSession, *, pending_only: bool, limit: int, actor: Actor
    ) -> list[FactorResetView]:
        actor.require(Permission.ADMIN_USERS)
        rows = await repository.factor_resets(
            session, pending_only=pending_only, now_ns=self.deps.clock.now_ns(), limit=limit
        )
        return [self._view(row) for row in rows]
