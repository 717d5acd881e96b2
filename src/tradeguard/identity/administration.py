"""Staff administration of accounts: what the support view reads, and lock, unlock, role
change, forced sign-out and second-factor reset (RBAC-1, IAC-1, ACCT-1).

The caller (the back office) decides who may do what to whom. This module changes identity's
own rows, audits every change in the caller's transaction with the acting staff member or
operator as its actor, and tells the account's owner by email (outbox, same transaction).
Services never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access import repository as access_repository
from tradeguard.access.domain import STAFF_ROLES, AccessLevel, Role
from tradeguard.core.errors import Conflict, NotFound
from tradeguard.identity import repository
from tradeguard.identity.common import IdentityDeps, RequestInfo
from tradeguard.identity.devices import plain_text, user_agent_text
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.models import User
from tradeguard.identity.service import AccountService, normalize_email
from tradeguard.identity.sessions import AuthService, login_throttle_key
from tradeguard.ledger.domain import Party

ACTIVE = "active"
LOCKED = "locked"
USER_STATUSES = (ACTIVE, LOCKED)
SUPPORT_CONTACT = "If you did not expect this, contact tradeguard support."


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    username: str
    email: str
    role: Role
    status: str
    email_verified: bool
    created_ns: int


@dataclass(frozen=True, slots=True)
class FactorRecord:
    id: str
    kind: str
    label: str
    status: str
    created_ns: int
    last_used_ns: int | None
    phone: str | None  # the number of a text-message factor, decrypted


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: str
    name: str
    authorized: bool
    created_ns: int
    last_seen_ns: int
    last_ip: str | None


@dataclass(frozen=True, slots=True)
class SignInRecord:
    session_id: str
    created_ns: int
    last_seen_ns: int
    methods: tuple[str, ...]
    ip: str | None
    user_agent: str | None
    active: bool
    ended_reason: str | None


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """Everything identity holds about a user that a staff view may show (masked)."""

    user: UserRecord
    factors: tuple[FactorRecord, ...]
    devices: tuple[DeviceRecord, ...]
    sign_ins: tuple[SignInRecord, ...]


@dataclass(frozen=True, slots=True)
class CredentialsReset:
    """What an account recovery's credential reset did (ATO-3)."""

    sessions_ended: tuple[str, ...]
    factors_removed: int
    devices_untrusted: int
    reset_link_sent: bool


@dataclass(frozen=True, slots=True)
class RoleChange:
    previous: Role
    role: Role
    sessions_ended: tuple[str, ...]
    needs_security_key: bool


def _user_record(user: User) -> UserRecord:
    return UserRecord(
        id=user.id,
        username=user.username,
        email=user.email,
        role=Role(user.role),
        status=user.status,
        email_verified=user.email_verified_ns is not None,
        created_ns=user.created_ns,
    )


class UserAdministration:
    def __init__(self, deps: IdentityDeps, *, auth: AuthService) -> None:
        self.deps = deps
        self.auth = auth

    # Reading ---------------------------------------------------------------------------------

    async def user(self, session: AsyncSession, user_id: str) -> UserRecord | None:
        user = await repository.user_by_id(session, user_id)
        return _user_record(user) if user is not None else None

    async def find(self, session: AsyncSession, login_or_id: str) -> UserRecord | None:
        """One user by id, username or email (operator tools)."""
        user = await repository.user_by_id(session, login_or_id) if len(login_or_id) == 36 else None
        user = user or await repository.user_by_login(session, login_or_id)
        return _user_record(user) if user is not None else None

    async def account_record(
        self, session: AsyncSession, user_id: str, *, sign_ins: int = 10
    ) -> AccountRecord | None:
        user = await repository.user_by_id(session, user_id)
        if user is None:
            return None
        now = self.deps.clock.now_ns()
        factors = tuple(
            FactorRecord(
                id=f.id,
                kind=f.kind,
                label=f.label,
                status=f.status,
                created_ns=f.created_ns,
                last_used_ns=f.last_used_ns,
                phone=self.auth.destination(f) if f.kind == "sms" and f.destination_enc else None,
            )
            for f in await repository.factors_of(session, user.id, status=None)
        )
        devices = tuple(
            DeviceRecord(
                id=d.id,
                name=plain_text(d.name, limit=120) or "unknown client",
                authorized=d.authorized_ns is not None,
                created_ns=d.created_ns,
                last_seen_ns=d.last_seen_ns,
                last_ip=d.last_ip,
            )
            for d in await repository.devices_of(session, user.id)
        )
        recent = tuple(
            SignInRecord(
                session_id=s.id,
                created_ns=s.created_ns,
                last_seen_ns=s.last_seen_ns,
                methods=tuple(s.amr.split()),
                ip=s.ip,
                user_agent=user_agent_text(s.user_agent),
                active=s.revoked_ns is None and s.expires_ns > now,
                ended_reason=s.revoke_reason,
            )
            for s in await repository.recent_sessions(session, user.id, limit=sign_ins)
        )
        return AccountRecord(_user_record(user), factors, devices, recent)

    async def search(
        self, session: AsyncSession, *, query: str, roles: Sequence[Role] | None, limit: int
    ) -> list[UserRecord]:
        """Users by exact email address (a query with '@') or username prefix.

        Never a prefix of an email: answering "some address starts with j" lets a caller
        spell out addresses one character at a time.
        """
        role_names = [r.value for r in roles] if roles is not None else None
        if "@" in query:
            user = await repository.user_by_email(session, normalize_email(query))
            found = (
                [user]
                if user is not None and (role_names is None or user.role in role_names)
                else []
            )
        else:
            found = list(
                await repository.users_by_username_prefix(
                    session, query.strip().casefold(), roles=role_names, limit=limit
                )
            )
        return [_user_record(u) for u in found]

    async def page(
        self,
        session: AsyncSession,
        *,
        roles: Sequence[Role] | None,
        status: str | None,
        after_username: str | None,
        limit: int,
    ) -> list[UserRecord]:
        rows = await repository.users_page(
            session,
            roles=[r.value for r in roles] if roles is not None else None,
            status=status,
            after_username=after_username,
            limit=limit,
        )
        return [_user_record(u) for u in rows]

    async def quota_wait(
        self, session: AsyncSession, *, key: str, limit: int, window_seconds: int
    ) -> int:
        """Count one use of a staff quota; the ns to wait when it is over `limit`, else 0."""
        return await self.auth.over_limit(session, key, limit=limit, window_seconds=window_seconds)

    # Changes ---------------------------------------------------------------------------------

    async def _locked_user(self, session: AsyncSession, user_id: str) -> User:
        user = await repository.locked_user(session, user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    async def _end_sessions(
        self, session: AsyncSession, user: User, *, actor: Party, reason: str, request: RequestInfo
    ) -> tuple[str, ...]:
        """End every session of the user, audited as the staff member's act."""
        revoked = await repository.revoke_sessions(
            session, user_id=user.id, now_ns=self.deps.clock.now_ns(), reason=reason
        )
        for session_id in revoked:
            await self.deps.audit(
                session,
                IdentityEvent.SESSION_REVOKED,
                user_id=user.id,
                actor=actor,
                request=request,
                data={"session_id": session_id, "reason": reason},
            )
        return tuple(revoked)

    async def _tell_owner(self, session: AsyncSession, user: User, subject: str, body: str) -> None:
        await self.deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="staff_account_change",
            subject=subject,
            body=f"{body}\n\n{SUPPORT_CONTACT}",
        )

    async def lock(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        actor: Party,
        reason: str,
        request: RequestInfo,
    ) -> tuple[str, ...]:
        """Lock an account until staff unlock it: no sign-in, no refresh, and every session
        ends now. Returns the sessions ended (for the caller's session cache)."""
        user = await self._locked_user(session, user_id)
        user.status = LOCKED
        ended = await self._end_sessions(
            session, user, actor=actor, reason="staff_lock", request=request
        )
        await self.deps.audit(
            session,
            IdentityEvent.USER_LOCKED,
            user_id=user.id,
            actor=actor,
            request=request,
            data={"reason": reason, "sessions_ended": len(ended)},
        )
        await self._tell_owner(
            session,
            user,
            "Your tradeguard account was locked",
            "Our staff locked your account and signed it out everywhere. You cannot sign in "
            "until it is unlocked.",
        )
        return ended

    async def unlock(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        actor: Party,
        reason: str,
        request: RequestInfo,
    ) -> list[str]:
        """Unlock an account: staff lock, second-factor lock and the sign-in throttles of its
        username, email, account and devices. Returns what was cleared."""
        user = await self._locked_user(session, user_id)
        cleared: list[str] = []
        if user.status == LOCKED:
            cleared.append("staff_lock")
        if (user.locked_until_ns or 0) > self.deps.clock.now_ns():
            cleared.append("second_factor_lock")
        user.status = ACTIVE
        user.locked_until_ns = None
        user.failed_logins = 0
        # The per-network budget is left alone: it belongs to a network, not to this user.
        keys = [
            login_throttle_key(self.deps, user.username),
            login_throttle_key(self.deps, user.email),
            f"acct:{user.id}",
            f"mfa:{user.id}",
            *(f"device:{d.id}" for d in await repository.devices_of(session, user.id)),
        ]
        now = self.deps.clock.now_ns()
        for key in keys:
            row = await repository.throttle(session, key)
            if row is not None and (row.blocked_until_ns or 0) > now:
                cleared.append("sign_in_throttle")
            await repository.clear_throttle(session, key)
        cleared = sorted(set(cleared))
        await self.deps.audit(
            session,
            IdentityEvent.USER_UNLOCKED,
            user_id=user.id,
            actor=actor,
            request=request,
            data={"reason": reason, "cleared": cleared},
        )
        await self._tell_owner(
            session,
            user,
            "Your tradeguard account was unlocked",
            "Our staff unlocked your account: you can sign in again.",
        )
        return cleared

    async def change_role(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        role: Role,
        actor: Party,
        reason: str,
        request: RequestInfo,
    ) -> RoleChange:
        """Give the user another role and end every session, so the next sign-in carries
        exactly the new role's permissions (a customer turned staff, or staff turned
        customer, must never keep a token of the other kind)."""
        user = await self._locked_user(session, user_id)
        previous = Role(user.role)
        if previous not in STAFF_ROLES and role in STAFF_ROLES:
            # Staff accounts begin with an enrolment token and an attested security key
            # (IAC-3); a customer's own factors (any passkey, unattested) must never become
            # a staff sign-in.
            raise Conflict(
                "a customer account cannot become staff; invite the person as staff with "
                "`tradeguard users invite-staff`"
            )
        user.role = role.value
        ended_grants: list[str] = []
        if previous in STAFF_ROLES:
            # What was granted or requested served the old role's duties, and the standing
            # level was set for it: the new role starts at read-only with no grants.
            ended_grants = await access_repository.end_all_for(
                session, user.id, self.deps.clock.now_ns(), f"role changed to {role.value}"
            )
            user.access_level = AccessLevel.READ_ONLY.value if role in STAFF_ROLES else None
            user.permissions_version += 1
        ended = await self._end_sessions(
            session, user, actor=actor, reason="role_changed", request=request
        )
        methods = await self.auth.available_methods(session, user.id)
        await self.deps.audit(
            session,
            IdentityEvent.ROLE_CHANGED,
            user_id=user.id,
            actor=actor,
            request=request,
            data={
                "from": previous.value,
                "to": role.value,
                "reason": reason,
                "sessions_ended": len(ended),
                "grants_ended": ended_grants,
            },
        )
        await self._tell_owner(
            session,
            user,
            "Your tradeguard account's role was changed",
            f"Our staff changed your account from {previous.value} to {role.value} and signed "
            "it out everywhere; sign in again.",
        )
        return RoleChange(
            previous=previous,
            role=role,
            sessions_ended=ended,
            needs_security_key=role in STAFF_ROLES and "webauthn" not in methods,
        )

    async def sign_out_everywhere(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        actor: Party,
        reason: str,
        request: RequestInfo,
    ) -> tuple[str, ...]:
        user = await self._locked_user(session, user_id)
        ended = await self._end_sessions(
            session, user, actor=actor, reason="staff_sign_out", request=request
        )
        await self._tell_owner(
            session,
            user,
            "You were signed out of tradeguard",
            "Our staff signed your account out of every session; sign in again to continue.",
        )
        return ended

    async def reset_second_factors(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        actor: Party,
        approved_by: Party,
        reason: str,
        request: RequestInfo,
    ) -> tuple[int, tuple[str, ...]]:
        """Remove every second factor (and enrolment in progress) and end every session.

        Afterwards the password alone gives only a session that can look and enrol a new
        factor after proving the mailbox (ACCT-1). Returns (factors removed, sessions ended).
        """
        user = await self._locked_user(session, user_id)
        removed = await repository.revoke_factors(session, user.id, self.deps.clock.now_ns())
        ended = await self._end_sessions(
            session, user, actor=actor, reason="factors_reset", request=request
        )
        await self.deps.audit(
            session,
            IdentityEvent.FACTORS_RESET,
            user_id=user.id,
            actor=actor,
            request=request,
            data={
                "reason": reason,
                "approved_by": approved_by.as_json(),
                "factors": sorted({f.kind for f in removed}),
                "factors_removed": len(removed),
                "sessions_ended": len(ended),
            },
        )
        await self._tell_owner(
            session,
            user,
            "Your tradeguard sign-in factors were reset",
            "Two of our admins approved a reset of your second factors: every authenticator "
            "app, security key, phone and backup code was removed and every session ended. "
            "Sign in with your password, then enrol a new second factor before you trade.",
        )
        return len(removed), ended

    async def reset_credentials(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        accounts: AccountService,
        actor: Party,
        approved_by: Party,
        reason: str,
        request: RequestInfo,
    ) -> CredentialsReset:
        """Take every credential back from whoever took the account over (ATO-3): every
        session and its refresh token end, every second factor is removed (the owner must
        enrol again), every remembered device is untrusted (its token no longer skips
        anything), and the password stops working until the owner sets a new one through
        the emailed reset link. The owner is told by email. API keys: none exist yet.
        """
        user = await self._locked_user(session, user_id)
        if Role(user.role) in STAFF_ROLES:
            # Staff credentials (attested keys, enrolment) have their own procedure.
            raise Conflict("staff accounts are not recovered this way")
        now = self.deps.clock.now_ns()
        removed = await repository.revoke_factors(session, user.id, now)
        ended = await self._end_sessions(
            session, user, actor=actor, reason="account_recovery", request=request
        )
        devices = await repository.devices_of(session, user.id)
        for device in devices:
            device.revoked_ns = now
            await self.deps.audit(
                session,
                IdentityEvent.DEVICE_REVOKED,
                user_id=user.id,
                actor=actor,
                request=request,
                data={"device_id": device.id, "reason": "account_recovery"},
            )
        # No password works until the owner chooses one with the emailed link: the one the
        # intruder knew (or set) is gone, and the sign-in refuses an account without one.
        user.password_hash = None
        user.password_changed_ns = now
        user.failed_logins = 0
        await self.deps.audit(
            session,
            IdentityEvent.FACTORS_RESET,
            user_id=user.id,
            actor=actor,
            request=request,
            data={
                "reason": reason,
                "approved_by": approved_by.as_json(),
                "factors": sorted({f.kind for f in removed}),
                "factors_removed": len(removed),
                "sessions_ended": len(ended),
                "devices_untrusted": len(devices),
                "password_cleared": True,
                "via": "account_recovery",
            },
        )
        sent = await accounts.send_recovery_reset(
            session, user_id=user.id, actor=actor, request=request
        )
        await self._tell_owner(
            session,
            user,
            "Your tradeguard account was secured",
            "After activity on your account that was not yours, two of our staff reset its "
            "credentials: every session was signed out, every second factor and remembered "
            "device removed, and your old password no longer works. Choose a new password "
            "with the link we sent in a separate email, then enrol a new second factor.",
        )
        return CredentialsReset(
            sessions_ended=ended,
            factors_removed=len(removed),
            devices_untrusted=len(devices),
            reset_link_sent=sent,
        )

    async def tell_reset_refused(self, session: AsyncSession, *, user_id: str) -> None:
        """Tell the owner that the factor reset they were warned about will not happen."""
        user = await repository.user_by_id(session, user_id)
        if user is not None:
            await self._tell_owner(
                session,
                user,
                "The reset of your tradeguard sign-in factors was refused",
                "The request to remove your second factors was refused or withdrawn: nothing "
                "changed, and your factors and sessions are as they were.",
            )

    async def tell_reset_requested(self, session: AsyncSession, *, user_id: str) -> None:
        """Warn the owner that a factor reset awaits approval: time to object if unexpected."""
        user = await repository.user_by_id(session, user_id)
        if user is not None:
            await self._tell_owner(
                session,
                user,
                "A reset of your tradeguard sign-in factors was requested",
                "One of our admins asked to remove your second factors; a second admin must "
                "approve it before anything changes.",
            )
