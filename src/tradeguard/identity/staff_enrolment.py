"""Staff accounts by one-time enrolment token (IAC-3, RBAC-1).

An operator invites a staff member from the CLI (`tradeguard users invite-staff`): that issues
a single-use token for one email address and one staff role, stored only as its SHA-256 and
valid for `TRADEGUARD_STAFF_ENROLMENT_SECONDS`. The staff member redeems it in one flow: ask
for registration options (the token and their email address), then send username, password
and the security key's attested registration together. The account, its password and its
first factor are created in one transaction or not at all, so no staff account ever exists
without an allow-listed authenticator.

The token is 256 random bits, looked up by its hash: the comparison the database makes is on
a digest the guesser cannot steer, so its timing says nothing about the token. Wrong tokens
count against the client network's sign-in budget like wrong passwords do. A token presented
with another email address is spent on the spot: its holder is not who it was issued to.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import STAFF_ROLES, Role
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import Conflict, InvalidInput
from tradeguard.identity import repository
from tradeguard.identity.common import (
    IdentityDeps,
    RequestInfo,
    hash_secret_token,
    new_secret_token,
)
from tradeguard.identity.models import AuthTicket
from tradeguard.identity.service import AccountService, normalize_email
from tradeguard.identity.sessions import AuthService, ip_throttle_key
from tradeguard.identity.webauthn_service import (
    CeremonyStart,
    Refused,
    WebAuthnService,
    decode_challenge,
    encode_challenge,
)
from tradeguard.ledger.domain import Party

ENROLMENT_TICKET = "staff_enrolment"
# Registration options one token may ask for (each replaces the last); bounds the writes and
# the registration attempts one token allows.
MAX_ENROLMENT_CHALLENGES = 5
CHALLENGE_KEY = "challenge"
CHALLENGE_EXPIRES_KEY = "challenge_expires_ns"
CHALLENGES_ISSUED_KEY = "challenges"


class StaffEnrolmentEvent(StrEnum):
    INVITED = "identity:staff:invited"
    INVITATION_REPLACED = "identity:staff:invitation_replaced"
    ENROLLED = "identity:staff:enrolled"
    REFUSED = "identity:staff:enrolment_refused"


class EnrolmentRefusal(StrEnum):
    """Why a redemption was refused; stable codes for the audit ledger."""

    INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 - a reason code (unknown, used or expired)
    EMAIL_MISMATCH = "EMAIL_MISMATCH"  # a real token, presented for another address
    NO_CHALLENGE = "NO_CHALLENGE"  # registration options were not asked for (or were used)
    TOO_MANY_CHALLENGES = "TOO_MANY_CHALLENGES"
    THROTTLED = "THROTTLED"


@dataclass(frozen=True, slots=True)
class StaffInvitation:
    invitation_id: str
    token: str = field(repr=False)
    email: str
    role: Role
    expires_in: int


@dataclass(frozen=True, slots=True)
class EnrolmentDenied:
    reason: EnrolmentRefusal
    retry_after_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class EnrolledStaff:
    user_id: str
    username: str
    role: Role
    factor_id: str


class StaffEnrolmentService:
    def __init__(
        self,
        deps: IdentityDeps,
        *,
        accounts: AccountService,
        auth: AuthService,
        webauthn: WebAuthnService | None = None,
        token_seconds: int = 86_400,
    ) -> None:
        """`webauthn` is needed to redeem (the API); inviting (the CLI) works without it."""
        self.deps = deps
        self.accounts = accounts
        self.auth = auth
        self.webauthn = webauthn
        self.token_seconds = token_seconds

    # Invitation -------------------------------------------------------------------------

    async def invite(
        self, session: AsyncSession, *, email: str, role: Role, actor: Party
    ) -> StaffInvitation:
        """Issue the one-time token; a previous open invitation for the address stops working."""
        deps, now = self.deps, self.deps.clock.now_ns()
        if role not in STAFF_ROLES:
            raise InvalidInput(
                "staff invitations are for ADMIN, COMPLIANCE or SUPPORT; "
                "traders sign up themselves (or use `tradeguard users create`)"
            )
        address = normalize_email(email)
        if await repository.email_taken(session, address):
            raise Conflict("that email address already has an account")
        for previous in await repository.open_tickets_of_kind(session, ENROLMENT_TICKET, now):
            if json.loads(previous.payload).get("email") == address:
                await repository.spend_ticket(session, previous.id, now)
                await deps.audit(
                    session,
                    StaffEnrolmentEvent.INVITATION_REPLACED,
                    user_id=None,
                    actor=actor,
                    data={"invitation_id": previous.id},
                )
        token, token_hash = new_secret_token()
        invitation_id = deps.ids.new_str()
        session.add(
            AuthTicket(
                id=invitation_id,
                token_hash=token_hash,
                kind=ENROLMENT_TICKET,
                user_id=None,  # the account does not exist until the token is redeemed
                payload=json.dumps(
                    {"email": address, "role": role.value, "user_id": deps.ids.new_str()}
                ),
                attempts=0,
                created_ns=now,
                expires_ns=now + deps.policy.ns(self.token_seconds),
            )
        )
        await session.flush()
        await deps.audit(
            session,
            StaffEnrolmentEvent.INVITED,
            user_id=None,
            actor=actor,
            data={
                "invitation_id": invitation_id,
                "role": role.value,
                "expires_ns": str(now + deps.policy.ns(self.token_seconds)),
            },
        )
        return StaffInvitation(invitation_id, token, address, role, self.token_seconds)

    # Redemption -------------------------------------------------------------------------

    async def registration_options(
        self,
        session: AsyncSession,
        *,
        token: str,
        email: str,
        passkey: bool,
        request: RequestInfo,
    ) -> CeremonyStart | EnrolmentDenied:
        """Registration options for the invited staff member's security key or passkey.

        The challenge is kept in the invitation; asking again replaces it.
        """
        webauthn = self._webauthn()
        row = await self._invitation(session, token=token, email=email, request=request)
        if isinstance(row, EnrolmentDenied):
            return row
        payload = json.loads(row.payload)
        issued = int(payload.get(CHALLENGES_ISSUED_KEY, 0))
        if issued >= MAX_ENROLMENT_CHALLENGES:
            return await self._refused(
                session, EnrolmentRefusal.TOO_MANY_CHALLENGES, row.id, request, count=False
            )
        options = webauthn.new_credential_options(
            user_id=str(payload["user_id"]),
            user_name=str(payload["email"]),
            role=Role(payload["role"]),
            passkey=passkey,
        )
        now = self.deps.clock.now_ns()
        lifetime = min(webauthn.challenge_seconds, (row.expires_ns - now) // NS_PER_SECOND)
        payload[CHALLENGE_KEY] = encode_challenge(options.challenge)
        payload[CHALLENGE_EXPIRES_KEY] = now + self.deps.policy.ns(lifetime)
        payload[CHALLENGES_ISSUED_KEY] = issued + 1
        payload["passkey"] = passkey
        row.payload = json.dumps(payload)
        return CeremonyStart(options.options_json, max(1, lifetime))

    async def complete(
        self,
        session: AsyncSession,
        *,
        token: str,
        email: str,
        username: str,
        password: str,
        credential: dict[str, Any],
        label: str | None,
        request: RequestInfo,
    ) -> EnrolledStaff | EnrolmentDenied | Refused:
        """Create the staff account with its password and attested authenticator, or nothing.

        Bad input (a weak password, a taken username) raises and changes nothing: the token
        and its challenge stay usable. A refused authenticator spends the challenge (ask for
        options again); success spends the token.
        """
        webauthn, deps, now = self._webauthn(), self.deps, self.deps.clock.now_ns()
        row = await self._invitation(session, token=token, email=email, request=request)
        if isinstance(row, EnrolmentDenied):
            return row
        payload = json.loads(row.payload)
        challenge = payload.pop(CHALLENGE_KEY, None)
        if not isinstance(challenge, str) or int(payload.get(CHALLENGE_EXPIRES_KEY, 0)) <= now:
            return await self._refused(
                session, EnrolmentRefusal.NO_CHALLENGE, row.id, request, count=False
            )
        role, user_id = Role(payload["role"]), str(payload["user_id"])
        passkey = bool(payload.get("passkey"))
        # The account is written in a savepoint first, so the password policy and the
        # username are checked (and raise) before anything is spent; a refused authenticator
        # then rolls the account back while the refusal itself is kept.
        savepoint = await session.begin_nested()
        try:
            await self.accounts.create_user(
                session,
                username=username,
                email=str(payload["email"]),
                password=password,
                role=role,
                email_verified=True,  # the invitation reached the address it names
                actor=Party("staff_invitation", row.id),
                user_id=user_id,
            )
            verified = webauthn.verify_new_credential(
                response=credential,
                challenge=decode_challenge(challenge),
                passkey=passkey,
                role=role,
            )
            if isinstance(verified, Refused):
                await savepoint.rollback()
                row.payload = json.dumps(payload)  # the challenge is used up either way
                return await self._authenticator_refused(session, verified, row.id, request)
            user = await repository.user_by_id(session, user_id)
            if user is None or not await repository.spend_ticket(session, row.id, now):
                raise Conflict("this invitation was just redeemed; sign in instead")
            stored = await webauthn.store_credential(
                session,
                user=user,
                credential=verified,
                label=label or ("Passkey" if passkey else "Security key"),
                passkey=passkey,
                request=request,
            )
            if isinstance(stored, Refused):
                # Registered to someone else meanwhile: the whole enrolment is void.
                raise Conflict("that security key is already registered; use another")
        except BaseException:
            if savepoint.is_active:
                await savepoint.rollback()
            raise
        await savepoint.commit()
        await deps.audit(
            session,
            StaffEnrolmentEvent.ENROLLED,
            user_id=user.id,
            actor=Party("staff_invitation", row.id),
            request=request,
            data={"invitation_id": row.id, "role": role.value, "factor_id": stored.factor_id},
        )
        await deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="staff_enrolled",
            subject="Your tradeguard staff account is ready",
            body=(
                f"Your {role.value} account {user.username} was created with the security key "
                f"{stored.label}. Sign in with your password and that key. If you did not do "
                "this, tell your security team at once."
            ),
        )
        return EnrolledStaff(user.id, user.username, role, stored.factor_id)

    # Shared -----------------------------------------------------------------------------

    def _webauthn(self) -> WebAuthnService:
        if self.webauthn is None:
            raise RuntimeError("staff enrolment needs the WebAuthn service")
        return self.webauthn

    async def _invitation(
        self, session: AsyncSession, *, token: str, email: str, request: RequestInfo
    ) -> AuthTicket | EnrolmentDenied:
        """The open invitation the token names, for this address; refusals are counted."""
        now = self.deps.clock.now_ns()
        blocked = await self.auth._blocked_for(session, ip_throttle_key(self.deps, request.ip), now)
        if blocked:
            await self.deps.audit(
                session,
                StaffEnrolmentEvent.REFUSED,
                user_id=None,
                request=request,
                data={"reason": EnrolmentRefusal.THROTTLED.value},
            )
            return EnrolmentDenied(
                EnrolmentRefusal.THROTTLED, retry_after_seconds=-(-blocked // NS_PER_SECOND)
            )
        row = (
            await repository.open_ticket(session, hash_secret_token(token), ENROLMENT_TICKET, now)
            if token and len(token) <= 128
            else None
        )
        if row is None:
            return await self._refused(session, EnrolmentRefusal.INVALID_TOKEN, None, request)
        try:
            address = normalize_email(email)
        except InvalidInput:
            address = ""
        invited = str(json.loads(row.payload).get("email", ""))
        if not hmac.compare_digest(address.encode(), invited.encode()):
            # The token's holder is not the person it was issued to: it is void from now on.
            await repository.spend_ticket(session, row.id, now)
            return await self._refused(session, EnrolmentRefusal.EMAIL_MISMATCH, row.id, request)
        return row

    async def _refused(
        self,
        session: AsyncSession,
        reason: EnrolmentRefusal,
        invitation_id: str | None,
        request: RequestInfo,
        *,
        count: bool = True,
    ) -> EnrolmentDenied:
        if count:
            # Wrong tokens spend the client network's sign-in budget, like wrong passwords.
            await self.auth.count_ip_failure(session, request)
        data: dict[str, Any] = {"reason": reason.value}
        if invitation_id is not None:
            data["invitation_id"] = invitation_id
        await self.deps.audit(
            session, StaffEnrolmentEvent.REFUSED, user_id=None, request=request, data=data
        )
        return EnrolmentDenied(reason)

    async def _authenticator_refused(
        self, session: AsyncSession, refused: Refused, invitation_id: str, request: RequestInfo
    ) -> Refused:
        data: dict[str, Any] = {
            "reason": refused.reason.value,
            "invitation_id": invitation_id,
        }
        if refused.attestation is not None:
            data["attestation"] = refused.attestation
        await self.deps.audit(
            session, StaffEnrolmentEvent.REFUSED, user_id=None, request=request, data=data
        )
        return refused
