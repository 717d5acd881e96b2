"""Confirming one sensitive action by an emailed code and a texted code (ACCT-2).

A withdrawal (and any other action that names a `purpose` and a `reference`) is confirmed
only by both codes: one sent to the verified email address, one to the phone of the user's
SMS factor. Each code is an SP 800-63B out-of-band code (identity/mfa/otp.py): 5 minutes,
single use, 5 guesses. The two codes are bound to this action (purpose and reference) and to
the session that asked for them, so codes sent for one withdrawal cannot confirm another, and
a stolen code alone (a SIM swap, or a read mailbox) is not enough.

Wrong guesses count against the user's second-factor failures, which lock the account, as
at sign-in: the codes cannot be guessed by retrying across actions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.errors import CodeExpired, Forbidden, NotFound, TooManyRequests
from tradeguard.identity import repository
from tradeguard.identity.common import IdentityDeps, RequestInfo, new_secret_token
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.mfa import otp as otp_codes
from tradeguard.identity.models import AuthTicket, MfaFactor, User
from tradeguard.identity.sessions import OTP_PEPPER, AuthService, SessionState, refusal_error

ACTION_TICKET = "action_confirm"


class NoPhoneForCodes(Forbidden):
    """The action needs a texted code and the user has no active SMS factor."""


@dataclass(frozen=True, slots=True)
class ConfirmationSent:
    expires_ns: int
    email_hint: str
    phone_hint: str


def _stored(challenge: otp_codes.OtpChallenge) -> dict[str, Any]:
    return {
        "challenge_id": challenge.challenge_id,
        "channel": challenge.channel.value,
        "code_hash": challenge.code_hash.hex(),
        "digits": challenge.digits,
        "expires_at_ns": challenge.expires_at_ns,
        "attempts_left": challenge.attempts_left,
        "used": False,
    }


def _email_hint(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}…@{domain}"


class ActionConfirmations:
    def __init__(self, deps: IdentityDeps, auth: AuthService) -> None:
        self.deps = deps
        self.auth = auth

    async def _sms_factor(self, session: AsyncSession, user_id: str) -> MfaFactor | None:
        for factor in await repository.factors_of(session, user_id):
            if factor.kind == "sms":
                return factor
        return None

    async def can_confirm(self, session: AsyncSession, user: User) -> bool:
        """Whether the user has both channels: a verified email and an active SMS factor."""
        return (
            user.email_verified_ns is not None
            and await self._sms_factor(session, user.id) is not None
        )

    async def send(
        self,
        session: AsyncSession,
        *,
        user: User,
        state: SessionState,
        purpose: str,
        reference: str,
        what: str,
        request: RequestInfo,
    ) -> ConfirmationSent:
        """Send both codes for one action; `what` says in the messages what they confirm
        (no amounts or account data: a message may be read by someone else)."""
        deps, now = self.deps, self.deps.clock.now_ns()
        if user.email_verified_ns is None:
            raise Forbidden("verify your email address first")
        factor = await self._sms_factor(session, user.id)
        if factor is None:
            raise NoPhoneForCodes(
                "this needs a code by text message: add a phone (SMS sign-in method) first"
            )
        phone = self.auth.destination(factor)
        wait = await self.auth.sms_refused(
            session, user_id=user.id, number=phone, purpose="confirm", request=request
        )
        if wait:
            raise TooManyRequests(
                "too many text messages were requested; try again later",
                retry_after_seconds=wait,
            )
        pepper = deps.pepper(OTP_PEPPER)
        email_code, email_challenge = otp_codes.issue(
            channel=otp_codes.OtpChannel.EMAIL, now_ns=now, pepper=pepper
        )
        sms_code, sms_challenge = otp_codes.issue(
            channel=otp_codes.OtpChannel.SMS, now_ns=now, pepper=pepper
        )
        _, token_hash = new_secret_token()
        expires = min(email_challenge.expires_at_ns, sms_challenge.expires_at_ns)
        session.add(
            AuthTicket(
                id=deps.ids.new_str(),
                token_hash=token_hash,
                kind=ACTION_TICKET,
                user_id=user.id,
                attempts=0,
                created_ns=now,
                expires_ns=expires,
                payload=json.dumps(
                    {
                        "purpose": purpose,
                        "reference": reference,
                        "session_id": state.session_id,
                        "email": _stored(email_challenge),
                        "sms": _stored(sms_challenge),
                    }
                ),
            )
        )
        await deps.notifier.enqueue_email(
            session,
            to=user.email,
            template="action_code",
            subject="Your tradeguard confirmation code",
            body=(
                f"Your email code to confirm {what} is {email_code}. It expires in 5 minutes. "
                "A second code was sent to your phone. If you did not ask for this, do not "
                "share either code and change your password now."
            ),
        )
        await deps.notifier.enqueue_sms(
            session,
            to=phone,
            template="action_code",
            body=f"tradeguard: your code to confirm {what} is {sms_code}. Never share it.",
        )
        await deps.audit(
            session,
            IdentityEvent.ACTION_CODES_SENT,
            user_id=user.id,
            request=request,
            data={"purpose": purpose, "reference": reference},
        )
        return ConfirmationSent(
            expires_ns=expires, email_hint=_email_hint(user.email), phone_hint=f"…{phone[-2:]}"
        )

    async def confirm(
        self,
        session: AsyncSession,
        *,
        user: User,
        state: SessionState,
        purpose: str,
        reference: str,
        email_code: str,
        sms_code: str,
        request: RequestInfo,
    ) -> bool:
        """True once both codes match the newest unused pair sent for this action in this
        session; the pair is then spent. A wrong pair spends one guess of each code."""
        deps, now = self.deps, self.deps.clock.now_ns()
        refused = await self.auth.second_factor_refusal(session, user)
        if refused is not None:
            raise refusal_error(refused)
        window = deps.policy.ns(deps.policy.recent_login_seconds)
        unused = [
            ticket
            for ticket in await repository.recent_tickets(
                session, user.id, ACTION_TICKET, since_ns=now - window
            )
            if ticket.used_ns is None and self._binds(ticket, purpose, reference, state)
        ]
        live = [ticket for ticket in unused if ticket.expires_ns > now]
        if not live and unused:
            raise CodeExpired("those codes have expired; ask for new ones")
        if not live:
            raise NotFound("no codes are pending for this; ask for them first")
        ticket = live[-1]
        if (
            await repository.reserve_ticket_attempt(
                session, ticket.id, deps.policy.max_ticket_attempts
            )
            is None
        ):
            return False
        payload = json.loads(ticket.payload)
        # Check both, always, on copies: which of the two was wrong is not revealed, a right
        # code beside a wrong one is not spent (it stays usable with the right partner), and
        # a wrong pair spends one guess of each.
        email_state, sms_state = dict(payload["email"]), dict(payload["sms"])
        email_ok = self.auth._check_otp({"otp": email_state}, email_code, now)
        sms_ok = self.auth._check_otp({"otp": sms_state}, sms_code, now)
        if not (email_ok and sms_ok):
            for stored in (payload["email"], payload["sms"]):
                stored["attempts_left"] = max(0, int(stored["attempts_left"]) - 1)
            ticket.payload = json.dumps(payload)
            await self.auth.record_mfa_failure(session, user, request, method="action_codes")
            return False
        payload["email"], payload["sms"] = email_state, sms_state
        ticket.payload = json.dumps(payload)
        if not await repository.spend_ticket(session, ticket.id, now):
            return False
        await self.auth.clear_mfa_failures(session, user.id)
        await deps.audit(
            session,
            IdentityEvent.ACTION_CONFIRMED,
            user_id=user.id,
            request=request,
            data={"purpose": purpose, "reference": reference},
        )
        return True

    @staticmethod
    def _binds(ticket: AuthTicket, purpose: str, reference: str, state: SessionState) -> bool:
        payload = json.loads(ticket.payload)
        return bool(
            payload.get("purpose") == purpose
            and payload.get("reference") == reference
            and payload.get("session_id") == state.session_id
        )
