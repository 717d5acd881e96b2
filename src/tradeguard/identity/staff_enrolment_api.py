"""Staff enrolment HTTP API under /api/v1/auth/staff-enrolment (IAC-3): paths are stable.

Two calls redeem the one-time token from `tradeguard users invite-staff`: `options` (token and
email address) gives the browser's registration options, which ask for attestation; `complete`
sends username, password and the authenticator's answer, and creates the account.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field, StrictBool

from tradeguard.core.errors import TooManyRequests, TradeguardError, Unauthorized
from tradeguard.identity import schemas as s
from tradeguard.identity.errors import AuthenticatorNotAllowed, WebAuthnRegistrationRejected
from tradeguard.identity.guard import Services, problems, public_route, request_info
from tradeguard.identity.sessions import THROTTLED_DETAIL
from tradeguard.identity.staff_enrolment import (
    EnrolmentDenied,
    EnrolmentRefusal,
    StaffEnrolmentService,
)
from tradeguard.identity.webauthn_service import Refused, WebAuthnRefusal

router = APIRouter(prefix="/api/v1/auth/staff-enrolment", tags=["auth"])

Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
CredentialJson = Annotated[dict[str, Any], Field(min_length=1, max_length=8)]
INVALID_INVITATION = (
    "the enrolment token is invalid, used or expired, or was issued for another address; "
    "ask the operator for a new one"
)


class EnrolmentOptionsRequest(s.Strict):
    token: s.Opaque
    email: s.EmailAddress
    passkey: StrictBool = False


class EnrolmentOptionsResponse(s.Strict):
    expires_in: int
    options: dict[str, Any]


class EnrolmentCompleteRequest(s.Strict):
    token: s.Opaque
    email: s.EmailAddress
    username: Annotated[str, Field(min_length=3, max_length=32)]
    password: s.NewPassword
    credential: CredentialJson
    label: Label | None = None


class EnrolledResponse(s.Strict):
    user_id: str
    username: str
    role: str
    factor_id: str
    detail: str = "staff account created; sign in with your password and security key"


def enrolment_service(request: Request) -> StaffEnrolmentService:
    service: StaffEnrolmentService = request.app.state.staff_enrolment
    return service


def _denied(denied: EnrolmentDenied) -> TradeguardError:
    if denied.reason is EnrolmentRefusal.THROTTLED:
        return TooManyRequests(
            THROTTLED_DETAIL, retry_after_seconds=denied.retry_after_seconds or 1
        )
    if denied.reason is EnrolmentRefusal.NO_CHALLENGE:
        return WebAuthnRegistrationRejected(
            "the registration challenge is missing, used or expired; request new options"
        )
    if denied.reason is EnrolmentRefusal.TOO_MANY_CHALLENGES:
        return TooManyRequests(
            "too many registration attempts for this invitation; ask for a new one",
            retry_after_seconds=3600,
        )
    # Unknown, used, expired or another address's token: one answer.
    return Unauthorized(INVALID_INVITATION)


def _refused(refused: Refused) -> TradeguardError:
    if refused.reason is WebAuthnRefusal.AUTHENTICATOR_NOT_ALLOWED:
        return AuthenticatorNotAllowed(
            "staff accounts need a security key of an approved model, with its attestation"
        )
    return WebAuthnRegistrationRejected("the authenticator's response was not accepted")


@router.post(
    "/options",
    operation_id="auth.staff_enrolment.options",
    responses=problems(401, 429),
    **public_route(),
)
async def enrolment_options(
    body: EnrolmentOptionsRequest, request: Request, services: Services
) -> EnrolmentOptionsResponse:
    """Start redeeming a staff invitation: registration options for your security key."""
    async with services.unit_of_work() as session:
        outcome = await enrolment_service(request).registration_options(
            session,
            token=body.token,
            email=body.email,
            passkey=body.passkey,
            request=request_info(request),
        )
    if isinstance(outcome, EnrolmentDenied):
        raise _denied(outcome)
    return EnrolmentOptionsResponse(
        expires_in=outcome.expires_in, options=json.loads(outcome.options_json)
    )


@router.post(
    "/complete",
    status_code=201,
    operation_id="auth.staff_enrolment.complete",
    responses=problems(401, 403, 409, 429, 503),
    **public_route(),
)
async def complete_enrolment(
    body: EnrolmentCompleteRequest, request: Request, services: Services
) -> EnrolledResponse:
    """Finish a staff invitation: username, password and the security key, in one step."""
    async with services.unit_of_work() as session:
        outcome = await enrolment_service(request).complete(
            session,
            token=body.token,
            email=body.email,
            username=body.username,
            password=body.password,
            credential=body.credential,
            label=body.label,
            request=request_info(request),
        )
    if isinstance(outcome, EnrolmentDenied):
        raise _denied(outcome)
    if isinstance(outcome, Refused):
        raise _refused(outcome)
    return EnrolledResponse(
        user_id=outcome.user_id,
        username=outcome.username,
        role=outcome.role.value,
        factor_id=outcome.factor_id,
    )
