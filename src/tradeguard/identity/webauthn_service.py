"""W3C WebAuthn Level 3 ceremonies (sections 7.1, 7.2) bound to accounts (AUTH-2, AUTH-3, IAC-3).

Security keys and passkeys are registered as factors (ACCT-1 step-up rules), used as the
second step of a password login, or, for passkeys, as a whole passwordless login. Every
challenge lives in an `AuthTicket` and is used at most once: registration and passwordless
tickets are spent *before* the response is verified, and an MFA ticket's challenge is taken
out of its payload before verifying, so a replayed response always meets a spent challenge.

Failures are returned as `Refused` outcomes, not raised, so the edge commits what they
changed (spent tickets, throttle counters, audit events) before it answers with an error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn.helpers.structs import AttestationConveyancePreference

from tradeguard.access.domain import STAFF_ROLES, Role
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.identity import repository
from tradeguard.identity.common import (
    IdentityDeps,
    RequestInfo,
    hash_secret_token,
    new_secret_token,
)
from tradeguard.identity.errors import (
    AttestationNotTrusted,
    AuthenticatorNotAllowed,
    ClonedAuthenticator,
    WebAuthnAuthenticationRejected,
    WebAuthnRegistrationRejected,
)
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.factors import FactorService
from tradeguard.identity.ip_allowlist import allowed
from tradeguard.identity.mfa import webauthn as ceremonies
from tradeguard.identity.mfa.attestation import AuthenticatorCatalogue
from tradeguard.identity.models import AuthTicket, MfaFactor, User
from tradeguard.identity.sessions import (
    AuthService,
    Denied,
    Failure,
    SessionState,
    TokenPair,
    ip_throttle_key,
)

REGISTER_TICKET = "webauthn_register"
LOGIN_TICKET = "webauthn_login"
STEP_UP_TICKET = "webauthn_step_up"
# Step-up challenges one session may ask for per window: each is a row until housekeeping.
MAX_STEP_UP_CHALLENGES = 10
STEP_UP_WINDOW_SECONDS = 15 * 60
WEBAUTHN_KIND = "webauthn"
# Key of the challenge inside an MFA login ticket's payload, and of its issue counter.
MFA_CHALLENGE_KEY = "webauthn_challenge"
MFA_CHALLENGES_ISSUED_KEY = "webauthn_challenges"
# Enough for a few retries with another key; bounds the writes one MFA ticket can cause.
MAX_MFA_CHALLENGES = 5
# A passkey with user verification is possession plus a PIN or biometric: RFC 8176 "hwk"
# and "user", and multi-factor by itself.
PASSKEY_AMR = ["hwk", "user", "mfa"]

WebAuthnVerifier = Callable[[AsyncSession, User, dict[str, Any]], Awaitable[bool]]
# The staff authenticator catalogue in force (re-read by its file holder when it changes).
StaffCatalogue = Callable[[], AuthenticatorCatalogue]


class WebAuthnEvent(StrEnum):
    """Audit events of the WebAuthn ceremonies not already in `IdentityEvent`."""

    CHALLENGE_ISSUED = "identity:webauthn:challenge_issued"


class Ceremony(StrEnum):
    REGISTRATION = "registration"
    MFA = "mfa"
    PASSKEY_LOGIN = "passkey_login"
    STEP_UP = "step_up"


class WebAuthnRefusal(StrEnum):
    """Why a ceremony was refused; stable codes for the audit ledger."""

    INVALID_TICKET = "INVALID_TICKET"
    THROTTLED = "THROTTLED"
    NOT_ENROLLED = "NOT_ENROLLED"
    REGISTRATION_REJECTED = "REGISTRATION_REJECTED"
    AUTHENTICATOR_NOT_ALLOWED = "AUTHENTICATOR_NOT_ALLOWED"
    CREDENTIAL_IN_USE = "CREDENTIAL_IN_USE"
    ASSERTION_REJECTED = "ASSERTION_REJECTED"
    UNKNOWN_CREDENTIAL = "UNKNOWN_CREDENTIAL"
    NOT_A_PASSKEY = "NOT_A_PASSKEY"
    USER_HANDLE_MISMATCH = "USER_HANDLE_MISMATCH"
    CLONE_SUSPECTED = "CLONE_SUSPECTED"
    ACCOUNT_UNAVAILABLE = "ACCOUNT_UNAVAILABLE"
    IP_NOT_ALLOWED = "IP_NOT_ALLOWED"


@dataclass(frozen=True, slots=True)
class Refused:
    reason: WebAuthnRefusal
    retry_after_seconds: int | None = None
    # Why a staff authenticator's attestation was not trusted (`AttestationRefusal`).
    attestation: str | None = None


@dataclass(frozen=True, slots=True)
class CeremonyStart:
    """Options for the browser, and the ticket to send back with its answer (if a new one)."""

    options_json: str
    expires_in: int
    ticket: str | None = None


@dataclass(frozen=True, slots=True)
class RegisteredFactor:
    factor_id: str
    label: str
    passkey: bool
    first: bool = False  # the account's first factor


class WebAuthnService:
    def __init__(
        self,
        deps: IdentityDeps,
        *,
        auth: AuthService,
        factors: FactorService,
        allowed_aaguids: Collection[str] | None = None,
        staff_models: StaffCatalogue | None = None,
        challenge_seconds: int = 300,
    ) -> None:
        """`allowed_aaguids` limits registration to those authenticator models (None: any).

        `staff_models` is the catalogue staff authenticators must be attested against (IAC-3);
        without one no staff authenticator can be registered.
        """
        self.deps = deps
        self.auth = auth
        self.factors = factors
        self.allowed_aaguids = (
            None if allowed_aaguids is None else frozenset(a.lower() for a in allowed_aaguids)
        )
        self.staff_models = staff_models
        self.challenge_seconds = challenge_seconds

    # Registration (section 7.1) ---------------------------------------------------------

    async def registration_options(
        self,
        session: AsyncSession,
        *,
        user: User,
        state: SessionState,
        passkey: bool,
        label: str | None,
        request: RequestInfo,
    ) -> CeremonyStart:
        """Start adding a security key or passkey; needs the same step-up as any factor change."""
        await self.factors.require_fresh_factor(session, user=user, state=state)
        existing = [
            f.credential_id
            for f in await repository.factors_of(session, user.id)
            if f.kind == WEBAUTHN_KIND and f.credential_id is not None
        ]
        options = self.new_credential_options(
            user_id=user.id,
            user_name=user.username,
            role=Role(user.role),
            passkey=passkey,
            exclude_credential_ids=existing,
        )
        payload = {
            "challenge": _b64(options.challenge),
            "passkey": passkey,
            "label": label or ("Passkey" if passkey else "Security key"),
            # The step-up decision above belongs to this session only.
            "session_id": state.session_id,
        }
        token = await self._new_ticket(session, REGISTER_TICKET, user.id, payload)
        await self._audit_challenge(session, Ceremony.REGISTRATION, user.id, request)
        return CeremonyStart(options.options_json, self.challenge_seconds, token)

    async def register(
        self,
        session: AsyncSession,
        *,
        user: User,
        state: SessionState,
        ticket: str,
        response: Mapping[str, Any],
        request: RequestInfo,
    ) -> RegisteredFactor | Refused:
        """Verify a registration response and store the credential as an active factor."""
        now = self.deps.clock.now_ns()
        row = await self._open_ticket(session, ticket, REGISTER_TICKET)
        payload = json.loads(row.payload) if row is not None else {}
        if row is None or row.user_id != user.id or payload.get("session_id") != state.session_id:
            return await self._registration_refused(
                session, user, WebAuthnRefusal.INVALID_TICKET, request
            )
        # The step-up must still hold when the factor is actually added.
        await self.factors.require_fresh_factor(session, user=user, state=state)
        # Spent before verifying: a response replayed against this challenge meets a used
        # ticket, whatever the outcome of the first attempt.
        if not await repository.spend_ticket(session, row.id, now):
            return await self._registration_refused(
                session, user, WebAuthnRefusal.INVALID_TICKET, request
            )
        passkey = bool(payload.get("passkey"))
        # The role now, not when the options were issued: a promotion in between still
        # needs an attested authenticator.
        credential = self.verify_new_credential(
            response=response,
            challenge=_unb64(str(payload.get("challenge", ""))),
            passkey=passkey,
            role=Role(user.role),
        )
        if isinstance(credential, Refused):
            return await self._registration_refused(
                session, user, credential.reason, request, attestation=credential.attestation
            )
        stored = await self.store_credential(
            session,
            user=user,
            credential=credential,
            label=str(payload.get("label") or "Security key"),
            passkey=passkey,
            request=request,
        )
        if isinstance(stored, Refused):
            return stored
        await self.factors._notify(
            session, user, f"A new sign-in factor was added: {stored.label}."
        )
        if stored.first:
            await self.factors.after_first_factor(
                session, user=user, current_session_id=state.session_id, request=request
            )
        return stored

    def new_credential_options(
        self,
        *,
        user_id: str,
        user_name: str,
        role: Role,
        passkey: bool,
        exclude_credential_ids: Sequence[bytes] = (),
    ) -> ceremonies.CeremonyOptions:
        """Registration options; staff authenticators are asked for "direct" attestation."""
        return ceremonies.registration_options(
            rp_id=self.deps.policy.rp_id,
            rp_name=self.deps.policy.rp_name,
            user_id=_user_handle(user_id),
            user_name=user_name,
            user_display_name=user_name,
            exclude_credential_ids=exclude_credential_ids,
            passkey=passkey,
            attestation=(
                AttestationConveyancePreference.DIRECT
                if role in STAFF_ROLES
                else AttestationConveyancePreference.NONE
            ),
            timeout_ms=self.challenge_seconds * 1000,
        )

    def verify_new_credential(
        self, *, response: Mapping[str, Any], challenge: bytes, passkey: bool, role: Role
    ) -> ceremonies.RegisteredCredential | Refused:
        """Verify a registration response; a staff authenticator must prove an allowed model.

        Traders' authenticators are taken at their word ("none" attestation: asking for more
        would show a consent prompt and buys nothing there). Staff authenticators must carry an
        attestation that chains to a root the catalogue lists for their AAGUID (IAC-3).
        """
        policy = self.deps.policy
        staff = role in STAFF_ROLES
        if staff and self.staff_models is None:
            return Refused(WebAuthnRefusal.AUTHENTICATOR_NOT_ALLOWED, attestation="NO_CATALOGUE")
        try:
            return ceremonies.verify_registration(
                response=response,
                expected_challenge=challenge,
                expected_origin=policy.origin,
                expected_rp_id=policy.rp_id,
                # A passkey is a whole login, so it must verify the user (PIN or biometric).
                require_user_verification=passkey,
                allowed_aaguids=self.allowed_aaguids,
                trusted_models=self.staff_models() if self.staff_models and staff else None,
            )
        except AttestationNotTrusted as exc:
            return Refused(WebAuthnRefusal.AUTHENTICATOR_NOT_ALLOWED, attestation=exc.reason)
        except AuthenticatorNotAllowed:
            return Refused(WebAuthnRefusal.AUTHENTICATOR_NOT_ALLOWED)
        except WebAuthnRegistrationRejected:
            return Refused(WebAuthnRefusal.REGISTRATION_REJECTED)

    async def store_credential(
        self,
        session: AsyncSession,
        *,
        user: User,
        credential: ceremonies.RegisteredCredential,
        label: str,
        passkey: bool,
        request: RequestInfo,
    ) -> RegisteredFactor | Refused:
        """Store a verified credential as an active factor of `user`, audited."""
        deps, now = self.deps, self.deps.clock.now_ns()
        # Section 7.1 step 26: a credential id registered before, to anyone, is refused.
        if await repository.factor_by_credential(session, credential.credential_id) is not None:
            return await self._registration_refused(
                session, user, WebAuthnRefusal.CREDENTIAL_IN_USE, request
            )
        first = not await repository.factors_of(session, user.id)
        factor = MfaFactor(
            id=deps.ids.new_str(),
            user_id=user.id,
            kind=WEBAUTHN_KIND,
            label=label,
            status="active",
            credential_id=credential.credential_id,
            public_key=credential.public_key,
            sign_count=credential.sign_count,
            aaguid=credential.aaguid,
            is_passkey=passkey,
            created_ns=now,
            confirmed_ns=now,
        )
        try:
            # The unique index also catches revoked factors and concurrent registrations;
            # the savepoint keeps the refusal's audit event in this transaction.
            async with session.begin_nested():
                session.add(factor)
                await session.flush()
        except IntegrityError:
            return await self._registration_refused(
                session, user, WebAuthnRefusal.CREDENTIAL_IN_USE, request
            )
        await deps.audit(
            session,
            IdentityEvent.FACTOR_CONFIRMED,
            user_id=user.id,
            request=request,
            data={
                "factor_id": factor.id,
                "kind": WEBAUTHN_KIND,
                "passkey": passkey,
                "aaguid": credential.aaguid,
                "user_verified": credential.user_verified,
                "backed_up": credential.backed_up,
                # Staff authenticators were attested against the catalogue (IAC-3).
                "attested": Role(user.role) in STAFF_ROLES,
            },
        )
        return RegisteredFactor(factor.id, factor.label, passkey, first)

    async def _registration_refused(
        self,
        session: AsyncSession,
        user: User,
        reason: WebAuthnRefusal,
        request: RequestInfo,
        *,
        attestation: str | None = None,
    ) -> Refused:
        data: dict[str, Any] = {"method": WEBAUTHN_KIND, "enrolment": True, "reason": reason.value}
        if attestation is not None:
            data["attestation"] = attestation
        await self.deps.audit(
            session, IdentityEvent.MFA_FAILED, user_id=user.id, request=request, data=data
        )
        return Refused(reason, attestation=attestation)

    # Authentication (section 7.2) -------------------------------------------------------

    async def authentication_options(
        self, session: AsyncSession, *, ticket: str | None, request: RequestInfo
    ) -> CeremonyStart | Refused:
        """With an MFA ticket: a challenge for the user's keys, kept in that ticket.
        Without one: a passwordless passkey login (discoverable credentials, UV required)."""
        if ticket is not None:
            return await self._mfa_options(session, ticket=ticket, request=request)
        refused = await self._throttled(session, request)
        if refused is not None:
            return refused
        options = ceremonies.authentication_options(
            rp_id=self.deps.policy.rp_id,
            require_user_verification=True,
            timeout_ms=self.challenge_seconds * 1000,
        )
        token = await self._new_ticket(
            session, LOGIN_TICKET, None, {"challenge": _b64(options.challenge)}
        )
        await self._audit_challenge(session, Ceremony.PASSKEY_LOGIN, None, request)
        return CeremonyStart(options.options_json, self.challenge_seconds, token)

    async def _mfa_options(
        self, session: AsyncSession, *, ticket: str, request: RequestInfo
    ) -> CeremonyStart | Refused:
        row = await self.auth._live_ticket(session, ticket)
        if row is None or row.user_id is None:
            await self._audit_challenge_refused(
                session, Ceremony.MFA, None, WebAuthnRefusal.INVALID_TICKET, request
            )
            return Refused(WebAuthnRefusal.INVALID_TICKET)
        payload = json.loads(row.payload)
        issued = int(payload.get(MFA_CHALLENGES_ISSUED_KEY, 0))
        if issued >= MAX_MFA_CHALLENGES:
            await self._audit_challenge_refused(
                session, Ceremony.MFA, row.user_id, WebAuthnRefusal.THROTTLED, request
            )
            return Refused(WebAuthnRefusal.THROTTLED, retry_after_seconds=self.challenge_seconds)
        credential_ids = [
            f.credential_id
            for f in await repository.factors_of(session, row.user_id)
            if f.kind == WEBAUTHN_KIND and f.credential_id is not None
        ]
        if not credential_ids:
            await self._audit_challenge_refused(
                session, Ceremony.MFA, row.user_id, WebAuthnRefusal.NOT_ENROLLED, request
            )
            return Refused(WebAuthnRefusal.NOT_ENROLLED)
        options = ceremonies.authentication_options(
            rp_id=self.deps.policy.rp_id,
            allow_credential_ids=credential_ids,
            # A second factor needs presence only; the password was the first factor.
            require_user_verification=False,
            timeout_ms=self.challenge_seconds * 1000,
        )
        # A new challenge replaces the previous one: only the latest options can be answered.
        payload[MFA_CHALLENGE_KEY] = _b64(options.challenge)
        payload[MFA_CHALLENGES_ISSUED_KEY] = issued + 1
        row.payload = json.dumps(payload)
        await self._audit_challenge(session, Ceremony.MFA, row.user_id, request)
        remaining = (row.expires_ns - self.deps.clock.now_ns()) // NS_PER_SECOND
        return CeremonyStart(options.options_json, max(remaining, 1))

    def login_assertion_verifier(
        self, assertion: Mapping[str, Any], request: RequestInfo
    ) -> WebAuthnVerifier:
        """The `webauthn_verifier` hook of `AuthService.verify_login` for one assertion."""

        async def verify(session: AsyncSession, user: User, payload: dict[str, Any]) -> bool:
            return await self.verify_second_factor(
                session, user=user, payload=payload, assertion=assertion, request=request
            )

        return verify

    async def verify_second_factor(
        self,
        session: AsyncSession,
        *,
        user: User,
        payload: dict[str, Any],
        assertion: Mapping[str, Any],
        request: RequestInfo,
    ) -> bool:
        """Check an assertion against the challenge in an MFA ticket's payload.

        The challenge is removed from the payload first; `verify_login` stores the payload
        back after a failure and spends the ticket after a success, so it is never reusable.
        """
        challenge = payload.pop(MFA_CHALLENGE_KEY, None)
        if not isinstance(challenge, str) or not assertion:
            return False
        try:
            credential_id = ceremonies.assertion_credential_id(assertion)
        except WebAuthnAuthenticationRejected:
            return False
        factor = await repository.factor_by_credential(session, credential_id)
        if factor is None or factor.user_id != user.id or factor.kind != WEBAUTHN_KIND:
            return False
        refusal = await self._check_assertion(
            session,
            user=user,
            factor=factor,
            response=assertion,
            challenge=_unb64(challenge),
            require_user_verification=False,
            request=request,
        )
        return refusal is None

    async def login_with_passkey(
        self,
        session: AsyncSession,
        *,
        ticket: str,
        response: Mapping[str, Any],
        request: RequestInfo,
    ) -> TokenPair | Refused:
        """Passwordless login: a discoverable passkey that verified the user is a whole login."""
        deps, now = self.deps, self.deps.clock.now_ns()
        refused = await self._throttled(session, request)
        if refused is not None:
            return refused
        row = await self._open_ticket(session, ticket, LOGIN_TICKET)
        # Spent before verifying, whatever follows (single-use challenge).
        if row is None or not await repository.spend_ticket(session, row.id, now):
            return await self._login_refused(session, WebAuthnRefusal.INVALID_TICKET, None, request)
        challenge = _unb64(str(json.loads(row.payload).get("challenge", "")))
        try:
            credential_id = ceremonies.assertion_credential_id(response)
        except WebAuthnAuthenticationRejected:
            return await self._login_refused(
                session, WebAuthnRefusal.ASSERTION_REJECTED, None, request
            )
        factor = await repository.factor_by_credential(session, credential_id)
        if factor is None or factor.kind != WEBAUTHN_KIND:
            return await self._login_refused(
                session, WebAuthnRefusal.UNKNOWN_CREDENTIAL, None, request
            )
        user = await repository.user_by_id(session, factor.user_id)
        if user is None:
            return await self._login_refused(
                session, WebAuthnRefusal.UNKNOWN_CREDENTIAL, None, request
            )
        # A security key registered as a second factor only proves presence: never a login.
        if not factor.is_passkey:
            return await self._login_refused(
                session, WebAuthnRefusal.NOT_A_PASSKEY, user.id, request
            )
        # A disabled or temporarily locked account stays locked whatever the method.
        if user.status != "active" or (user.locked_until_ns or 0) > now:
            return await self._login_refused(
                session, WebAuthnRefusal.ACCOUNT_UNAVAILABLE, user.id, request
            )
        if not allowed(json.loads(user.ip_allowlist) if user.ip_allowlist else [], request.ip):
            await deps.audit(session, IdentityEvent.IP_REFUSED, user_id=user.id, request=request)
            return await self._login_refused(
                session, WebAuthnRefusal.IP_NOT_ALLOWED, user.id, request
            )
        # Section 7.2 step 6: the user was not identified beforehand, so the response must
        # name the account the credential belongs to.
        if not _user_handle_matches(response, user.id):
            return await self._login_refused(
                session, WebAuthnRefusal.USER_HANDLE_MISMATCH, user.id, request
            )
        refusal = await self._check_assertion(
            session,
            user=user,
            factor=factor,
            response=response,
            challenge=challenge,
            require_user_verification=True,
            request=request,
        )
        if refusal is not None:
            return await self._login_refused(session, refusal, user.id, request)
        return await self._start_passkey_session(session, user, factor, request)

    async def _start_passkey_session(
        self, session: AsyncSession, user: User, factor: MfaFactor, request: RequestInfo
    ) -> TokenPair | Refused:
        deps = self.deps
        device, device_token, by_token = await self.auth._recognize_device(session, user, request)
        # A verified passkey is multi-factor, so it authorizes the device like MFA does.
        recognized = await self.auth.device_after_mfa(
            session, user, device, request, by="passkey", by_token=by_token
        )
        if recognized is not device:
            device, device_token = recognized, None
        await deps.audit(
            session,
            IdentityEvent.MFA_VERIFIED,
            user_id=user.id,
            request=request,
            data={"method": WEBAUTHN_KIND, "passkey": True, "factor_id": factor.id},
        )
        await deps.audit(
            session,
            IdentityEvent.LOGIN_SUCCEEDED,
            user_id=user.id,
            request=request,
            data={"amr": PASSKEY_AMR, "device_id": device.id, "method": "passkey"},
        )
        pair = await self.auth._start_session(
            session, user, device, list(PASSKEY_AMR), request, mfa=True
        )
        if isinstance(pair, Denied):
            # The takeover defence locked the account at this sign-in.
            return Refused(
                WebAuthnRefusal.ACCOUNT_UNAVAILABLE, retry_after_seconds=pair.retry_after_seconds
            )
        return replace(pair, device_token=device_token)

    async def _check_assertion(
        self,
        session: AsyncSession,
        *,
        user: User,
        factor: MfaFactor,
        response: Mapping[str, Any],
        challenge: bytes,
        require_user_verification: bool,
        request: RequestInfo,
    ) -> WebAuthnRefusal | None:
        """Verify against the stored credential; on success store the new counter."""
        deps, policy = self.deps, self.deps.policy
        if factor.credential_id is None or factor.public_key is None:
            return WebAuthnRefusal.ASSERTION_REJECTED
        try:
            verified = ceremonies.verify_authentication(
                response=response,
                expected_challenge=challenge,
                expected_origin=policy.origin,
                expected_rp_id=policy.rp_id,
                credential_id=factor.credential_id,
                credential_public_key=factor.public_key,
                stored_sign_count=factor.sign_count or 0,
                require_user_verification=require_user_verification,
            )
        except ClonedAuthenticator:
            # Correctly signed but the counter went backwards: two copies of the key exist.
            # The login is refused; the factor stays active (the owner may hold the original)
            # and the owner is told, so they can decide whether to remove it.
            await deps.audit(
                session,
                IdentityEvent.FACTOR_CLONE_SUSPECTED,
                user_id=user.id,
                request=request,
                data={"factor_id": factor.id, "stored_sign_count": factor.sign_count or 0},
            )
            await deps.notifier.enqueue_email(
                session,
                to=user.email,
                template="factor_clone_suspected",
                subject="A sign-in with your security key was refused",
                body=(
                    f"A sign-in with {factor.label} was refused because the key's signature "
                    "counter went backwards, which can mean the key was copied. If this was not "
                    "you, remove that key and change your password."
                ),
            )
            return WebAuthnRefusal.CLONE_SUSPECTED
        except WebAuthnAuthenticationRejected:
            return WebAuthnRefusal.ASSERTION_REJECTED
        # Conditional update: two copies of a key used at the same instant cannot both move the
        # counter, so the second is refused instead of silently overwriting the first.
        if not await repository.advance_sign_count(
            session,
            factor.id,
            previous=factor.sign_count or 0,
            new=verified.new_sign_count,
            now_ns=deps.clock.now_ns(),
        ):
            return WebAuthnRefusal.ASSERTION_REJECTED
        return None

    # Step-up (ACCT-1, IAC-3) ---------------------------------------------------------------

    async def step_up_options(
        self, session: AsyncSession, *, user: User, state: SessionState, request: RequestInfo
    ) -> CeremonyStart | Denied | Refused:
        """A challenge for the user's own keys, bound to this session and usable once.

        Lets a user whose only factors are passkeys or security keys (every staff member)
        re-prove a factor inside the session, like a TOTP code does.
        """
        refused = await self.auth.second_factor_refusal(session, user)
        if refused is not None:
            return refused
        wait = await self.auth.quota_refused(
            session,
            [
                (
                    "webauthn_step_up",
                    f"webauthn-step-up:{state.session_id}",
                    MAX_STEP_UP_CHALLENGES,
                    STEP_UP_WINDOW_SECONDS,
                )
            ],
            user_id=user.id,
            request=request,
        )
        if wait:
            return Denied(Failure.THROTTLED, retry_after_seconds=wait)
        keys = [
            f
            for f in await repository.factors_of(session, user.id)
            if f.kind == WEBAUTHN_KIND and f.credential_id is not None
        ]
        if not keys:
            await self._audit_challenge_refused(
                session, Ceremony.STEP_UP, user.id, WebAuthnRefusal.NOT_ENROLLED, request
            )
            return Refused(WebAuthnRefusal.NOT_ENROLLED)
        options = ceremonies.authentication_options(
            rp_id=self.deps.policy.rp_id,
            allow_credential_ids=[f.credential_id for f in keys if f.credential_id is not None],
            # Asked for when every key is a passkey; enforced per key when the answer comes.
            require_user_verification=all(f.is_passkey for f in keys),
            timeout_ms=self.challenge_seconds * 1000,
        )
        token = await self._new_ticket(
            session,
            STEP_UP_TICKET,
            user.id,
            {"challenge": _b64(options.challenge), "session_id": state.session_id},
        )
        await self._audit_challenge(session, Ceremony.STEP_UP, user.id, request)
        return CeremonyStart(options.options_json, self.challenge_seconds, token)

    async def step_up(
        self,
        session: AsyncSession,
        *,
        user: User,
        state: SessionState,
        ticket: str,
        response: Mapping[str, Any],
        request: RequestInfo,
    ) -> Denied | Refused | None:
        """Check a step-up assertion; on success the session's second factor is fresh again.

        The challenge is spent before the assertion is checked, belongs to the session that
        asked for it, and is answerable only by one of the user's own keys; a passkey must
        verify the user (as it does at sign-in), a security key proves presence. Every failure
        counts towards the second-factor lock, like a wrong TOTP code.
        """
        now = self.deps.clock.now_ns()
        refused = await self.auth.second_factor_refusal(session, user)
        if refused is not None:
            return refused
        row = await self._open_ticket(session, ticket, STEP_UP_TICKET)
        payload = json.loads(row.payload) if row is not None else {}
        # Spent first, whoever presents it: a ticket shown by another session or user has
        # leaked, so it is burnt, and the session it was issued to cannot use it later either.
        spent = row is not None and await repository.spend_ticket(session, row.id, now)
        if (
            row is None
            or not spent
            or row.user_id != user.id
            or payload.get("session_id") != state.session_id
        ):
            return await self._step_up_failed(
                session, user, WebAuthnRefusal.INVALID_TICKET, request
            )
        try:
            credential_id = ceremonies.assertion_credential_id(response)
        except WebAuthnAuthenticationRejected:
            return await self._step_up_failed(
                session, user, WebAuthnRefusal.ASSERTION_REJECTED, request
            )
        factor = await repository.factor_by_credential(session, credential_id)
        if factor is None or factor.user_id != user.id or factor.kind != WEBAUTHN_KIND:
            return await self._step_up_failed(
                session, user, WebAuthnRefusal.UNKNOWN_CREDENTIAL, request
            )
        refusal = await self._check_assertion(
            session,
            user=user,
            factor=factor,
            response=response,
            challenge=_unb64(str(payload.get("challenge", ""))),
            require_user_verification=factor.is_passkey,
            request=request,
        )
        if refusal is not None:
            return await self._step_up_failed(session, user, refusal, request)
        await self.auth.clear_mfa_failures(session, user.id)
        await self.deps.audit(
            session,
            IdentityEvent.MFA_VERIFIED,
            user_id=user.id,
            request=request,
            data={
                "method": WEBAUTHN_KIND,
                "step_up": True,
                "factor_id": factor.id,
                "passkey": factor.is_passkey,
            },
        )
        await self.auth.record_step_up(session, session_id=state.session_id, amr="hwk")
        return None

    async def _step_up_failed(
        self, session: AsyncSession, user: User, reason: WebAuthnRefusal, request: RequestInfo
    ) -> Refused:
        await self.auth.record_mfa_failure(
            session, user, request, method=f"{WEBAUTHN_KIND}:step_up:{reason.value}"
        )
        return Refused(reason)

    async def _throttled(self, session: AsyncSession, request: RequestInfo) -> Refused | None:
        """Passwordless login shares the per-address failure budget of password login."""
        blocked = await self.auth._blocked_for(
            session, ip_throttle_key(self.deps, request.ip), self.deps.clock.now_ns()
        )
        if not blocked:
            return None
        await self.deps.audit(
            session,
            IdentityEvent.LOGIN_THROTTLED,
            user_id=None,
            request=request,
            data={"method": "passkey"},
        )
        return Refused(WebAuthnRefusal.THROTTLED, retry_after_seconds=-(-blocked // NS_PER_SECOND))

    async def _login_refused(
        self,
        session: AsyncSession,
        reason: WebAuthnRefusal,
        user_id: str | None,
        request: RequestInfo,
    ) -> Refused:
        await self.auth.count_ip_failure(session, request)
        await self.deps.audit(
            session,
            IdentityEvent.LOGIN_FAILED,
            user_id=user_id,
            request=request,
            data={"method": "passkey", "reason": reason.value},
        )
        return Refused(reason)

    # Tickets and audit ------------------------------------------------------------------

    async def _new_ticket(
        self, session: AsyncSession, kind: str, user_id: str | None, payload: dict[str, Any]
    ) -> str:
        now = self.deps.clock.now_ns()
        token, token_hash = new_secret_token()
        session.add(
            AuthTicket(
                id=self.deps.ids.new_str(),
                token_hash=token_hash,
                kind=kind,
                user_id=user_id,
                payload=json.dumps(payload),
                attempts=0,
                created_ns=now,
                expires_ns=now + self.deps.policy.ns(self.challenge_seconds),
            )
        )
        await session.flush()
        return token

    async def _open_ticket(self, session: AsyncSession, token: str, kind: str) -> AuthTicket | None:
        if not token or len(token) > 128:
            return None
        return await repository.open_ticket(
            session, hash_secret_token(token), kind, self.deps.clock.now_ns()
        )

    async def _audit_challenge(
        self,
        session: AsyncSession,
        ceremony: Ceremony,
        user_id: str | None,
        request: RequestInfo,
    ) -> None:
        await self.deps.audit(
            session,
            WebAuthnEvent.CHALLENGE_ISSUED,
            user_id=user_id,
            request=request,
            data={"ceremony": ceremony.value},
        )

    async def _audit_challenge_refused(
        self,
        session: AsyncSession,
        ceremony: Ceremony,
        user_id: str | None,
        reason: WebAuthnRefusal,
        request: RequestInfo,
    ) -> None:
        await self.deps.audit(
            session,
            IdentityEvent.MFA_FAILED,
            user_id=user_id,
            request=request,
            data={"method": WEBAUTHN_KIND, "ceremony": ceremony.value, "reason": reason.value},
        )


def _user_handle(user_id: str) -> bytes:
    """The WebAuthn user handle: the opaque account id, never a name or email (section 14.6.1)."""
    return user_id.encode("ascii")


def _user_handle_matches(response: Mapping[str, Any], user_id: str) -> bool:
    inner = response.get("response")
    handle = inner.get("userHandle") if isinstance(inner, Mapping) else None
    if not isinstance(handle, str) or not handle:
        return False
    try:
        claimed = _unb64(handle)
    except ValueError:
        return False
    return claimed == _user_handle(user_id)


def encode_challenge(challenge: bytes) -> str:
    """A challenge as kept in a ticket's payload (base64url)."""
    return _b64(challenge)


def decode_challenge(text: str) -> bytes:
    """A challenge back from a ticket's payload; ValueError if it is not base64url."""
    return _unb64(text)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
