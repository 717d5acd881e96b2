"""Second-factor management: TOTP, backup codes, email and SMS codes (AUTH-4..7, ACCT-1).

Adding or removing a factor needs a fresh second factor (step-up) so that an attacker who
knows only the password cannot enrol their own. The very first factor instead needs a
verified email and a recent login. Every change is audited and emailed to the user.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import STAFF_ROLES, Role
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import (
    CodeExpired,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    TradeguardError,
)
from tradeguard.identity import repository
from tradeguard.identity.common import IdentityDeps, RequestInfo, new_secret_token
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.mfa import otp as otp_codes
from tradeguard.identity.mfa import totp
from tradeguard.identity.models import AuthTicket, BackupCode, MfaFactor, User
from tradeguard.identity.sessions import (
    DESTINATION_PURPOSE,
    OTP_PEPPER,
    TOTP_SECRET_PURPOSE,
    AuthService,
    Denied,
    Failure,
    Method,
    SessionState,
    refusal_error,
)

ENROL_TICKET = "factor_enrol"
EMAIL_PROOF_TICKET = "email_proof"
MAX_EMAIL_PROOFS = 3
PHONE_PATTERN = re.compile(r"^\+[1-9]\d{6,14}$")


class StepUpRequired(TradeguardError):
    status = 403
    slug = "step-up-required"
    title = "Confirm with your second factor first"


class FactorConflict(TradeguardError):
    status = 409
    slug = "factor-conflict"
    title = "That factor change is not allowed"


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    factor_id: str
    secret: str = field(repr=False)
    otpauth_uri: str = field(repr=False)
    qr_png_base64: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class FactorView:
    id: str
    kind: str
    label: str
    status: str
    created_ns: int
    last_used_ns: int | None
    restricted: bool


class FactorService:
    def __init__(self, deps: IdentityDeps, *, auth: AuthService) -> None:
        self.deps = deps
        self.auth = auth

    async def list_factors(self, session: AsyncSession, *, user_id: str) -> list[FactorView]:
        """Active factors, and enrolments still in progress (expired ones are left out)."""
        return [
            FactorView(
                f.id, f.kind, f.label, f.status, f.created_ns, f.last_used_ns, f.kind == "sms"
            )
            for f in await repository.factors_of(session, user_id, status=None)
            if not self._pending_expired(f)
        ]

    def _pending_expired(self, factor: MfaFactor) -> bool:
        policy = self.deps.policy
        return factor.status == "pending" and (
            self.deps.clock.now_ns() - factor.created_ns >= policy.ns(policy.pending_factor_seconds)
        )

    async def _too_many_pending(
        self, session: AsyncSession, user: User, request: RequestInfo
    ) -> Denied | None:
        """At most a few enrolments in progress per user: each one may have sent a message."""
        deps, policy, now = self.deps, self.deps.policy, self.deps.clock.now_ns()
        window = policy.ns(policy.pending_factor_seconds)
        pending = await repository.pending_factors(session, user.id, since_ns=now - window)
        if len(pending) < policy.max_pending_factors:
            return None
        retry = max(1, -(-(pending[0].created_ns + window - now) // NS_PER_SECOND))
        await deps.audit(
            session,
            IdentityEvent.QUOTA_EXCEEDED,
            user_id=user.id,
            request=request,
            data={"quotas": ["pending_factors"], "retry_after_seconds": retry},
        )
        return Denied(
            Failure.THROTTLED,
            retry_after_seconds=retry,
            detail=(
                f"{len(pending)} sign-in methods are waiting for confirmation; confirm one "
                "or wait until they expire"
            ),
        )

    async def require_fresh_factor(
        self, session: AsyncSession, *, user: User, state: SessionState
    ) -> None:
        """Step-up rule for factor changes (and other sensitive actions)."""
        policy, now = self.deps.policy, self.deps.clock.now_ns()
        active = await repository.factors_of(session, user.id)
        if active:
            fresh = state.mfa_verified_ns is not None and (
                now - state.mfa_verified_ns <= policy.ns(policy.step_up_seconds)
            )
            if not fresh:
                raise StepUpRequired(
                    "confirm with an enrolled factor at POST /api/v1/auth/mfa/step-up, then retry"
                )
            return
        # First factor: a password is not enough (it may be the attacker's only asset), so
        # this session must also have proven control of the verified mailbox just now.
        if user.email_verified_ns is None:
            raise Forbidden("verify your email address before adding a second factor")
        if not await self._email_proven(session, user.id, state.session_id, now):
            raise StepUpRequired(
                "confirm your email first: POST /api/v1/auth/email/proof sends a code, "
                "POST /api/v1/auth/email/proof/verify checks it"
            )

    async def _email_proven(
        self, session: AsyncSession, user_id: str, session_id: str, now: int
    ) -> bool:
        window = self.deps.policy.ns(self.deps.policy.recent_login_seconds)
        for ticket in await repository.recent_tickets(
            session, user_id, EMAIL_PROOF_TICKET, since_ns=now - window
        ):
            payload = json.loads(ticket.payload)
            if (
                payload.get("session_id") == session_id
                and ticket.used_ns is not None
                and now - ticket.used_ns <= window
            ):
                return True
        return False

    async def send_email_proof(
        self, session: AsyncSession, *, user: User, state: SessionState, request: RequestInfo
    ) -> None:
        """Email a one-time code proving this session controls the account's mailbox."""
        deps, now = self.deps, self.deps.clock.now_ns()
        if user.email_verified_ns is None:
            raise Forbidden("verify your email address first")
        window = deps.policy.ns(deps.policy.recent_login_seconds)
        recent = await repository.recent_tickets(
            session, user.id, EMAIL_PROOF_TICKET, since_ns=now - window
        )
        if len(recent) >= MAX_EMAIL_PROOFS:
            # The oldest of them leaves the window first.
            wait_ns = recent[0].created_ns + window - now
            raise TooManyRequests(
                f"{MAX_EMAIL_PROOFS} codes were sent in the last "
                f"{deps.policy.recent_login_seconds // 60} minutes; wait before asking again",
                retry_after_seconds=wait_ns / NS_PER_SECOND,
            )
        code, challenge = otp_codes.issue(
            channel=otp_codes.OtpChannel.EMAIL, now_ns=now, pepper=deps.pepper(OTP_PEPPER)
        )
        _, token_hash = new_secret_token()
        session.add(
            AuthTicket(
                id=deps.ids.new_str(),
                token_hash=token_hash,
                kind=EMAIL_PROOF_TICKET,
                user_id=user.id,
                attempts=0,
                created_ns=now,
                expires_ns=challenge.expires_at_ns,
                payload=json.dumps(
                    {
                        "session_id": state.session_id,
                        "otp": {
                            "challenge_id": challenge.challenge_id,
                            "channel": challenge.channel.value,
                            "code_hash": challenge.code_hash.hex(),
                            "digits": challenge.digits,
                            "expires_at_ns": challenge.expires_at_ns,
                            "attempts_left": challenge.attempts_left,
                            "used": False,
                        },
                    }
                ),
            )
        )
        await deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="email_proof",
            subject="Your tradeguard confirmation code",
            body=(
                f"Your code is {code}. It expires in 5 minutes. Someone signed in to your account "
                "is adding a sign-in method; if this was not you, change your password now."
            ),
        )

    async def verify_email_proof(
        self,
        session: AsyncSession,
        *,
        user: User,
        state: SessionState,
        code: str,
        request: RequestInfo,
    ) -> bool:
        deps, now = self.deps, self.deps.clock.now_ns()
        refused = await self.auth.second_factor_refusal(session, user)
        if refused is not None:
            raise refusal_error(refused)
        unused = [
            t
            for t in await repository.recent_tickets(
                session,
                user.id,
                EMAIL_PROOF_TICKET,
                since_ns=now - deps.policy.ns(deps.policy.recent_login_seconds),
            )
            if t.used_ns is None and json.loads(t.payload).get("session_id") == state.session_id
        ]
        candidates = [t for t in unused if t.expires_ns > now]
        if not candidates and unused:
            raise CodeExpired(
                "that code has expired; request a new one at POST /api/v1/auth/email/proof"
            )
        if not candidates:
            raise NotFound("no code is pending for this session; request one first")
        ticket = candidates[-1]
        if (
            await repository.reserve_ticket_attempt(
                session, ticket.id, deps.policy.max_ticket_attempts
            )
            is None
        ):
            return False
        payload = json.loads(ticket.payload)
        ok = self.auth._check_otp(payload, code, now)
        ticket.payload = json.dumps(payload)
        if not ok:
            await self.auth.record_mfa_failure(session, user, request, method="email_proof")
            return False
        await repository.spend_ticket(session, ticket.id, now)
        await self.auth.clear_mfa_failures(session, user.id)
        await deps.audit(
            session,
            IdentityEvent.EMAIL_PROVED,
            user_id=user.id,
            request=request,
            data={"session_id": state.session_id},
        )
        return True

    async def after_first_factor(
        self, session: AsyncSession, *, user: User, current_session_id: str, request: RequestInfo
    ) -> list[str]:
        """Once a first factor exists, end every other password-only session of the user."""
        others = [
            s
            for s in await repository.sessions_of(session, user.id, self.deps.clock.now_ns())
            if s.id != current_session_id and s.mfa_verified_ns is None
        ]
        revoked: list[str] = []
        for other in others:
            revoked += await self.auth.revoke(
                session,
                user_id=user.id,
                session_id=other.id,
                request=request,
                reason="first_factor_enrolled",
            )
        return revoked

    # TOTP -----------------------------------------------------------------------------

    async def enrol_totp(
        self, session: AsyncSession, *, user: User, state: SessionState, request: RequestInfo
    ) -> TotpEnrolment | Denied:
        await self.require_fresh_factor(session, user=user, state=state)
        refused = await self._too_many_pending(session, user, request)
        if refused is not None:
            return refused
        deps, now = self.deps, self.deps.clock.now_ns()
        secret = totp.new_secret()
        factor = MfaFactor(
            id=deps.ids.new_str(),
            user_id=user.id,
            kind="totp",
            label="Authenticator app",
            status="pending",
            is_passkey=False,
            created_ns=now,
        )
        factor.secret_enc = deps.keyring.encrypt(
            secret.encode(), purpose=TOTP_SECRET_PURPOSE, context=factor.id.encode()
        )
        session.add(factor)
        await deps.audit(
            session,
            IdentityEvent.FACTOR_ENROLLED,
            user_id=user.id,
            request=request,
            data={"factor_id": factor.id, "kind": "totp"},
        )
        uri = totp.provisioning_uri(secret, account=user.username, issuer=deps.policy.rp_name)
        png = base64.b64encode(totp.qr_png(uri)).decode()
        return TotpEnrolment(factor.id, secret, uri, png)

    async def confirm_totp(
        self,
        session: AsyncSession,
        *,
        user: User,
        state: SessionState,
        factor_id: str,
        code: str,
        request: RequestInfo,
    ) -> bool:
        """Activate a pending TOTP factor; the enrolment code's step is burned (no replay)."""
        # The enrolment rule is checked again here, not only when the factor was started: a
        # factor started while the account had none must not be activated after the owner
        # enrolled one, by a password-only session that cannot step up (ACCT-1, ATO-2).
        await self.require_fresh_factor(session, user=user, state=state)
        factor = await repository.factor_of(session, user.id, factor_id)
        if (
            factor is None
            or factor.kind != "totp"
            or factor.status != "pending"
            or self._pending_expired(factor)
        ):
            raise NotFound("no pending authenticator-app factor with that id; start again")
        secret = self.deps.keyring.decrypt(
            factor.secret_enc or b"", purpose=TOTP_SECRET_PURPOSE, context=factor.id.encode()
        ).decode()
        now = self.deps.clock.now_ns()
        step = totp.verify(secret, code, now_ns=now, last_used_step=factor.last_used_step)
        if step is None or not await repository.advance_totp_step(session, factor.id, step, now):
            await self.deps.audit(
                session,
                IdentityEvent.MFA_FAILED,
                user_id=user.id,
                request=request,
                data={"method": "totp", "enrolment": True},
            )
            return False
        await self._activate(session, user, factor, request, state=state)
        return True

    async def _activate(
        self,
        session: AsyncSession,
        user: User,
        factor: MfaFactor,
        request: RequestInfo,
        *,
        state: SessionState,
    ) -> None:
        first = not await repository.factors_of(session, user.id)
        factor.status = "active"
        factor.confirmed_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            IdentityEvent.FACTOR_CONFIRMED,
            user_id=user.id,
            request=request,
            data={"factor_id": factor.id, "kind": factor.kind},
        )
        await self._notify(session, user, f"A new sign-in factor was added: {factor.label}.")
        if first:
            await self.after_first_factor(
                session, user=user, current_session_id=state.session_id, request=request
            )

    async def _notify(self, session: AsyncSession, user: User, what: str) -> None:
        await self.deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="factor_changed",
            subject="Your tradeguard sign-in methods changed",
            body=f"{what} If this was not you, contact support and change your password now.",
        )

    # Backup codes -----------------------------------------------------------------------

    async def regenerate_backup_codes(
        self, session: AsyncSession, *, user: User, state: SessionState, request: RequestInfo
    ) -> list[str]:
        """A new set of codes, shown once; the previous set stops working at once.

        Backup codes are for recovery, never the only factor: a user needs an authenticator
        app, a security key or a phone first.
        """
        await self.require_fresh_factor(session, user=user, state=state)
        deps, now = self.deps, self.deps.clock.now_ns()
        if not [
            f for f in await repository.factors_of(session, user.id) if f.kind != "backup_codes"
        ]:
            raise FactorConflict(
                "enrol an authenticator app, security key or phone first; "
                "backup codes are for recovery"
            )
        for existing in await repository.factors_of(session, user.id):
            if existing.kind == "backup_codes":
                existing.revoked_ns = now
                existing.status = "revoked"
        codes, hashes = self.auth.backup_book.generate()
        factor = MfaFactor(
            id=deps.ids.new_str(),
            user_id=user.id,
            kind="backup_codes",
            label="Backup codes",
            status="active",
            is_passkey=False,
            created_ns=now,
            confirmed_ns=now,
        )
        session.add(factor)
        await session.flush()
        for idx, digest in enumerate(hashes):
            session.add(BackupCode(factor_id=factor.id, idx=idx, code_hash=digest))
        await deps.audit(
            session,
            IdentityEvent.BACKUP_CODES_GENERATED,
            user_id=user.id,
            request=request,
            data={"factor_id": factor.id, "count": len(codes)},
        )
        await self._notify(
            session, user, "New backup codes were generated; old ones no longer work."
        )
        return codes

    # Email and SMS codes ------------------------------------------------------------------

    async def enrol_otp(
        self,
        session: AsyncSession,
        *,
        user: User,
        state: SessionState,
        method: Method,
        phone: str | None,
        request: RequestInfo,
    ) -> str | Denied:
        """Start an email or SMS factor: send a code; returns the pending factor id.

        Refused (429) when the user has too many enrolments in progress, and for SMS when the
        user, the number or the client network has had its quota of texts (toll fraud, SMS
        bombing). A refusal is audited and commits.
        """
        await self.require_fresh_factor(session, user=user, state=state)
        deps, now = self.deps, self.deps.clock.now_ns()
        if method is Method.SMS:
            if not deps.policy.sms_enabled:
                raise FactorConflict("this platform does not offer SMS codes; use another factor")
            if phone is None or not PHONE_PATTERN.fullmatch(phone):
                raise InvalidInput("phone must be in E.164 form, e.g. +14155550123")
            destination, label = phone, f"SMS to …{phone[-2:]}"
        else:
            if user.email_verified_ns is None:
                raise Forbidden("verify your email address first")
            destination, label = user.email, "Email codes"
        refused = await self._too_many_pending(session, user, request)
        if refused is not None:
            return refused
        if method is Method.SMS:
            wait = await self.auth.sms_refused(
                session, user_id=user.id, number=destination, purpose="enrol", request=request
            )
            if wait:
                return Denied(
                    Failure.THROTTLED,
                    retry_after_seconds=wait,
                    detail="too many text messages were requested; try again later",
                )
        factor = MfaFactor(
            id=deps.ids.new_str(),
            user_id=user.id,
            kind=method.value,
            label=label,
            status="pending",
            is_passkey=False,
            created_ns=now,
        )
        factor.destination_enc = deps.keyring.encrypt(
            destination.encode(), purpose=DESTINATION_PURPOSE, context=factor.id.encode()
        )
        session.add(factor)
        _, token_hash = new_secret_token()
        ticket = AuthTicket(
            id=factor.id,
            token_hash=token_hash,
            kind=ENROL_TICKET,
            user_id=user.id,
            payload="{}",
            attempts=0,
            created_ns=now,
            expires_ns=now + deps.policy.ns(deps.policy.mfa_ticket_seconds),
        )
        session.add(ticket)
        await session.flush()
        payload: dict[str, object] = {}
        await self.auth.issue_code(
            session, user_id=user.id, factor=factor, ticket_row=ticket, payload=payload
        )
        ticket.payload = json.dumps(payload)
        await deps.audit(
            session,
            IdentityEvent.FACTOR_ENROLLED,
            user_id=user.id,
            request=request,
            data={"factor_id": factor.id, "kind": method.value},
        )
        return factor.id

    async def confirm_otp(
        self,
        session: AsyncSession,
        *,
        user: User,
        state: SessionState,
        factor_id: str,
        code: str,
        request: RequestInfo,
    ) -> bool:
        await self.require_fresh_factor(session, user=user, state=state)  # as in confirm_totp
        factor = await repository.factor_of(session, user.id, factor_id)
        ticket = await repository.ticket_by_id(session, factor_id, ENROL_TICKET)
        now = self.deps.clock.now_ns()
        if (
            factor is None
            or factor.status != "pending"
            or self._pending_expired(factor)
            or ticket is None
            or ticket.used_ns is not None
        ):
            raise NotFound("no pending code factor with that id; start again")
        if ticket.expires_ns <= now:
            raise CodeExpired("that code has expired; start the enrolment again")
        payload = json.loads(ticket.payload)
        ok = self.auth._check_otp(payload, code, now)
        ticket.payload = json.dumps(payload)
        if not ok:
            return False
        ticket.used_ns = now
        await self._activate(session, user, factor, request, state=state)
        return True

    # Removal ----------------------------------------------------------------------------

    async def remove(
        self,
        session: AsyncSession,
        *,
        user: User,
        state: SessionState,
        factor_id: str,
        request: RequestInfo,
    ) -> None:
        factor = await repository.factor_of(session, user.id, factor_id)
        if factor is None:
            raise NotFound("no factor with that id")
        await self.require_fresh_factor(session, user=user, state=state)
        remaining = [f for f in await repository.factors_of(session, user.id) if f.id != factor.id]
        role = Role(user.role)
        if (
            role in STAFF_ROLES
            and factor.kind == "webauthn"
            and not any(f.kind == "webauthn" for f in remaining)
        ):
            raise FactorConflict("staff accounts must keep at least one security key or passkey")
        if factor.status == "active" and not [f for f in remaining if f.kind != "backup_codes"]:
            raise FactorConflict("add another factor before removing your last one")
        factor.revoked_ns = self.deps.clock.now_ns()
        factor.status = "revoked"
        await self.deps.audit(
            session,
            IdentityEvent.FACTOR_REMOVED,
            user_id=user.id,
            request=request,
            data={"factor_id": factor.id, "kind": factor.kind},
        )
        await self._notify(session, user, f"A sign-in factor was removed: {factor.label}.")
