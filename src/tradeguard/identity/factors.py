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
from tradeguard.core.errors import Forbidden, InvalidInput, NotFound, TradeguardError
from tradeguard.identity import repository
from tradeguard.identity.common import IdentityDeps, RequestInfo, new_secret_token
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.mfa import totp
from tradeguard.identity.models import AuthTicket, BackupCode, MfaFactor, User
from tradeguard.identity.sessions import (
    DESTINATION_PURPOSE,
    TOTP_SECRET_PURPOSE,
    AuthService,
    Method,
    SessionState,
)

ENROL_TICKET = "factor_enrol"
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
        return [
            FactorView(
                f.id, f.kind, f.label, f.status, f.created_ns, f.last_used_ns, f.kind == "sms"
            )
            for f in await repository.factors_of(session, user_id, status=None)
        ]

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
        # First factor: the password alone must be recent and the email proven.
        if user.email_verified_ns is None:
            raise Forbidden("verify your email address before adding a second factor")
        if now - state.created_ns > policy.ns(policy.recent_login_seconds):
            raise StepUpRequired("sign in again, then add your first factor within 10 minutes")

    # TOTP -----------------------------------------------------------------------------

    async def enrol_totp(
        self, session: AsyncSession, *, user: User, state: SessionState, request: RequestInfo
    ) -> TotpEnrolment:
        await self.require_fresh_factor(session, user=user, state=state)
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
        if factor is None or factor.kind != "totp" or factor.status != "pending":
            raise NotFound("no pending authenticator-app factor with that id")
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
        await self._activate(session, user, factor, request)
        return True

    async def _activate(
        self, session: AsyncSession, user: User, factor: MfaFactor, request: RequestInfo
    ) -> None:
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
    ) -> str:
        """Start an email or SMS factor: send a code; returns the pending factor id."""
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
            or ticket is None
            or ticket.used_ns is not None
            or ticket.expires_ns <= now
        ):
            raise NotFound("no pending code factor with that id; start again")
        payload = json.loads(ticket.payload)
        ok = self.auth._check_otp(payload, code, now)
        ticket.payload = json.dumps(payload)
        if not ok:
            return False
        ticket.used_ns = now
        await self._activate(session, user, factor, request)
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
        await self.require_fresh_factor(session, user=user, state=state)
        factor = await repository.factor_of(session, user.id, factor_id)
        if factor is None:
            raise NotFound("no factor with that id")
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
