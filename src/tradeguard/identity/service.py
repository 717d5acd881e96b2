"""Identity use cases. Services never commit: the request, job or command owns the transaction."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import DEFAULT_STAFF_LEVEL, STAFF_ROLES, Role
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import (
    CodeExpired,
    Conflict,
    InvalidInput,
    TooManyRequests,
    TradeguardError,
)
from tradeguard.identity import repository
from tradeguard.identity.breached_passwords import BreachedPasswordChecker, NoBreachCheck
from tradeguard.identity.common import (
    ANONYMOUS,
    COUNTER_KEY_PEPPER,
    IdentityDeps,
    RequestInfo,
    hash_secret_token,
    kept_if,
    new_secret_token,
)
from tradeguard.identity.errors import BreachCheckUnavailable, WeakPassword
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.ip_allowlist import client_bucket
from tradeguard.identity.models import AuthTicket, User
from tradeguard.identity.networks import masked_network, network_prefix
from tradeguard.identity.password_hashing import PasswordHasher
from tradeguard.identity.passwords import PasswordPolicy
from tradeguard.identity.sessions import (
    DAY_SECONDS,
    DESTINATION_PURPOSE,
    AuthService,
    Method,
    refusal_error,
)
from tradeguard.identity.throttle import WINDOW_SECONDS
from tradeguard.ledger.domain import SYSTEM, Party

log = logging.getLogger(__name__)

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,31}$")
# A username is stored and shown in clear, so one that is only a long number (with or
# without separators) is refused: it is most likely a card number, tax id or phone number
# typed into the wrong field (PCI DSS 3.5.1: no PAN readable anywhere it is stored).
_NUMBER_LIKE_USERNAME = re.compile(r"^(?:[._-]*\d){9,}[._-]*$")


def normalize_username(raw: str) -> str:
    username = unicodedata.normalize("NFKC", raw).strip().casefold()
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidInput(
            "username must be 3-32 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if _NUMBER_LIKE_USERNAME.fullmatch(username):
        raise InvalidInput(
            "username must not be a long number: never use a card, tax id or phone number"
        )
    return username


def normalize_email(raw: str) -> str:
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise InvalidInput("email is not a valid address") from None
    return result.normalized.casefold()


@dataclass(frozen=True, slots=True)
class NewUser:
    id: str
    username: str
    email: str
    role: Role


EMAIL_VERIFY_TICKET = "email_verify"
RESET_TICKET = "password_reset"
EMAIL_CHANGE_TICKET = "email_change"
# Per client network per 15-minute window (an IPv6 /64 counts as one client); sign-ups and
# verification resends are settings (IdentityPolicy).
RESETS_PER_WINDOW = 20
RESET_MAILS_PER_WINDOW = 3
# "Someone tried to register with your address" notices, per address per day: the owner
# hears about probing without being flooded by it.
REGISTER_NOTICES_PER_DAY = 1
# What to say when an emailed link has run out (only its holder can present it).
_EXPIRED_LINK = {
    "email_verify": "this verification link has expired; request a new one",
    "password_reset": "this reset link has expired; ask for a new one at POST "
    "/api/v1/auth/password/reset",
    "email_change": "this confirmation link has expired; start the email change again",
}


class AccountService:
    """Accounts: creation, registration, email verification, password reset."""

    def __init__(
        self,
        deps: IdentityDeps,
        *,
        hasher: PasswordHasher,
        policy: PasswordPolicy | None = None,
        auth: AuthService | None = None,
        breach_checker: BreachedPasswordChecker | None = None,
        breach_fail_closed: bool = False,
    ) -> None:
        self.deps = deps
        self.hasher = hasher
        self.password_policy = policy or PasswordPolicy()
        self.auth = auth
        self.breach_checker = breach_checker or NoBreachCheck()
        self.breach_fail_closed = breach_fail_closed

    async def _check_password(self, password: str, *, user_inputs: tuple[str, ...]) -> None:
        """Local rules, then the breach corpus (SP 800-63B-4: compare against breached lists)."""
        try:
            verdict = await self.password_policy.assess(
                password, user_inputs=user_inputs, breach_checker=self.breach_checker
            )
        except BreachCheckUnavailable:
            if self.breach_fail_closed:
                raise
            # Failing open keeps sign-up working when the corpus service is down; the local
            # checks above have already passed. Operators choose with the fail-closed setting.
            log.warning("breached-password service unavailable; accepted on local checks only")
            verdict = self.password_policy.check(password, user_inputs=user_inputs)
        if not verdict.accepted:
            raise WeakPassword(verdict.message, reason=verdict.reason)

    async def create_user(
        self,
        session: AsyncSession,
        *,
        username: str,
        email: str,
        password: str,
        role: Role,
        email_verified: bool = False,
        actor: Party = SYSTEM,
        event: IdentityEvent = IdentityEvent.USER_CREATED,
        user_id: str | None = None,
    ) -> NewUser:
        """Create an account after the password policy passes; the audit event commits with it.

        `user_id` is the account's id when it had to be chosen beforehand (a staff enrolment
        registers its security key against it before the account exists).
        """
        name = normalize_username(username)
        address = normalize_email(email)
        await self._check_password(password, user_inputs=(name, address))
        if await repository.username_taken(session, name) or await repository.email_taken(
            session, address
        ):
            raise Conflict("that username or email is already registered")
        return await self._add_user(
            session,
            username=name,
            email=address,
            password=password,
            role=role,
            email_verified=email_verified,
            actor=actor,
            event=event,
            user_id=user_id,
        )

    async def _add_user(
        self,
        session: AsyncSession,
        *,
        username: str,
        email: str,
        password: str,
        role: Role,
        email_verified: bool,
        actor: Party,
        event: IdentityEvent,
        user_id: str | None = None,
        request: RequestInfo | None = None,
    ) -> NewUser:
        """Insert an account (names already normalized and checked) and audit it."""
        now = self.deps.clock.now_ns()
        user = User(
            id=user_id or self.deps.ids.new_str(),
            username=username,
            email=email,
            email_verified_ns=now if email_verified else None,
            password_hash=await self.hasher.hash_async(password),
            role=role.value,
            # Staff start at the default level (the whole role, as before levels existed);
            # lower it with `tradeguard access level`.
            access_level=DEFAULT_STAFF_LEVEL.value if role in STAFF_ROLES else None,
            status="active",
            failed_logins=0,
            created_ns=now,
            password_changed_ns=now,
        )
        repository.add(session, user)
        await session.flush()
        await self.deps.audit(
            session,
            event,
            user_id=user.id,
            actor=actor,
            request=request,
            data={"role": role.value, "email_verified": email_verified},
        )
        return NewUser(user.id, username, email, role)

    async def sign_up_refused(self, session: AsyncSession, *, request: RequestInfo) -> int:
        """Count a sign-up attempt from this client network; seconds to wait, or 0.

        The edge commits this count in its own unit of work before it registers, so a
        sign-up that is then rejected (taken username, weak password) still counts.
        """
        if self.auth is None:
            return 0
        return await self.auth.quota_refused(
            session,
            [
                (
                    "signup_per_network",
                    self.deps.counter_key("register", client_bucket(request.ip)),
                    self.deps.policy.signup_max_per_network,
                    WINDOW_SECONDS,
                )
            ],
            user_id=None,
            request=request,
        )

    async def register(
        self,
        session: AsyncSession,
        *,
        username: str,
        email: str,
        password: str,
        request: RequestInfo,
    ) -> None:
        """Self-service sign-up as a TRADER; always answers the same for a taken email.

        A taken email must not be revealed to whoever is registering (enumeration), so the
        owner of that address gets an email instead (at most one a day) and the caller sees
        the usual answer. Usernames are public handles, so a taken username is reported.
        The quota is counted beforehand by `sign_up_refused`.

        Both answers cost the same: a taken address runs the very statements of a new
        account (user, audit event, verification ticket and email) under a stand-in address
        in a savepoint that is rolled back, so the response time does not tell them apart.
        """
        name = normalize_username(username)
        address = normalize_email(email)
        await self._check_password(password, user_inputs=(name, address))
        # The username first: answering "taken" only when the email is new would tell the
        # caller which emails have accounts.
        if await repository.username_taken(session, name):
            raise Conflict("that username is taken; choose another")
        existing = await repository.user_by_email(session, address)
        # A counter is written for every address (the notice's for a taken one), so both
        # paths run the same statement.
        notices = await self._count_address_use(
            session,
            "register-notice" if existing is not None else "register-new",
            address,
            window_seconds=DAY_SECONDS,
        )
        async with kept_if(session, existing is None):
            user = await self._add_user(
                session,
                username=name,
                # A stand-in that no account can have (the username is free: checked above).
                email=address if existing is None else f"{self.deps.ids.new_str()}.invalid",
                password=password,
                role=Role.TRADER,
                email_verified=False,
                actor=ANONYMOUS,
                event=IdentityEvent.USER_REGISTERED,
                request=request,
            )
            token = self._verification_ticket(session, user.id, address)
        # One email either way: the link for a new account, the notice for a taken address;
        # a notice over the daily cap is written and rolled back like the rest.
        async with kept_if(session, existing is None or notices <= REGISTER_NOTICES_PER_DAY):
            if existing is None:
                await self._verification_email(session, address, token)
            else:
                await self.deps.notifier.enqueue_email(
                    session,
                    to=address,
                    template="register_existing",
                    subject="Someone tried to register with your email address",
                    body=(
                        "Someone tried to open a tradeguard account with this address, which "
                        "already has one. If it was you, sign in or reset your password instead. "
                        "(We send this notice at most once a day.)"
                    ),
                )

    async def _count_address_use(
        self, session: AsyncSession, kind: str, address: str, *, window_seconds: int
    ) -> int:
        """Count one use of an action for an email address (keyed digest); the count so far."""
        uses, _ = await repository.count_use(
            session,
            self.deps.counter_key(kind, address),
            now_ns=self.deps.clock.now_ns(),
            window_ns=self.deps.policy.ns(window_seconds),
        )
        return uses

    async def _send_email_verification(
        self, session: AsyncSession, user_id: str | None, email: str
    ) -> None:
        token = self._verification_ticket(session, user_id, email)
        await self._verification_email(session, email, token)

    def _verification_ticket(self, session: AsyncSession, user_id: str | None, email: str) -> str:
        return self._issue_ticket(
            session,
            kind=EMAIL_VERIFY_TICKET,
            user_id=user_id,
            payload={"email": email},
            ttl_seconds=self.deps.policy.email_token_seconds,
        )

    async def _verification_email(self, session: AsyncSession, email: str, token: str) -> None:
        await self.deps.notifier.enqueue_email(
            session,
            to=email,
            template="verify_email",
            subject="Confirm your email address for tradeguard",
            body=(
                "Confirm your address by opening this link:\n"
                f"{self.deps.policy.origin}/verify-email?token={token}\n"
                "or by sending the token to POST /api/v1/auth/email/verify. It expires in 24 hours."
            ),
        )

    async def resend_verification(
        self, session: AsyncSession, *, email: str, request: RequestInfo
    ) -> int:
        """Send a new verification link if this address has an unverified account.

        The caller always gets the same answer. Links sent earlier keep working until they
        expire or one of them verifies the address (that spends them all). Returns seconds to
        wait when a quota refuses (0: done): per client network and per address, counted for
        every address, known or not.
        """
        try:
            address = normalize_email(email)
        except InvalidInput:
            address = None
        policy = self.deps.policy
        quotas = [
            (
                "verify_resend_per_network",
                self.deps.counter_key("verify-resend", client_bucket(request.ip)),
                policy.verify_resend_max_per_network,
                WINDOW_SECONDS,
            )
        ]
        if address is not None:
            quotas.append(
                (
                    "verify_resend_per_address",
                    self.deps.counter_key("verify-resend", address),
                    policy.verify_resend_max_per_address,
                    DAY_SECONDS,
                )
            )
        if self.auth is not None:
            wait = await self.auth.quota_refused(session, quotas, user_id=None, request=request)
            if wait:
                return wait
        if address is None:
            return 0
        user = await repository.user_by_email(session, address)
        eligible = user is not None and user.email_verified_ns is None
        # The same statements whether or not there is such an account (see `register`).
        await self.deps.warm_visitors_key(session)
        async with kept_if(session, eligible):
            await self._send_email_verification(
                session, user.id if user is not None and eligible else None, address
            )
            await self.deps.audit(
                session,
                IdentityEvent.EMAIL_VERIFICATION_RESENT,
                user_id=user.id if user is not None and eligible else None,
                request=request,
            )
        return 0

    async def verify_email(
        self, session: AsyncSession, *, token: str, request: RequestInfo
    ) -> bool:
        row = await self._live_ticket(session, token, EMAIL_VERIFY_TICKET)
        if row is None or row.user_id is None:
            return False
        user = await repository.user_by_id(session, row.user_id)
        if user is None or json.loads(row.payload).get("email") != user.email:
            return False
        if not await repository.spend_ticket(session, row.id, self.deps.clock.now_ns()):
            return False
        user.email_verified_ns = self.deps.clock.now_ns()
        # Other links sent for this address (resends) have done their job.
        await repository.spend_open_tickets(
            session, user.id, EMAIL_VERIFY_TICKET, self.deps.clock.now_ns()
        )
        await self.deps.audit(
            session, IdentityEvent.EMAIL_VERIFIED, user_id=user.id, request=request
        )
        return True

    def _issue_ticket(
        self,
        session: AsyncSession,
        *,
        kind: str,
        user_id: str | None,
        ttl_seconds: int,
        payload: dict[str, str] | None = None,
    ) -> str:
        """A single-use emailed secret: returns the token; only its hash is stored."""
        now = self.deps.clock.now_ns()
        token, token_hash = new_secret_token()
        session.add(
            AuthTicket(
                id=self.deps.ids.new_str(),
                token_hash=token_hash,
                kind=kind,
                user_id=user_id,
                payload=json.dumps(payload or {}),
                attempts=0,
                created_ns=now,
                expires_ns=now + self.deps.policy.ns(ttl_seconds),
            )
        )
        return token

    async def _live_ticket(self, session: AsyncSession, token: str, kind: str) -> AuthTicket | None:
        """The unspent, unexpired ticket of this emailed token; raises CodeExpired for one
        that was valid but ran out (nothing is written before this: raising rolls back
        nothing)."""
        if not token or len(token) > 128:
            return None
        row = await repository.ticket_by_hash(session, hash_secret_token(token), kind)
        if row is None or row.used_ns is not None:
            return None
        if row.expires_ns <= self.deps.clock.now_ns():
            raise CodeExpired(_EXPIRED_LINK.get(kind, "this link has expired"))
        return row

    async def request_password_reset(
        self, session: AsyncSession, *, email: str, request: RequestInfo
    ) -> None:
        """Email a single-use reset link if the account exists; the caller always sees 202.

        Known and unknown addresses run the same statements (the unknown one in a savepoint
        that is rolled back), so the response time does not reveal which it was. A malformed
        address is a 422 like anywhere else: syntax says nothing about whether an account has
        the address (every well-formed one gets the same 202).
        """
        address = normalize_email(email)
        if self.auth is not None and (
            wait_ns := await self.auth.over_limit(
                session,
                self.deps.counter_key("reset", client_bucket(request.ip)),
                limit=RESETS_PER_WINDOW,
            )
        ):
            raise TooManyRequests(
                "too many reset requests from this network; try again later",
                retry_after_seconds=wait_ns / NS_PER_SECOND,
            )
        # Per address, known or not, silently: the caller sees 202 either way, and the
        # mailbox is not flooded.
        if (
            await self._count_address_use(
                session, "reset-mail", address, window_seconds=WINDOW_SECONDS
            )
            > RESET_MAILS_PER_WINDOW
        ):
            return
        user = await repository.user_by_email(session, address)
        deps, now = self.deps, self.deps.clock.now_ns()
        await deps.warm_visitors_key(session)
        async with kept_if(session, user is not None):
            user_id = user.id if user is not None else None
            await repository.spend_open_tickets(session, user_id or "-", RESET_TICKET, now)
            token = self._issue_ticket(
                session,
                kind=RESET_TICKET,
                user_id=user_id,
                ttl_seconds=deps.policy.reset_token_seconds,
            )
            await deps.audit(
                session, IdentityEvent.PASSWORD_RESET_REQUESTED, user_id=user_id, request=request
            )
            await deps.notifier.enqueue_email(
                session,
                to=address,
                template="password_reset",
                subject="Reset your tradeguard password",
                body=(
                    "Use this single-use token within 30 minutes to choose a new password:\n"
                    f"{deps.policy.origin}/reset-password?token={token}\n"
                    "If you did not ask for this, ignore this email; your password is unchanged."
                ),
            )

    async def send_recovery_reset(
        self, session: AsyncSession, *, user_id: str, actor: Party, request: RequestInfo
    ) -> bool:
        """Email the owner a single-use password reset link through the reset flow's own
        ticket (account recovery, ATO-3: staff ended the old password). Any reset link sent
        before is spent first, so only this one works. False when the user is unknown."""
        user = await repository.user_by_id(session, user_id)
        if user is None:
            return False
        deps, now = self.deps, self.deps.clock.now_ns()
        await repository.spend_open_tickets(session, user.id, RESET_TICKET, now)
        token = self._issue_ticket(
            session,
            kind=RESET_TICKET,
            user_id=user.id,
            ttl_seconds=deps.policy.reset_token_seconds,
        )
        await deps.audit(
            session,
            IdentityEvent.PASSWORD_RESET_REQUESTED,
            user_id=user.id,
            actor=actor,
            request=request,
            data={"via": "account_recovery"},
        )
        await deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="password_reset",
            subject="Choose a new tradeguard password",
            body=(
                "Our security team secured your account after activity that was not yours. "
                "Your old password no longer works. Use this single-use token within 30 "
                "minutes to choose a new one:\n"
                f"{deps.policy.origin}/reset-password?token={token}\n"
                "Then sign in and enrol a new second factor."
            ),
        )
        return True

    async def reset_password(
        self,
        session: AsyncSession,
        *,
        token: str,
        new_password: str,
        method: str | None,
        code: str | None,
        request: RequestInfo,
    ) -> list[str] | None:
        """Set a new password with a reset token AND, when the account has MFA, a factor.

        A reset never bypasses MFA: email access alone does not take over the account
        (a backup code or another enrolled factor is needed, or manual identity review).
        Every session is revoked afterwards; returns their ids (None: the reset was refused),
        so that the caller can drop them from its session cache at once.
        """
        deps = self.deps
        row = await self._live_ticket(session, token, RESET_TICKET)
        if row is None or row.user_id is None or self.auth is None:
            return None
        user = await repository.user_by_id(session, row.user_id)
        if user is None:
            return None
        await self._check_password(new_password, user_inputs=(user.username, user.email))
        methods = await self.auth.available_methods(session, user.id)
        if methods:
            # Email codes would let the mailbox alone reset the account; WebAuthn and SMS have
            # no reset ceremony yet. A backup code (the recovery factor) or TOTP is needed.
            if method is None or method not in methods or method in {"email", "webauthn", "sms"}:
                usable = [m for m in methods if m not in {"email", "webauthn", "sms"}]
                raise MfaRequiredForReset(
                    "confirm with a backup code or your authenticator app"
                    if usable
                    else "this account needs a manual identity review to reset; contact support",
                    methods=usable,
                )
            refused = await self.auth.second_factor_refusal(session, user)
            if refused is not None:
                # The holder of the reset link may learn the account is locked, and until when.
                raise refusal_error(refused)
            # One guess per reservation, taken atomically; a token has only a few.
            if (
                await repository.reserve_ticket_attempt(
                    session, row.id, deps.policy.max_ticket_attempts
                )
                is None
            ):
                return None
            ok = await self.auth.check_factor(
                session, user_id=user.id, method=Method(method), code=code or "", payload={}
            )
            if not ok:
                await self.auth.record_mfa_failure(session, user, request, method=f"reset:{method}")
                return None
            await self.auth.clear_mfa_failures(session, user.id)
        if not await repository.spend_ticket(session, row.id, deps.clock.now_ns()):
            return None
        user.password_hash = await self.hasher.hash_async(new_password)
        user.password_changed_ns = deps.clock.now_ns()
        user.failed_logins = 0
        user.locked_until_ns = None
        await repository.clear_throttle(session, f"acct:{user.id}")
        revoked = await self.auth.revoke(
            session, user_id=user.id, request=request, reason="password_reset"
        )
        await deps.audit(
            session,
            IdentityEvent.PASSWORD_CHANGED,
            user_id=user.id,
            request=request,
            data={"via": "reset"},
        )
        await deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="password_changed",
            subject="Your tradeguard password was changed",
            body=(
                "Your password was reset and every session signed out. "
                "If this was not you, contact support now."
            ),
        )
        return revoked

    # Changes from inside a session (the route has already required a fresh second factor) --

    async def change_password(
        self,
        session: AsyncSession,
        *,
        user: User,
        current_session_id: str,
        current_password: str,
        new_password: str,
        request: RequestInfo,
    ) -> list[str] | None:
        """Change the password; None if the current one is wrong. Other sessions end."""
        deps = self.deps
        if user.password_hash is None or not await self.hasher.verify_async(
            user.password_hash, current_password
        ):
            await deps.audit(
                session,
                IdentityEvent.LOGIN_FAILED,
                user_id=user.id,
                request=request,
                data={"via": "password_change"},
            )
            return None
        await self._check_password(new_password, user_inputs=(user.username, user.email))
        user.password_hash = await self.hasher.hash_async(new_password)
        user.password_changed_ns = deps.clock.now_ns()
        revoked: list[str] = []
        if self.auth is not None:
            for other in await repository.sessions_of(session, user.id, deps.clock.now_ns()):
                if other.id != current_session_id:
                    revoked += await self.auth.revoke(
                        session,
                        user_id=user.id,
                        session_id=other.id,
                        request=request,
                        reason="password_changed",
                    )
        await deps.audit(
            session,
            IdentityEvent.PASSWORD_CHANGED,
            user_id=user.id,
            request=request,
            data={"via": "change", "sessions_revoked": len(revoked)},
        )
        await deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="password_changed",
            subject="Your tradeguard password was changed",
            body=(
                "Your password was changed and your other sessions were signed out. "
                "If this was not you, reset your password and contact support now."
            ),
        )
        return revoked

    async def request_email_change(
        self, session: AsyncSession, *, user: User, new_email: str, request: RequestInfo
    ) -> None:
        """Send a confirmation link to the new address; the old address is told at once.

        A taken address gets the same answer (no enumeration) and simply never confirms.
        """
        deps, now = self.deps, self.deps.clock.now_ns()
        address = normalize_email(new_email)
        if address == user.email:
            raise InvalidInput("that is already your email address")
        await repository.spend_open_tickets(session, user.id, EMAIL_CHANGE_TICKET, now)
        await deps.audit(
            session, IdentityEvent.EMAIL_CHANGE_REQUESTED, user_id=user.id, request=request
        )
        await deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="email_change_requested",
            subject="A change of your tradeguard email address was requested",
            body=(
                "Someone signed in to your account asked to move it to a new email address. "
                "If this was not you, change your password and contact support now."
            ),
        )
        if await repository.email_taken(session, address):
            return
        token = self._issue_ticket(
            session,
            kind=EMAIL_CHANGE_TICKET,
            user_id=user.id,
            payload={"email": address, "old": user.email},
            ttl_seconds=deps.policy.reset_token_seconds,
        )
        await deps.notifier.enqueue_email(
            session,
            to=address,
            template="confirm_email_change",
            subject="Confirm your new email address for tradeguard",
            body=(
                "Confirm this address for your tradeguard account with this single-use token "
                f"within 30 minutes:\n{deps.policy.origin}/confirm-email?token={token}\n"
                "or send it to POST /api/v1/auth/email/change/confirm."
            ),
        )

    async def confirm_email_change(
        self, session: AsyncSession, *, token: str, request: RequestInfo
    ) -> bool:
        deps = self.deps
        row = await self._live_ticket(session, token, EMAIL_CHANGE_TICKET)
        if row is None or row.user_id is None:
            return False
        user = await repository.user_by_id(session, row.user_id)
        payload = json.loads(row.payload)
        if user is None or payload.get("old") != user.email:
            return False
        address = str(payload["email"])
        if await repository.email_taken(session, address):
            return False
        if not await repository.spend_ticket(session, row.id, deps.clock.now_ns()):
            return False
        old = user.email
        user.email = address
        user.email_verified_ns = deps.clock.now_ns()
        # Codes and links must follow the address: the old mailbox may be the reason for the
        # change, and must not keep signing in or resetting the account.
        for factor in await repository.factors_of(session, user.id, status=None):
            if factor.kind == "email":
                factor.destination_enc = deps.keyring.encrypt(
                    address.encode(), purpose=DESTINATION_PURPOSE, context=factor.id.encode()
                )
        await repository.spend_open_tickets(session, user.id, RESET_TICKET, deps.clock.now_ns())
        await deps.audit(session, IdentityEvent.EMAIL_CHANGED, user_id=user.id, request=request)
        await deps.notifier.enqueue_email(
            session,
            to=old,
            template="email_changed",
            subject="Your tradeguard email address was changed",
            body=(
                "Your account now uses a different email address. If this was not you, "
                "contact support now: this address can still be used to prove ownership."
            ),
        )
        return True

    async def find_user(self, session: AsyncSession, login: str) -> tuple[str, Role] | None:
        """A user's id and role by username or email (for operator tools)."""
        user = await repository.user_by_login(session, login)
        return (user.id, Role(user.role)) if user is not None else None

    async def user(self, session: AsyncSession, user_id: str) -> User | None:
        """An existing user's row (other domains' use cases: funds, takeover defence)."""
        return await repository.user_by_id(session, user_id)

    async def role_of(self, session: AsyncSession, user_id: str) -> Role | None:
        """The role of an existing user (None: no such user)."""
        user = await repository.user_by_id(session, user_id)
        return Role(user.role) if user is not None else None

    async def roles_of(self, session: AsyncSession, user_ids: list[str]) -> dict[str, Role]:
        """The role of each existing user among `user_ids` (unknown ids are left out)."""
        found = await repository.roles_by_id(session, user_ids)
        return {user_id: Role(role) for user_id, role in found.items()}

    async def contact_of(self, session: AsyncSession, user_id: str) -> str | None:
        """The email address of an active user (None: no such user, or not active)."""
        user = await repository.user_by_id(session, user_id)
        return user.email if user is not None and user.status == "active" else None

    async def text_number_of(self, session: AsyncSession, user_id: str) -> str | None:
        """The number of the user's active text-message factor (decrypted), or None."""
        for factor in await repository.factors_of(session, user_id):
            if factor.kind == "sms" and factor.destination_enc is not None:
                return self.deps.keyring.decrypt(
                    factor.destination_enc, purpose=DESTINATION_PURPOSE, context=factor.id.encode()
                ).decode()
        return None

    async def contacts_with_roles(
        self, session: AsyncSession, roles: frozenset[Role]
    ) -> list[tuple[str, str]]:
        """(user id, email) of every active user holding one of `roles`: whom to notify."""
        return list(await repository.active_users_with_roles(session, sorted(roles)))


class MfaRequiredForReset(TradeguardError):
    status = 403
    slug = "mfa-required"
    title = "A second factor is required"


@dataclass(frozen=True, slots=True)
class NetworkSignIn:
    """One sign-in as the network it came from: never the address itself."""

    user_id: str
    # A keyed hash (HMAC) of the network prefix: equal for equal networks, not reversible by
    # hashing the address space without the identity pepper.
    network_key: str
    # The project's masking of the network (core/masking.py: an IPv4 /16, an IPv6 /32), for
    # a reviewer who needs the provider or region, never the connection.
    network_masked: str
    at_ns: int


@dataclass(frozen=True, slots=True)
class DeviceUse:
    """One user's device whose fingerprint other users' devices share."""

    user_id: str
    device_id: str
    # A keyed hash of the fingerprint (the raw fingerprint is an unkeyed SHA-256 of a few
    # browser attributes: a dictionary of common configurations would reverse it).
    device_key: str
    first_seen_ns: int
    last_seen_ns: int
    sign_ins: int


SIGN_IN_PAGE = 5000


class SignInSignals:
    """Who signed in from which network and device, pseudonymised, for beneficial-owner
    linking (surveillance reads identity through this, never its tables)."""

    def __init__(self, deps: IdentityDeps) -> None:
        self.deps = deps

    def _keyed(self, label: str, value: bytes) -> str:
        # The identity pepper that already keys the throttle's address counters, under a
        # label of its own, so these keys never equal a throttle key of the same value.
        digest = hmac.new(
            self.deps.pepper(COUNTER_KEY_PEPPER), label.encode() + b"\x00" + value, hashlib.sha256
        )
        return digest.hexdigest()[:32]

    async def network_sign_ins(
        self,
        session: AsyncSession,
        *,
        since_ns: int,
        until_ns: int,
        ipv4_prefix: int,
        ipv6_prefix: int,
    ) -> list[NetworkSignIn]:
        """Every sign-in in [since, until) with a known address, oldest first."""
        found: list[NetworkSignIn] = []
        # One key, masked form and user id string per network and user, shared by all their
        # sign-ins: a month of sign-ins is held in memory at once.
        networks: dict[str, tuple[str, str]] = {}
        users: dict[str, str] = {}
        after: tuple[int, str] | None = None
        while True:
            page = await repository.sign_ins_between(
                session, since_ns=since_ns, until_ns=until_ns, after=after, limit=SIGN_IN_PAGE
            )
            for _, user_id, ip, at_ns in page:
                network = network_prefix(ip, ipv4_prefix=ipv4_prefix, ipv6_prefix=ipv6_prefix)
                if network is None:
                    continue
                known = networks.get(network)
                if known is None:
                    key = self._keyed("owner-link:network", network.encode())
                    known = networks[network] = (key, masked_network(network))
                user = users.setdefault(user_id, user_id)
                found.append(NetworkSignIn(user, known[0], known[1], at_ns))
            if len(page) < SIGN_IN_PAGE:
                return found
            after = (page[-1][3], page[-1][0])

    async def shared_devices(self, session: AsyncSession, *, max_users: int) -> list[DeviceUse]:
        """The devices whose fingerprint 2..`max_users` users share (more: a common
        configuration, not one device), with each device's count of sign-ins."""
        devices = await repository.shared_fingerprint_devices(session, max_users=max_users)
        counts = await repository.sign_in_counts(session, [d.id for d in devices])
        return [
            DeviceUse(
                user_id=d.user_id,
                device_id=d.id,
                device_key=self._keyed("owner-link:device", d.fingerprint),
                first_seen_ns=d.created_ns,
                last_seen_ns=d.last_seen_ns,
                sign_ins=counts.get(d.id, 0),
            )
            for d in devices
        ]
