"""Login, second-factor verification, sessions and refresh-token rotation (AUTH, SESS, ACCT-1).

Failures are *returned* as outcomes, not raised, so the edge can commit what they changed
(failure counters, locks, revocations, audit events) before answering with an error.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access import repository as access_repository
from tradeguard.access.domain import (
    STAFF_ROLES,
    AccessLevel,
    LiveGrant,
    Permission,
    Role,
    parse_level,
    standing_permissions,
)
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import AccountLocked, TooManyRequests
from tradeguard.crypto import peppers
from tradeguard.identity import repository
from tradeguard.identity.common import (
    IdentityDeps,
    RequestInfo,
    SignIn,
    SignInObserver,
    hash_secret_token,
    new_secret_token,
)
from tradeguard.identity.devices import device_name, fingerprint, plain_text, user_agent_text
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.ip_allowlist import allowed, client_bucket
from tradeguard.identity.mfa import otp as otp_codes
from tradeguard.identity.mfa import totp
from tradeguard.identity.mfa.backup_codes import BackupCodeBook
from tradeguard.identity.models import (
    AuthSession,
    AuthTicket,
    Device,
    MfaFactor,
    RefreshToken,
    User,
)
from tradeguard.identity.password_hashing import PasswordHasher
from tradeguard.identity.throttle import WINDOW_SECONDS, ThrottleState, delay_seconds
from tradeguard.identity.tokens import AccessTokenIssuer, new_refresh_token
from tradeguard.ledger.domain import Party

HOUR_SECONDS = 3600
DAY_SECONDS = 24 * HOUR_SECONDS

MFA_TICKET = "mfa_login"
MAX_CODES_PER_TICKET = 3
LOCKED_DETAIL = (
    "too many wrong second-factor codes: the account is temporarily locked; "
    "try again after the Retry-After time"
)
TAKEOVER_LOCKED_DETAIL = (
    "this sign-in did not look like the account owner's: the account is temporarily locked "
    "and its owner was told; try again after the Retry-After time"
)
THROTTLED_DETAIL = "too many attempts; try again after the Retry-After time"
TOTP_SECRET_PURPOSE = "identity.totp_secret"  # noqa: S105 - a key purpose label
BACKUP_PEPPER = peppers.BACKUP_CODES_PEPPER
OTP_PEPPER = peppers.OTP_CODES_PEPPER
DESTINATION_PURPOSE = "identity.factor_destination"
REFRESH_SUCCESSOR_PURPOSE = "identity.refresh_successor"
# Password checks at the console (`--as`) count their failures under one network key of their
# own, never under an address a client over HTTP could share.
CONSOLE_THROTTLE_KEY = "ip:console"
CONSOLE_REQUEST = RequestInfo(user_agent="tradeguard-cli")
# A console code (`--as` at the command line) is issued by a hardware-key session and lives
# a few minutes, for one command.
CONSOLE_CODE_TICKET = "console_code"
CONSOLE_CODE_SECONDS = 300


class Method(StrEnum):
    """Second-factor methods, as clients name them."""

    TOTP = "totp"
    BACKUP_CODE = "backup_code"
    EMAIL = "email"
    SMS = "sms"
    WEBAUTHN = "webauthn"


# RFC 8176 authentication method references where one fits.
AMR = {
    Method.TOTP: "otp",
    Method.BACKUP_CODE: "kba",
    Method.EMAIL: "mail",
    Method.SMS: "sms",
    Method.WEBAUTHN: "hwk",
}
FACTOR_METHOD = {
    "totp": Method.TOTP,
    "backup_codes": Method.BACKUP_CODE,
    "email": Method.EMAIL,
    "sms": Method.SMS,
    "webauthn": Method.WEBAUTHN,
}
# Permissions that need an enrolled and verified second factor and an authorized device.
GUARDED_PERMISSIONS = frozenset(
    {
        Permission.ORDER_PLACE,
        Permission.ORDER_MODIFY,
        Permission.ACCOUNT_WITHDRAW,
        # A stored card is a way to move money: the same bar as a withdrawal (ACCT-4).
        Permission.CARD_MANAGE,
    }
)


class Failure(StrEnum):
    INVALID_CREDENTIALS = "invalid_credentials"
    THROTTLED = "throttled"
    IP_NOT_ALLOWED = "ip_not_allowed"
    INVALID_TICKET = "invalid_ticket"
    # Told apart from an invalid ticket only for the caller holding it, who knew it existed
    # and when it was issued.
    TICKET_EXPIRED = "ticket_expired"
    # Second-factor guessing locked the account; only said past the password step.
    ACCOUNT_LOCKED = "account_locked"
    WRONG_CODE = "wrong_code"
    METHOD_NOT_ENROLLED = "method_not_enrolled"
    INVALID_REFRESH = "invalid_refresh"
    REFRESH_REUSED = "refresh_reused"
    INACTIVE = "inactive"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    session_id: str
    device_token: str | None = field(default=None, repr=False)
    token_type: str = "Bearer"  # noqa: S105 - a scheme name


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    ticket: str = field(repr=False)
    methods: list[str]
    expires_in: int
    device_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Denied:
    failure: Failure
    retry_after_seconds: int | None = None
    revoked_sessions: tuple[str, ...] = ()
    detail: str | None = None  # what the client is told, where the failure's default won't do


LoginOutcome = TokenPair | MfaChallenge | Denied


@dataclass(frozen=True, slots=True)
class SessionState:
    """What each authenticated request checks against, after the token's signature."""

    session_id: str
    user_id: str
    role: Role
    active: bool
    last_seen_ns: int
    idle_ns: int
    mfa_verified_ns: int | None
    created_ns: int
    device_authorized: bool
    ip_allowlist: tuple[str, ...]
    # IAC-1/IAC-2: the staff member's level, their approved grants (each request drops the
    # expired ones against its own clock) and the permissions version these were read at.
    level: AccessLevel | None = None
    grants: tuple[LiveGrant, ...] = ()
    permissions_version: int = 0


class AuthService:
    def __init__(
        self, deps: IdentityDeps, *, hasher: PasswordHasher, issuer: AccessTokenIssuer
    ) -> None:
        self.deps = deps
        self.hasher = hasher
        self.issuer = issuer
        self._backup_book: BackupCodeBook | None = None
        # Told of every new session in its transaction (the takeover defence, ATO-1): set by
        # whoever builds the app, so identity imports nothing of the watcher.
        self.sign_in_observer: SignInObserver | None = None

    @property
    def backup_book(self) -> BackupCodeBook:
        # Built on first use: under a KMS the pepper is a stored secret, known only once the
        # keyring has read its table (after this service is built).
        if self._backup_book is None:
            self._backup_book = BackupCodeBook(self.deps.pepper(BACKUP_PEPPER))
        return self._backup_book

    # Login ------------------------------------------------------------------------------

    async def login(
        self, session: AsyncSession, *, login: str, password: str, request: RequestInfo
    ) -> LoginOutcome:
        """Password step. Unknown user, wrong password and locked account look the same.

        Failures count per login string (back-off, then a lock, so unknown names are
        throttled exactly like real ones), per resolved account (one budget however the
        account is named: username or email) and per client network (a plain quota that
        only blocks at its setting). A device already authorized for the account, proven by
        its device token, is exempt from all three and has a budget of its own instead
        (OWASP device cookies): guessing from elsewhere cannot lock its owner out.
        """
        deps, now = self.deps, self.deps.clock.now_ns()
        login_key = login_throttle_key(deps, login)
        network_key = ip_throttle_key(deps, request.ip)
        user = await repository.user_by_login(session, login)
        trusted = await self._trusted_device(session, user, request)
        checked = await self._password_step(
            session,
            user=user,
            password=password,
            login_key=login_key,
            network_key=network_key,
            request=request,
            trusted=trusted,
        )
        if isinstance(checked, Denied):
            return checked
        user = checked
        if not _ip_allowed(user, request.ip):
            await deps.audit(session, IdentityEvent.IP_REFUSED, user_id=user.id, request=request)
            # Counted like a wrong password: otherwise the missing back-off would tell a
            # guesser outside the allowlist that this password is the right one.
            return await self._password_failed(
                session,
                user,
                login_key,
                network_key=network_key,
                request=request,
                trusted=trusted,
            )
        await self._password_accepted(session, user, password, login_key, trusted)
        device, device_token, by_token = await self._recognize_device(
            session, user, request, trusted=trusted
        )
        methods = await self.available_methods(session, user.id)
        if not methods:
            # No second factor yet: a limited session that can enrol one (ACCT-1).
            await deps.audit(
                session,
                IdentityEvent.LOGIN_SUCCEEDED,
                user_id=user.id,
                request=request,
                data={"amr": ["pwd"], "device_id": device.id},
            )
            pair = await self._start_session(session, user, device, ["pwd"], request, mfa=False)
            if isinstance(pair, Denied):
                # Past a password alone the answer stays the one for a wrong password: a
                # "locked" here would confirm the password to whoever typed it.
                return Denied(Failure.INVALID_CREDENTIALS)
            return _with_device_token(pair, device_token)
        token, token_hash = new_secret_token()
        session.add(
            AuthTicket(
                id=deps.ids.new_str(),
                token_hash=token_hash,
                kind=MFA_TICKET,
                user_id=user.id,
                payload=json.dumps({"device_id": device.id, "by_token": by_token}),
                attempts=0,
                created_ns=now,
                expires_ns=now + deps.policy.ns(deps.policy.mfa_ticket_seconds),
            )
        )
        await deps.audit(
            session,
            IdentityEvent.LOGIN_MFA_REQUIRED,
            user_id=user.id,
            request=request,
            data={
                "methods": methods,
                "device_id": device.id,
                "new_device": device.authorized_ns is None,
            },
        )
        return MfaChallenge(token, methods, deps.policy.mfa_ticket_seconds, device_token)

    async def issue_console_code(
        self, session: AsyncSession, *, user_id: str, session_id: str, request: RequestInfo
    ) -> str | None:
        """A single-use code that lets this staff member act at the console (`--as`) for a
        few minutes; None unless the caller is active staff, holds an active WebAuthn factor,
        and signed in (or stepped up) with it in this very session (IAC-3).

        Only the code's hash is stored; issuing one spends any earlier unspent code.
        """
        now = self.deps.clock.now_ns()
        user = await repository.user_by_id(session, user_id)
        auth = await repository.auth_session(session, session_id)
        if (
            user is None
            or not await self._console_eligible(session, user, now)
            or auth is None
            or auth.user_id != user.id
            or auth.revoked_ns is not None
            or not staff_factor(auth.amr.split())
        ):
            return None
        await repository.spend_open_tickets(session, user.id, CONSOLE_CODE_TICKET, now)
        code, code_hash = new_secret_token()
        ticket_id = self.deps.ids.new_str()
        session.add(
            AuthTicket(
                id=ticket_id,
                token_hash=code_hash,
                kind=CONSOLE_CODE_TICKET,
                user_id=user.id,
                payload=json.dumps({"session_id": session_id}),
                attempts=0,
                created_ns=now,
                expires_ns=now + CONSOLE_CODE_SECONDS * NS_PER_SECOND,
            )
        )
        await self.deps.audit(
            session,
            IdentityEvent.CONSOLE_CODE_ISSUED,
            user_id=user.id,
            request=request,
            data={"session_id": session_id, "code_id": ticket_id},
        )
        return code

    async def _console_eligible(self, session: AsyncSession, user: User, now: int) -> bool:
        """Active staff with at least one active WebAuthn factor (a hardware key)."""
        if Role(user.role) not in STAFF_ROLES or user.status != "active":
            return False
        if (user.locked_until_ns or 0) > now:
            return False
        factors = await repository.factors_of(session, user.id)
        return any(f.kind == Method.WEBAUTHN.value for f in factors)

    async def verify_staff_console_code(
        self, session: AsyncSession, *, login: str, code: str, operator: str
    ) -> tuple[User, str] | Denied:
        """Prove a staff member's identity at the console (`--as USERNAME`) with a console
        code their hardware-key session issued (POST /api/v1/auth/console-code).

        The code is looked up by its hash, compared in constant time, and spent whoever
        presents it (a code shown for another name has leaked). An unknown name, a customer,
        a locked account, a member without an active hardware key, a wrong, spent or expired
        code all look the same, and failures back off per name and under one console budget,
        like the sign-in page. No session follows. The member and the issuing session's id.
        """
        deps, now = self.deps, self.deps.clock.now_ns()
        context = {"via": "cli", "operator": operator, "method": "console_code"}
        login_key = deps.counter_key("console", login.strip().casefold()[:100])
        blocked = max(
            await self._blocked_for(session, login_key, now, lock=True),
            await self._blocked_for(session, CONSOLE_THROTTLE_KEY, now),
        )
        if blocked:
            await deps.audit(
                session,
                IdentityEvent.LOGIN_THROTTLED,
                user_id=None,
                request=CONSOLE_REQUEST,
                data=context,
            )
            return Denied(Failure.THROTTLED, retry_after_seconds=-(-blocked // NS_PER_SECOND))
        presented = hash_secret_token(code)
        row = await repository.ticket_by_hash(session, presented, CONSOLE_CODE_TICKET)
        live = (
            row is not None
            and row.used_ns is None
            and row.expires_ns > now
            and secrets.compare_digest(row.token_hash, presented)
            and await repository.spend_ticket(session, row.id, now)
        )
        found = await repository.user_by_login(session, login)
        eligible = found is not None and await self._console_eligible(session, found, now)
        user = found if eligible else None
        if (
            not live
            or row is None
            or user is None
            or not secrets.compare_digest((row.user_id or "").encode(), user.id.encode())
        ):
            await self._count_failure(session, login_key, deps.policy.max_failures)
            await self._count_towards_lock(
                session, CONSOLE_THROTTLE_KEY, deps.policy.ip_max_failures
            )
            await deps.audit(
                session,
                IdentityEvent.LOGIN_FAILED,
                user_id=user.id if user is not None else None,
                request=CONSOLE_REQUEST,
                data=context,
            )
            return Denied(Failure.INVALID_CREDENTIALS)
        await repository.clear_throttle(session, login_key)
        issued_by = str(json.loads(row.payload).get("session_id", ""))
        await deps.audit(
            session,
            IdentityEvent.CONSOLE_VERIFIED,
            user_id=user.id,
            actor=Party("operator", operator),
            data={
                "via": "cli",
                "operator": operator,
                "amr": ["hwk"],
                "staff_verified_by": "hardware_key_session",
                "session_id": issued_by,
                "code_id": row.id,
            },
        )
        return user, issued_by

    async def _password_step(
        self,
        session: AsyncSession,
        *,
        user: User | None,
        password: str,
        login_key: str,
        network_key: str,
        request: RequestInfo,
        trusted: Device | None,
        context: Mapping[str, Any] | None = None,
    ) -> User | Denied:
        """Check the password against the throttles (first) and the account's state; the user
        when both pass. Counters are not cleared here: the caller does that when it accepts
        the sign-in (`_password_accepted`), after any check of its own that must count like
        a wrong password."""
        deps, now = self.deps, self.deps.clock.now_ns()
        if trusted is not None:
            blocked = await self._blocked_for(session, _device_key(trusted), now, lock=True)
        else:
            blocked = max(
                await self._blocked_for(session, login_key, now, lock=True),
                await self._blocked_for(session, network_key, now),
            )
        if blocked:
            await deps.audit(
                session,
                IdentityEvent.LOGIN_THROTTLED,
                user_id=None,
                request=request,
                data=context,
            )
            return Denied(Failure.THROTTLED, retry_after_seconds=-(-blocked // NS_PER_SECOND))
        # Read for known and unknown names alike, so the two paths run the same queries.
        # (An unknown name locks a row of its own: one shared row would queue every unknown
        # name's sign-in behind every other's.)
        account_key = _account_key(user) if user is not None else f"acct:-{login_key}"
        account_blocked = trusted is None and bool(
            await self._blocked_for(session, account_key, now, lock=True)
        )
        if user is None or user.password_hash is None:
            # Spend the same time a real verification takes (no enumeration by timing).
            await self.hasher.verify_dummy_async()
            return await self._password_failed(
                session,
                None,
                login_key,
                network_key=network_key,
                request=request,
                trusted=trusted,
                context=context,
            )
        password_ok = await self.hasher.verify_async(user.password_hash, password)
        locked = user.status != "active" or (user.locked_until_ns or 0) > now or account_blocked
        if not password_ok or locked:
            return await self._password_failed(
                session,
                user if not locked else None,
                login_key,
                network_key=network_key,
                request=request,
                trusted=trusted,
                context=context,
            )
        return user

    async def _password_accepted(
        self,
        session: AsyncSession,
        user: User,
        password: str,
        login_key: str,
        trusted: Device | None,
    ) -> None:
        """A right password: the failure counts it was judged by start again."""
        if trusted is not None:
            await repository.clear_throttle(session, _device_key(trusted))
        else:
            await repository.clear_throttle(session, login_key)
            await repository.clear_throttle(session, _account_key(user))
            user.failed_logins = 0
        if user.password_hash is not None and self.hasher.needs_rehash(user.password_hash):
            user.password_hash = await self.hasher.hash_async(password)

    async def _trusted_device(
        self, session: AsyncSession, user: User | None, request: RequestInfo
    ) -> Device | None:
        """The device the request's token proves, if it is authorized for this very account."""
        if not request.device_token or len(request.device_token) > 128:
            return None
        device = await repository.device_with_token(
            session, hash_secret_token(request.device_token)
        )
        if device is None or user is None or device.user_id != user.id:
            return None
        return device if device.authorized_ns is not None else None

    async def _blocked_for(
        self, session: AsyncSession, key: str, now: int, *, lock: bool = False
    ) -> int:
        # `lock`: take the key's row for the rest of the transaction, so a burst of parallel
        # guesses is judged one after another, not all against the same old count.
        row = (
            await repository.locked_throttle(session, key, now)
            if lock
            else await repository.throttle(session, key)
        )
        if row is None:
            return 0
        return ThrottleState(
            row.failures, row.window_start_ns, row.blocked_until_ns
        ).blocked_for_ns(now)

    async def _count_failure(self, session: AsyncSession, key: str, limit: int) -> ThrottleState:
        now, policy = self.deps.clock.now_ns(), self.deps.policy
        failures = await repository.increment_throttle(
            session, key, now_ns=now, window_ns=WINDOW_SECONDS * NS_PER_SECOND
        )
        delay = delay_seconds(failures, max_failures=limit, lockout_seconds=policy.lockout_seconds)
        blocked = now + delay * NS_PER_SECOND if delay else None
        if blocked is not None:
            await repository.block_throttle(session, key, blocked)
        return ThrottleState(failures, now, blocked)

    async def _count_towards_lock(self, session: AsyncSession, key: str, limit: int) -> int:
        """Count a failure with no back-off; at `limit` failures in the window, block the key."""
        now, policy = self.deps.clock.now_ns(), self.deps.policy
        failures = await repository.increment_throttle(
            session, key, now_ns=now, window_ns=WINDOW_SECONDS * NS_PER_SECOND
        )
        if failures >= limit:
            await repository.block_throttle(session, key, now + policy.ns(policy.lockout_seconds))
        return failures

    async def count_ip_failure(self, session: AsyncSession, request: RequestInfo) -> None:
        """A failed sign-in from this client network (password or passkey).

        A plain quota that blocks only at its setting, with no back-off before it: one bad
        client behind a shared address (NAT, corporate proxy) must not slow everyone else.
        """
        await self._count_towards_lock(
            session, ip_throttle_key(self.deps, request.ip), self.deps.policy.ip_max_failures
        )

    async def over_limit(
        self,
        session: AsyncSession,
        key: str,
        *,
        limit: int,
        window_seconds: int = WINDOW_SECONDS,
    ) -> int:
        """Count one use of a rate-limited action; the ns to wait if it is refused, else 0.

        A plain quota (no back-off): legitimate uses come in bursts from shared networks. A
        refused use waits for the window to end.
        """
        now = self.deps.clock.now_ns()
        window = window_seconds * NS_PER_SECOND
        uses, started = await repository.count_use(session, key, now_ns=now, window_ns=window)
        if uses > limit:
            return max(started + window - now, NS_PER_SECOND)
        return 0

    async def quota_refused(
        self,
        session: AsyncSession,
        quotas: list[tuple[str, str, int, int]],
        *,
        user_id: str | None,
        request: RequestInfo,
    ) -> int:
        """Count one use against each (name, key, limit, window) quota; audit any exceeded.

        Every quota counts the attempt, refused or not. Returns the whole seconds to wait
        (0: allowed).
        """
        waits = {
            name: await self.over_limit(session, key, limit=limit, window_seconds=window)
            for name, key, limit, window in quotas
        }
        exceeded = sorted(name for name, wait in waits.items() if wait)
        if not exceeded:
            return 0
        retry = -(-max(waits.values()) // NS_PER_SECOND)
        await self.deps.audit(
            session,
            IdentityEvent.QUOTA_EXCEEDED,
            user_id=user_id,
            request=request,
            data={"quotas": exceeded, "retry_after_seconds": retry},
        )
        return retry

    async def sms_refused(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        number: str,
        purpose: str,
        request: RequestInfo,
    ) -> int:
        """Count a text message against its user, its number and the client network.

        Texts cost money and can be aimed at any number (toll fraud, SMS bombing). Numbers
        being enrolled are counted apart from confirmed ones, so bombing a number through
        enrolments does not also block its owner's sign-in codes.
        """
        policy = self.deps.policy
        return await self.quota_refused(
            session,
            [
                ("sms_per_user", f"sms-user:{user_id}", policy.sms_max_per_user, DAY_SECONDS),
                (
                    "sms_per_number",
                    self.deps.counter_key(f"sms-{purpose}", number),
                    policy.sms_max_per_number,
                    DAY_SECONDS,
                ),
                (
                    "sms_per_network",
                    self.deps.counter_key("sms-net", client_bucket(request.ip)),
                    policy.sms_max_per_network,
                    HOUR_SECONDS,
                ),
            ],
            user_id=user_id,
            request=request,
        )

    # Second-factor guessing is limited per user, across tickets, step-ups and resets: a
    # correct password must not reset it, or each new login would bring fresh guesses.

    async def mfa_blocked(self, session: AsyncSession, user_id: str) -> int:
        return await self._blocked_for(
            session, f"mfa:{user_id}", self.deps.clock.now_ns(), lock=True
        )

    async def second_factor_refusal(self, session: AsyncSession, user: User) -> Denied | None:
        """Denied while second-factor guesses are refused: locked out, or backing off.

        Only for callers past the password (MFA ticket, session, reset link): they may learn
        that the account is locked, and for how long. The password step itself never says.
        """
        blocked = await self.mfa_blocked(session, user.id)
        if not blocked:
            return None
        now = self.deps.clock.now_ns()
        locked_for = (user.locked_until_ns or 0) - now
        if locked_for > 0:
            wait = max(blocked, locked_for)
            return Denied(Failure.ACCOUNT_LOCKED, retry_after_seconds=-(-wait // NS_PER_SECOND))
        return Denied(Failure.THROTTLED, retry_after_seconds=-(-blocked // NS_PER_SECOND))

    async def record_mfa_failure(
        self, session: AsyncSession, user: User, request: RequestInfo, *, method: str
    ) -> None:
        deps, policy = self.deps, self.deps.policy
        state = await self._count_failure(session, f"mfa:{user.id}", policy.max_mfa_failures)
        await deps.audit(
            session,
            IdentityEvent.MFA_FAILED,
            user_id=user.id,
            request=request,
            data={"method": method, "failures": state.failures},
        )
        if state.failures == policy.max_mfa_failures:
            await self._lock_account(
                session,
                user,
                request,
                reason="second_factor_failures",
                why=f"After {state.failures} wrong second-factor codes",
                advice="Someone may know your password: change it and review your devices.",
            )

    async def _lock_account(
        self,
        session: AsyncSession,
        user: User,
        request: RequestInfo,
        *,
        reason: str,
        why: str,
        advice: str,
        untrusted_only: bool = False,
    ) -> None:
        """Lock temporarily, audit it and tell the owner (the same for every cause).

        `untrusted_only`: the lock is the account's throttle block, which devices already
        authorized for the account do not see (password guessing must not lock the owner
        out); otherwise the whole account is locked, whatever the device.
        """
        deps, policy = self.deps, self.deps.policy
        minutes = policy.lockout_seconds // 60
        if untrusted_only:
            what = (
                f"sign-ins from devices you have not authorized are paused for {minutes} "
                "minutes (your authorized devices can still sign in)"
            )
        else:
            user.locked_until_ns = deps.clock.now_ns() + policy.ns(policy.lockout_seconds)
            what = f"your account is locked for {minutes} minutes"
        await deps.audit(
            session,
            IdentityEvent.ACCOUNT_LOCKED,
            user_id=user.id,
            request=request,
            data={
                "seconds": policy.lockout_seconds,
                "reason": reason,
                "untrusted_only": untrusted_only,
            },
        )
        await deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="account_locked",
            subject="Your tradeguard account was temporarily locked",
            body=f"{why} {what}. {advice}",
        )

    async def lock_for_takeover(
        self, session: AsyncSession, *, user_id: str, request: RequestInfo
    ) -> list[str]:
        """Lock the account for the lockout period and end every session: the takeover
        defence's strongest response (ATO-2). Returns the sessions ended."""
        user = await repository.user_by_id(session, user_id)
        if user is None:
            return []
        await self._lock_account(
            session,
            user,
            request,
            reason="takeover_suspected",
            why="A sign-in to your account looked like someone else's:",
            advice=(
                "If it was you, wait and sign in again; if not, reset your password and "
                "contact support."
            ),
        )
        return await self.revoke(
            session, user_id=user_id, request=request, reason="takeover_suspected"
        )

    async def demand_step_up(self, session: AsyncSession, *, session_id: str) -> None:
        """The session's second factor no longer counts as fresh: sensitive actions in it
        need a new one (POST /api/v1/auth/mfa/step-up) first (ATO-2 step-up challenge)."""
        auth = await repository.auth_session(session, session_id)
        if auth is not None:
            auth.mfa_verified_ns = None

    async def authorize_device(
        self, session: AsyncSession, user: User, device: Device, request: RequestInfo, *, by: str
    ) -> None:
        """A device that completed multi-factor sign-in becomes authorized; the owner is told."""
        deps = self.deps
        device.authorized_ns = deps.clock.now_ns()
        await deps.audit(
            session,
            IdentityEvent.DEVICE_AUTHORIZED,
            user_id=user.id,
            request=request,
            data={"device_id": device.id, "by": by},
        )
        await deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="new_device",
            subject="New sign-in to your tradeguard account",
            body=(
                f"A new device signed in ({by}): {plain_text(device.name, limit=120)}, "
                f"from {request.ip or 'an unknown address'}. "
                "If this was not you, revoke it under Devices and change your password."
            ),
        )

    async def clear_mfa_failures(self, session: AsyncSession, user_id: str) -> None:
        await repository.clear_throttle(session, f"mfa:{user_id}")

    async def _password_failed(
        self,
        session: AsyncSession,
        user: User | None,
        login_key: str,
        *,
        network_key: str,
        request: RequestInfo,
        trusted: Device | None,
        context: Mapping[str, Any] | None = None,
    ) -> Denied:
        deps, policy = self.deps, self.deps.policy
        extra = dict(context or {})
        if trusted is not None:
            # An authorized device's own budget: a stolen device backs off and locks by
            # itself, without touching the account's budget for everyone else.
            state = await self._count_failure(session, _device_key(trusted), policy.max_failures)
            await deps.audit(
                session,
                IdentityEvent.LOGIN_FAILED,
                user_id=trusted.user_id,
                request=request,
                data={"failures": state.failures, "device_id": trusted.id, **extra},
            )
            return Denied(Failure.INVALID_CREDENTIALS)
        string = await self._count_failure(session, login_key, policy.max_failures)
        await self._count_towards_lock(session, network_key, policy.ip_max_failures)
        failures = string.failures
        if user is not None:
            # One budget per account, whichever name (username or email) the guesses use.
            failures = await self._count_towards_lock(
                session, _account_key(user), policy.max_failures
            )
            user.failed_logins = failures
        await deps.audit(
            session,
            IdentityEvent.LOGIN_FAILED,
            user_id=user.id if user else None,
            request=request,
            data={"failures": failures, **extra},
        )
        if user is not None and failures == policy.max_failures:
            await self._lock_account(
                session,
                user,
                request,
                reason="password_failures",
                why=f"After {failures} failed sign-in attempts",
                advice="If this was not you, reset your password and review your devices.",
                untrusted_only=True,
            )
        return Denied(Failure.INVALID_CREDENTIALS)

    async def _recognize_device(
        self,
        session: AsyncSession,
        user: User,
        request: RequestInfo,
        *,
        trusted: Device | None = None,
    ) -> tuple[Device, str | None, bool]:
        """The device signing in: (device, a new token for the client or None, by token?).

        The device token is what identifies a device. A client that sends none is matched
        by its fingerprint and client network to a device of the user seen recently, but
        only to one that is not authorized, so nothing is inherited by resemblance (its
        token is renewed, since the client evidently lost the old one).
        """
        now = self.deps.clock.now_ns()
        known = trusted
        if known is None and request.device_token and len(request.device_token) <= 128:
            known = await repository.device_by_token(
                session, user.id, hash_secret_token(request.device_token)
            )
        if known is not None:
            known.last_seen_ns, known.last_ip = now, request.ip
            return known, None, True
        digest = fingerprint(request.device_attributes)
        token, token_hash = new_secret_token()
        lookalikes = await self._lookalikes(session, user, digest, request)
        lookalike = next((d for d in lookalikes if d.authorized_ns is None), None)
        if lookalike is not None:
            lookalike.token_hash = token_hash
            lookalike.last_seen_ns, lookalike.last_ip = now, request.ip
            await self.deps.audit(
                session,
                IdentityEvent.DEVICE_SEEN,
                user_id=user.id,
                request=request,
                data={"device_id": lookalike.id, "recognized_by": "fingerprint"},
            )
            return lookalike, token, False
        device = Device(
            id=self.deps.ids.new_str(),
            user_id=user.id,
            token_hash=token_hash,
            fingerprint=digest,
            name=device_name({**request.device_attributes, "user_agent": request.user_agent}),
            created_ns=now,
            last_seen_ns=now,
            last_ip=request.ip,
        )
        session.add(device)
        await session.flush()
        await self.deps.audit(
            session,
            IdentityEvent.DEVICE_SEEN,
            user_id=user.id,
            request=request,
            data={"device_id": device.id},
        )
        return device, token, False

    async def _lookalikes(
        self, session: AsyncSession, user: User, digest: bytes, request: RequestInfo
    ) -> list[Device]:
        """The user's recent devices with this fingerprint on this client network, newest first."""
        window = self.deps.policy.device_recognition_seconds
        if not window:
            return []
        rows = await repository.devices_with_fingerprint(
            session,
            user.id,
            digest,
            seen_since_ns=self.deps.clock.now_ns() - self.deps.policy.ns(window),
        )
        network = client_bucket(request.ip)
        return [d for d in rows if client_bucket(d.last_ip) == network]

    async def device_after_mfa(
        self,
        session: AsyncSession,
        user: User,
        device: Device,
        request: RequestInfo,
        *,
        by: str,
        by_token: bool,
    ) -> Device:
        """The device a sign-in that just proved a second factor is attributed to.

        A device recognised by its token is authorized if it is not yet. A client without a
        token that looks like (fingerprint and network) a device already authorized for the
        user is that device signing in again: the sign-in is attributed to it and the
        throwaway record made at the password step is retired, so repeated sign-ins do not
        pile up devices and "new device" emails. Nothing is inherited that this sign-in did
        not earn: a completed second factor authorizes the device it is on in any case.
        """
        if device.authorized_ns is not None:
            return device
        if not by_token:
            twin = next(
                (
                    d
                    for d in await self._lookalikes(session, user, device.fingerprint, request)
                    if d.authorized_ns is not None and d.id != device.id
                ),
                None,
            )
            if twin is not None:
                now = self.deps.clock.now_ns()
                device.revoked_ns = now
                twin.last_seen_ns, twin.last_ip = now, request.ip
                await self.deps.audit(
                    session,
                    IdentityEvent.DEVICE_SEEN,
                    user_id=user.id,
                    request=request,
                    data={
                        "device_id": twin.id,
                        "recognized_by": "fingerprint",
                        "retired_device_id": device.id,
                    },
                )
                return twin
        await self.authorize_device(session, user, device, request, by=by)
        return device

    async def available_methods(self, session: AsyncSession, user_id: str) -> list[str]:
        factors = await repository.factors_of(session, user_id)
        return sorted({FACTOR_METHOD[f.kind].value for f in factors if f.kind in FACTOR_METHOD})

    # Second factor ----------------------------------------------------------------------

    async def send_login_code(
        self, session: AsyncSession, *, ticket: str, method: Method, request: RequestInfo
    ) -> Denied | None:
        """Send an email or SMS code for a pending login (rate-limited by the ticket)."""
        row = await self._ticket_or_failure(session, ticket)
        if isinstance(row, Failure):
            return Denied(row)
        if row.user_id is None:
            return Denied(Failure.INVALID_TICKET)
        factor = await self._factor_for(session, row.user_id, method)
        if factor is None or method not in {Method.EMAIL, Method.SMS}:
            return Denied(Failure.METHOD_NOT_ENROLLED)
        payload = json.loads(row.payload)
        sent = int(payload.get("codes_sent", 0))
        if sent >= MAX_CODES_PER_TICKET:
            # This ticket sends no more; a new sign-in may, once this one has run out.
            left_ns = row.expires_ns - self.deps.clock.now_ns()
            return Denied(Failure.THROTTLED, retry_after_seconds=-(-left_ns // NS_PER_SECOND))
        if method is Method.SMS:
            wait = await self.sms_refused(
                session,
                user_id=row.user_id,
                number=self.destination(factor),
                purpose="login",
                request=request,
            )
            if wait:
                return Denied(Failure.THROTTLED, retry_after_seconds=wait)
        await self.issue_code(
            session, user_id=row.user_id, factor=factor, ticket_row=row, payload=payload
        )
        payload["codes_sent"] = sent + 1
        row.payload = json.dumps(payload)
        return None

    async def issue_code(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        factor: MfaFactor,
        ticket_row: AuthTicket,
        payload: dict[str, Any],
    ) -> None:
        """Issue an OTP for `factor`, remember its hash in the ticket, and send it."""
        deps = self.deps
        channel = otp_codes.OtpChannel.SMS if factor.kind == "sms" else otp_codes.OtpChannel.EMAIL
        code, challenge = otp_codes.issue(
            channel=channel, now_ns=deps.clock.now_ns(), pepper=deps.pepper(OTP_PEPPER)
        )
        payload["otp"] = {
            "challenge_id": challenge.challenge_id,
            "channel": channel.value,
            "code_hash": challenge.code_hash.hex(),
            "digits": challenge.digits,
            "expires_at_ns": challenge.expires_at_ns,
            "attempts_left": challenge.attempts_left,
            "used": False,
            "factor_id": factor.id,
        }
        destination = self.destination(factor)
        if channel is otp_codes.OtpChannel.SMS:
            await deps.notifier.enqueue_sms(
                session,
                to=destination,
                template="otp_code",
                body=f"Your tradeguard code is {code}. It expires in 5 minutes. Never share it.",
            )
        else:
            await deps.notifier.enqueue_email(
                session,
                to=destination,
                template="otp_code",
                subject="Your tradeguard verification code",
                body=f"Your code is {code}. It expires in 5 minutes. We will never ask you for it.",
            )

    def destination(self, factor: MfaFactor) -> str:
        if factor.destination_enc is None:
            raise ValueError("factor has no destination")
        return self.deps.keyring.decrypt(
            factor.destination_enc, purpose=DESTINATION_PURPOSE, context=factor.id.encode()
        ).decode()

    async def verify_login(
        self,
        session: AsyncSession,
        *,
        ticket: str,
        method: Method,
        code: str | None,
        request: RequestInfo,
        webauthn_verifier: Any = None,
    ) -> TokenPair | Denied:
        """Second step of login: the MFA ticket plus one factor gives a full session."""
        deps = self.deps
        row = await self._ticket_or_failure(session, ticket)
        if isinstance(row, Failure):
            return Denied(row)
        if row.user_id is None:
            return Denied(Failure.INVALID_TICKET)
        user = await repository.user_by_id(session, row.user_id)
        if user is None:
            return Denied(Failure.INVALID_TICKET)
        refused = await self.second_factor_refusal(session, user)
        if refused is not None:
            return refused
        # (An emailed or texted code cannot outlive its ticket: both last five minutes and the
        # code is sent after the ticket is issued, so an expired code is an expired ticket.)
        # Take the guess atomically before checking it: parallel requests cannot share one.
        attempt = await repository.reserve_ticket_attempt(
            session, row.id, deps.policy.max_ticket_attempts
        )
        if attempt is None:
            return Denied(Failure.INVALID_TICKET)
        payload = json.loads(row.payload)
        if method is Method.WEBAUTHN and webauthn_verifier is not None:
            ok = await webauthn_verifier(session, user, payload)
        else:
            ok = await self.check_factor(
                session, user_id=user.id, method=method, code=code or "", payload=payload
            )
        if not ok:
            row.payload = json.dumps(payload)
            await self.record_mfa_failure(session, user, request, method=method.value)
            return Denied(Failure.WRONG_CODE)
        await self.clear_mfa_failures(session, user.id)
        if not await repository.spend_ticket(session, row.id, deps.clock.now_ns()):
            return Denied(Failure.INVALID_TICKET)
        device = await repository.device_of(session, user.id, str(payload.get("device_id", "")))
        if device is not None:
            device = await self.device_after_mfa(
                session,
                user,
                device,
                request,
                by=method.value,
                by_token=bool(payload.get("by_token", True)),
            )
        amr = ["pwd", AMR[method], "mfa"]
        await deps.audit(
            session,
            IdentityEvent.MFA_VERIFIED,
            user_id=user.id,
            request=request,
            data={"method": method.value},
        )
        await deps.audit(
            session,
            IdentityEvent.LOGIN_SUCCEEDED,
            user_id=user.id,
            request=request,
            data={"amr": amr, "device_id": device.id if device else None},
        )
        return await self._start_session(session, user, device, amr, request, mfa=True)

    async def _live_ticket(self, session: AsyncSession, ticket: str) -> AuthTicket | None:
        row = await self._ticket_or_failure(session, ticket)
        return None if isinstance(row, Failure) else row

    async def _ticket_or_failure(self, session: AsyncSession, ticket: str) -> AuthTicket | Failure:
        """The live MFA ticket, or why it cannot be used (expired is told apart: the caller
        holds the ticket, so learns nothing from it)."""
        if not ticket or len(ticket) > 128:
            return Failure.INVALID_TICKET
        row = await repository.ticket_by_hash(session, hash_secret_token(ticket), MFA_TICKET)
        now = self.deps.clock.now_ns()
        if row is None or row.used_ns is not None:
            return Failure.INVALID_TICKET
        if row.attempts >= self.deps.policy.max_ticket_attempts:
            return Failure.INVALID_TICKET
        if row.expires_ns <= now:
            return Failure.TICKET_EXPIRED
        return row

    async def _factor_for(
        self, session: AsyncSession, user_id: str, method: Method
    ) -> MfaFactor | None:
        for factor in await repository.factors_of(session, user_id):
            if FACTOR_METHOD.get(factor.kind) is method:
                return factor
        return None

    async def check_factor(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        method: Method,
        code: str,
        payload: dict[str, Any],
    ) -> bool:
        """Check a TOTP, backup or OTP code; a used code or step is never accepted again."""
        deps, now = self.deps, self.deps.clock.now_ns()
        if method is Method.TOTP:
            for factor in await repository.factors_of(session, user_id):
                if factor.kind != "totp" or factor.secret_enc is None:
                    continue
                secret = deps.keyring.decrypt(
                    factor.secret_enc, purpose=TOTP_SECRET_PURPOSE, context=factor.id.encode()
                ).decode()
                step = totp.verify(secret, code, now_ns=now, last_used_step=factor.last_used_step)
                # The conditional update refuses a step that a concurrent request already used.
                if step is not None and await repository.advance_totp_step(
                    session, factor.id, step, now
                ):
                    return True
            return False
        if method is Method.BACKUP_CODE:
            book = await self._factor_for(session, user_id, method)
            if book is None:
                return False
            rows = await repository.backup_codes(session, book.id)
            hashes = [None if r.used_ns is not None else r.code_hash for r in rows]
            index = self.backup_book.match(code, hashes)
            if index is None or not await repository.spend_backup_code(
                session, book.id, rows[index].idx, now
            ):
                return False
            remaining = sum(1 for h in hashes if h is not None) - 1
            await deps.audit(
                session,
                IdentityEvent.BACKUP_CODE_USED,
                user_id=user_id,
                data={"remaining": remaining},
            )
            return True
        if method in {Method.EMAIL, Method.SMS}:
            return self._check_otp(payload, code, now)
        return False

    def _check_otp(self, payload: dict[str, Any], code: str, now: int) -> bool:
        stored = payload.get("otp")
        if not isinstance(stored, dict):
            return False
        challenge = otp_codes.OtpChallenge(
            challenge_id=stored["challenge_id"],
            channel=otp_codes.OtpChannel(stored["channel"]),
            code_hash=bytes.fromhex(stored["code_hash"]),
            digits=int(stored["digits"]),
            expires_at_ns=int(stored["expires_at_ns"]),
            attempts_left=int(stored["attempts_left"]),
            used=bool(stored["used"]),
        )
        result = otp_codes.verify(challenge, code, now_ns=now, pepper=self.deps.pepper(OTP_PEPPER))
        stored["attempts_left"] = result.challenge.attempts_left
        stored["used"] = result.challenge.used
        return result.accepted

    # Sessions -----------------------------------------------------------------------------

    async def _start_session(
        self,
        session: AsyncSession,
        user: User,
        device: Device | None,
        amr: list[str],
        request: RequestInfo,
        *,
        mfa: bool,
    ) -> TokenPair | Denied:
        """A new session and its tokens; Denied when the sign-in observer (the takeover
        defence) locked the account and ended the session in the same transaction."""
        deps, now = self.deps, self.deps.clock.now_ns()
        auth = AuthSession(
            id=deps.ids.new_str(),  # a new session id on every (re)authentication
            user_id=user.id,
            device_id=device.id if device else None,
            amr=" ".join(amr),
            created_ns=now,
            last_seen_ns=now,
            expires_ns=now + deps.policy.ns(deps.policy.session_lifetime_seconds),
            mfa_verified_ns=now if mfa else None,
            ip=request.ip,
            user_agent=user_agent_text(request.user_agent),
        )
        session.add(auth)
        await session.flush()
        await deps.audit(
            session,
            IdentityEvent.SESSION_CREATED,
            user_id=user.id,
            request=request,
            data={"session_id": auth.id, "amr": amr},
        )
        if self.sign_in_observer is not None:
            await self.sign_in_observer(
                session,
                SignIn(
                    user_id=user.id,
                    session_id=auth.id,
                    device_id=auth.device_id,
                    role=user.role,
                    at_ns=now,
                    request=request,
                ),
            )
            await session.refresh(auth, ["revoked_ns"])
            if auth.revoked_ns is not None:
                # No tokens for a session that is already over: the client is told the
                # account is locked, and for how long (it is past the password step).
                locked_for = max((user.locked_until_ns or 0) - now, NS_PER_SECOND)
                return Denied(
                    Failure.ACCOUNT_LOCKED,
                    retry_after_seconds=-(-locked_for // NS_PER_SECOND),
                    detail=TAKEOVER_LOCKED_DETAIL,
                )
        return await self._issue_pair(session, user, auth, device)

    async def _issue_pair(
        self,
        session: AsyncSession,
        user: User,
        auth: AuthSession,
        device: Device | None,
        *,
        refresh: tuple[str, bytes] | None = None,
    ) -> TokenPair:
        """A new access token with a refresh token: `refresh` (token, hash) or a fresh one."""
        token, token_hash = refresh or new_refresh_token()
        session.add(
            RefreshToken(
                token_hash=token_hash, session_id=auth.id, issued_ns=self.deps.clock.now_ns()
            )
        )
        return self._with_access_token(user, auth, device, token)

    def _with_access_token(
        self, user: User, auth: AuthSession, device: Device | None, refresh: str
    ) -> TokenPair:
        role = Role(user.role)
        access = self.issuer.issue(
            subject=user.id,
            session_id=auth.id,
            role=role.value,
            permissions=effective_permissions(
                role,
                auth.amr.split(),
                device is not None and device.authorized_ns is not None,
                level=parse_level(user.access_level),
            ),
            amr=auth.amr.split(),
        )
        expires = access.claims.expires_at - access.claims.issued_at
        return TokenPair(access.token, refresh, expires, auth.id)

    async def refresh(
        self, session: AsyncSession, *, refresh_token: str, request: RequestInfo
    ) -> TokenPair | Denied:
        """Rotate a refresh token. A session has one chain of refresh tokens, never two.

        Spending a token names its successor in the same conditional update. The same token
        presented again within the grace window (parallel refreshes by one client) gets that
        same successor back with a new access token, so no second chain is ever minted;
        presented after the window, it is reuse: the session ends with every token in it.
        """
        deps, now = self.deps, self.deps.clock.now_ns()
        if not refresh_token or len(refresh_token) > 128:
            return Denied(Failure.INVALID_REFRESH)
        token_hash = hash_secret_token(refresh_token)
        row = await repository.refresh_token(session, token_hash)
        if row is None:
            return Denied(Failure.INVALID_REFRESH)
        auth = await repository.auth_session(session, row.session_id)
        if auth is None or auth.revoked_ns is not None or auth.expires_ns <= now:
            return Denied(Failure.INVALID_REFRESH)
        user = await repository.user_by_id(session, auth.user_id)
        if user is None or user.status != "active" or not _ip_allowed(user, request.ip):
            return Denied(Failure.INVALID_REFRESH)
        if now - auth.last_seen_ns > deps.policy.idle_ns(Role(user.role)):
            # A refresh is not activity: a client refreshing in the background must not keep
            # an abandoned session alive past the inactivity limit (SESS-5).
            await self.revoke(
                session, user_id=user.id, session_id=auth.id, request=request, reason="inactivity"
            )
            return Denied(Failure.INACTIVE, revoked_sessions=(auth.id,))
        device = (
            await repository.device_of(session, user.id, auth.device_id) if auth.device_id else None
        )
        successor, successor_hash = new_refresh_token()
        sealed = deps.keyring.encrypt(
            successor.encode(), purpose=REFRESH_SUCCESSOR_PURPOSE, context=token_hash
        )
        if row.spent_ns is None and await repository.spend_refresh_token(
            session, token_hash, now, successor_enc=sealed
        ):
            await deps.audit(
                session,
                IdentityEvent.SESSION_REFRESHED,
                user_id=user.id,
                request=request,
                data={"session_id": auth.id, "grace": False},
            )
            return await self._issue_pair(
                session, user, auth, device, refresh=(successor, successor_hash)
            )
        # Already spent, by a parallel refresh that may have committed just now: read what
        # it recorded, not the copy read before the update.
        spent = await repository.refresh_token_as_committed(session, token_hash)
        spent_at = spent.spent_ns if spent is not None and spent.spent_ns is not None else now
        if now - spent_at > deps.policy.ns(deps.policy.refresh_grace_seconds):
            await repository.revoke_sessions(
                session,
                user_id=auth.user_id,
                session_id=auth.id,
                now_ns=now,
                reason="refresh_reuse",
            )
            await deps.audit(
                session,
                IdentityEvent.REFRESH_REUSE_DETECTED,
                user_id=auth.user_id,
                request=request,
                data={"session_id": auth.id},
            )
            return Denied(Failure.REFRESH_REUSED, revoked_sessions=(auth.id,))
        if spent is None or spent.successor_enc is None:
            # Spent before successors were recorded (an upgrade moments ago): no new chain.
            return Denied(Failure.INVALID_REFRESH)
        same_successor = deps.keyring.decrypt(
            spent.successor_enc, purpose=REFRESH_SUCCESSOR_PURPOSE, context=token_hash
        ).decode()
        await deps.audit(
            session,
            IdentityEvent.SESSION_REFRESHED,
            user_id=user.id,
            request=request,
            data={"session_id": auth.id, "grace": True},
        )
        return self._with_access_token(user, auth, device, same_successor)

    async def revoke(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        request: RequestInfo,
        reason: str,
        session_id: str | None = None,
        device_id: str | None = None,
    ) -> list[str]:
        revoked = await repository.revoke_sessions(
            session,
            user_id=user_id,
            session_id=session_id,
            device_id=device_id,
            now_ns=self.deps.clock.now_ns(),
            reason=reason,
        )
        for sid in revoked:
            await self.deps.audit(
                session,
                IdentityEvent.SESSION_REVOKED,
                user_id=user_id,
                request=request,
                data={"session_id": sid, "reason": reason},
            )
        return revoked

    async def session_state(self, session: AsyncSession, session_id: str) -> SessionState | None:
        auth = await repository.auth_session(session, session_id)
        if auth is None:
            return None
        user = await repository.user_by_id(session, auth.user_id)
        if user is None:
            return None
        now = self.deps.clock.now_ns()
        device = (
            await repository.device_of(session, user.id, auth.device_id) if auth.device_id else None
        )
        role = Role(user.role)
        staff = role in STAFF_ROLES
        # Traders hold no grants: their sessions (the order path) skip the query.
        grants = await access_repository.live_grants(session, user.id, now) if staff else []
        return SessionState(
            session_id=auth.id,
            user_id=user.id,
            role=role,
            active=auth.revoked_ns is None and auth.expires_ns > now and user.status == "active",
            last_seen_ns=auth.last_seen_ns,
            idle_ns=self.deps.policy.idle_ns(role),
            mfa_verified_ns=auth.mfa_verified_ns,
            created_ns=auth.created_ns,
            device_authorized=device is not None and device.authorized_ns is not None,
            ip_allowlist=tuple(json.loads(user.ip_allowlist)) if user.ip_allowlist else (),
            level=parse_level(user.access_level) if staff else None,
            grants=tuple(grants),
            permissions_version=user.permissions_version,
        )

    async def touch(self, session: AsyncSession, session_id: str) -> None:
        auth = await repository.auth_session(session, session_id)
        if auth is not None:
            auth.last_seen_ns = self.deps.clock.now_ns()

    async def step_up(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        session_id: str,
        method: Method,
        code: str,
        request: RequestInfo,
    ) -> Denied | None:
        """Re-prove a second factor inside an existing session (for sensitive actions)."""
        user = await repository.user_by_id(session, user_id)
        if user is None:
            return Denied(Failure.INVALID_TICKET)
        refused = await self.second_factor_refusal(session, user)
        if refused is not None:
            return refused
        ok = await self.check_factor(session, user_id=user_id, method=method, code=code, payload={})
        if not ok:
            await self.record_mfa_failure(session, user, request, method=f"{method.value}:step_up")
            return Denied(Failure.WRONG_CODE)
        await self.clear_mfa_failures(session, user_id)
        await self.deps.audit(
            session,
            IdentityEvent.MFA_VERIFIED,
            user_id=user_id,
            request=request,
            data={"method": method.value, "step_up": True},
        )
        await self.record_step_up(session, session_id=session_id, amr=AMR[method])
        return None

    async def fresh_access_token(
        self, session: AsyncSession, *, user_id: str, session_id: str
    ) -> tuple[str, int] | None:
        """A new access token for this live session as it stands now (after a step-up added
        "hwk" or "mfa"), with its lifetime in seconds; the refresh token is unchanged. None
        if the session has ended."""
        auth = await repository.auth_session(session, session_id)
        user = await repository.user_by_id(session, user_id)
        now = self.deps.clock.now_ns()
        if (
            auth is None
            or user is None
            or auth.user_id != user.id
            or auth.revoked_ns is not None
            or auth.expires_ns <= now
            or user.status != "active"
        ):
            return None
        device = (
            await repository.device_of(session, user.id, auth.device_id) if auth.device_id else None
        )
        pair = self._with_access_token(user, auth, device, "")
        return pair.access_token, pair.expires_in

    async def record_step_up(self, session: AsyncSession, *, session_id: str, amr: str) -> None:
        """The session proved a second factor just now (by the RFC 8176 method `amr`)."""
        auth = await repository.auth_session(session, session_id)
        if auth is not None:
            auth.mfa_verified_ns = self.deps.clock.now_ns()
            methods = auth.amr.split()
            added = [m for m in (amr, "mfa") if m not in methods]
            if added:
                auth.amr = " ".join([*methods, *added])


def refusal_error(denied: Denied) -> TooManyRequests:
    """The 429 for a second-factor refusal, for paths that raise instead of returning."""
    retry = denied.retry_after_seconds or 1
    if denied.failure is Failure.ACCOUNT_LOCKED:
        return AccountLocked(denied.detail or LOCKED_DETAIL, retry_after_seconds=retry)
    return TooManyRequests(denied.detail or THROTTLED_DETAIL, retry_after_seconds=retry)


def effective_permissions(
    role: Role, amr: list[str], device_authorized: bool, *, level: AccessLevel | None = None
) -> list[str]:
    """Standing permissions, less what this session may not yet use, sorted (for the token)."""
    return sorted(effective_permission_set(role, amr, device_authorized, level=level))


def effective_permission_set(
    role: Role,
    amr: list[str] | tuple[str, ...],
    device_authorized: bool,
    *,
    level: AccessLevel | None = None,
) -> frozenset[str]:
    """Standing permissions, less what this session may not yet use (deny by default).

    Without a verified second factor a session can only look and enrol one (ACCT-1). Staff
    need a WebAuthn factor for anything at all (IAC-3), and hold only the kinds of their
    role's permissions that their access level allows (IAC-2). Trading and withdrawals also
    need an authorized device (ACCT-4). Grants are added per request (identity/guard.py).
    """
    staff = role in STAFF_ROLES
    return _effective(
        role, "mfa" in amr, staff_factor(amr), device_authorized, level if staff else None
    )


@functools.lru_cache(maxsize=512)
def _effective(
    role: Role,
    second_factor: bool,
    webauthn: bool,
    device_authorized: bool,
    level: AccessLevel | None,
) -> frozenset[str]:
    # A handful of inputs, asked on every request (the order path included): cached.
    granted = standing_permissions(role, level)
    if role in STAFF_ROLES:
        return granted if webauthn else frozenset()
    if not second_factor:
        return frozenset(p for p in granted if p == Permission.ACCOUNT_VIEW)
    return frozenset(p for p in granted if device_authorized or p not in GUARDED_PERMISSIONS)


def staff_factor(amr: list[str] | tuple[str, ...]) -> bool:
    """Staff sessions must have been authenticated with a WebAuthn factor (IAC-3)."""
    return "hwk" in amr


def ip_throttle_key(deps: IdentityDeps, ip: str | None) -> str:
    """The key failed sign-ins from one client network are counted under: keyed (HMAC, as
    login strings are), so the throttle table holds no client address."""
    return deps.counter_key("ip", client_bucket(ip))


def login_throttle_key(deps: IdentityDeps, login: str) -> str:
    """The key failed sign-ins with one login string (known or not) are counted under.

    Keyed (HMAC), never the string itself: what people type into the login field when it
    fails is often not a login at all (a password, a card number), and the throttle table
    must not keep it in clear (PCI DSS 3.5.1)."""
    return deps.counter_key("login", login.strip().casefold()[:100])


def _account_key(user: User | None) -> str:
    return f"acct:{user.id if user is not None else '-'}"


def _device_key(device: Device) -> str:
    return f"device:{device.id}"


def _ip_allowed(user: User, ip: str | None) -> bool:
    return allowed(json.loads(user.ip_allowlist) if user.ip_allowlist else [], ip)


def _with_device_token(pair: TokenPair, device_token: str | None) -> TokenPair:
    return TokenPair(
        pair.access_token, pair.refresh_token, pair.expires_in, pair.session_id, device_token
    )


def generate_challenge() -> str:
    return secrets.token_urlsafe(32)
