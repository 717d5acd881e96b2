"""WebAuthn HTTP API under /api/v1/auth/webauthn (AUTH-2, AUTH-3): paths are stable.

Each ceremony is two calls: `.../options` returns the options for the browser and a ticket;
`.../verify` takes the browser's answer with that ticket. The second factor of a password
login is answered at POST /api/v1/auth/mfa/verify (method "webauthn") after
`authenticate/options` with the login's MFA ticket.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field, StrictBool

from tradeguard.core.errors import Conflict, TooManyRequests, TradeguardError, Unauthorized
from tradeguard.identity import schemas as s
from tradeguard.identity.api import _tokens, _user
from tradeguard.identity.errors import (
    AuthenticatorNotAllowed,
    WebAuthnAuthenticationRejected,
    WebAuthnRegistrationRejected,
)
from tradeguard.identity.guard import (
    AUTHENTICATED,
    CurrentPrincipal,
    Services,
    guarded,
    problems,
    public_route,
    request_info,
)
from tradeguard.identity.sessions import THROTTLED_DETAIL, Denied, refusal_error
from tradeguard.identity.webauthn_service import (
    CeremonyStart,
    Refused,
    WebAuthnRefusal,
    WebAuthnService,
)

router = APIRouter(prefix="/api/v1/auth/webauthn", tags=["auth"])

# Printable text only: the label is shown in lists and quoted in emails.
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
# The browser's PublicKeyCredential serialized with toJSON(); verified field by field later.
CredentialJson = Annotated[dict[str, Any], Field(min_length=1, max_length=8)]


async def webauthn_service(request: Request) -> WebAuthnService:
    service: WebAuthnService = request.app.state.webauthn
    return service


WebAuthn = Annotated[WebAuthnService, Depends(webauthn_service)]


class RegistrationOptionsRequest(s.Strict):
    passkey: StrictBool
    label: Label | None = None


class CeremonyOptionsResponse(s.Strict):
    ticket: str | None = None
    expires_in: int
    options: dict[str, Any]


class RegistrationVerifyRequest(s.Strict):
    ticket: s.Opaque
    credential: CredentialJson


class RegisteredResponse(s.Strict):
    factor_id: str
    kind: str = "webauthn"
    label: str
    passkey: bool
    detail: str = "registered; it can be used at your next sign-in"


class AuthenticationOptionsRequest(s.Strict):
    ticket: s.Opaque | None = None


class AuthenticationVerifyRequest(s.Strict):
    ticket: s.Opaque
    credential: CredentialJson
    device: s.DeviceInfo | None = None


def _options(start: CeremonyStart) -> CeremonyOptionsResponse:
    return CeremonyOptionsResponse(
        ticket=start.ticket, expires_in=start.expires_in, options=json.loads(start.options_json)
    )


def _registration_error(refused: Refused) -> TradeguardError:
    if refused.reason is WebAuthnRefusal.AUTHENTICATOR_NOT_ALLOWED:
        return AuthenticatorNotAllowed("use a security key or passkey of an approved model")
    if refused.reason is WebAuthnRefusal.INVALID_TICKET:
        return WebAuthnRegistrationRejected(
            "the registration challenge is invalid, used or expired; request new options"
        )
    return WebAuthnRegistrationRejected("the authenticator's response was not accepted")


def _authentication_error(refused: Refused) -> TradeguardError:
    if refused.reason is WebAuthnRefusal.THROTTLED:
        return TooManyRequests(
            THROTTLED_DETAIL, retry_after_seconds=refused.retry_after_seconds or 1
        )
    if refused.reason is WebAuthnRefusal.INVALID_TICKET:
        return Unauthorized("the sign-in challenge is invalid, used or expired; start again")
    if refused.reason is WebAuthnRefusal.NOT_ENROLLED:
        return Unauthorized("that method is not available for this sign-in")
    # One answer for an unknown credential, a bad signature, a missing user verification, a
    # suspected clone and a locked account: the caller learns nothing about which it was (the
    # owner of a suspected clone is told by email).
    return WebAuthnAuthenticationRejected("the passkey or security key was not accepted")


@router.post(
    "/register/options",
    operation_id="auth.webauthn.register.options",
    responses=problems(409),
    **guarded(AUTHENTICATED),
)
async def registration_options(
    body: RegistrationOptionsRequest,
    request: Request,
    services: Services,
    webauthn: WebAuthn,
    principal: CurrentPrincipal,
) -> CeremonyOptionsResponse:
    """Start registering a security key or passkey: options for the browser and a ticket."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        start = await webauthn.registration_options(
            session,
            user=user,
            state=principal.state,
            passkey=body.passkey,
            label=body.label,
            request=request_info(request),
        )
    return _options(start)


@router.post(
    "/register/verify",
    status_code=201,
    operation_id="auth.webauthn.register.verify",
    **guarded(AUTHENTICATED),
)
async def register(
    body: RegistrationVerifyRequest,
    request: Request,
    services: Services,
    webauthn: WebAuthn,
    principal: CurrentPrincipal,
) -> RegisteredResponse:
    """Finish registering: the browser's credential with the ticket."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        outcome = await webauthn.register(
            session,
            user=user,
            state=principal.state,
            ticket=body.ticket,
            response=body.credential,
            request=request_info(request),
        )
    if isinstance(outcome, Refused):
        raise _registration_error(outcome)
    return RegisteredResponse(
        factor_id=outcome.factor_id, label=outcome.label, passkey=outcome.passkey
    )


@router.post(
    "/authenticate/options",
    operation_id="auth.webauthn.authenticate.options",
    responses=problems(401, 429),
    **public_route(),
)
async def authentication_options(
    request: Request,
    services: Services,
    webauthn: WebAuthn,
    body: AuthenticationOptionsRequest | None = None,
) -> CeremonyOptionsResponse:
    """Start a passkey sign-in, or a WebAuthn second factor for an MFA ticket: options."""
    async with services.unit_of_work() as session:
        outcome = await webauthn.authentication_options(
            session, ticket=body.ticket if body else None, request=request_info(request)
        )
    if isinstance(outcome, Refused):
        raise _authentication_error(outcome)
    return _options(outcome)


@router.post(
    "/authenticate/verify",
    operation_id="auth.webauthn.authenticate.verify",
    responses=problems(401, 429),
    **public_route(),
)
async def authenticate(
    body: AuthenticationVerifyRequest, request: Request, services: Services, webauthn: WebAuthn
) -> s.TokenResponse:
    """Sign in with a passkey: the browser's assertion with the ticket gives tokens."""
    device = body.device or s.DeviceInfo()
    info = request_info(
        request,
        device_token=device.device_token,
        device_attributes={
            **device.model_dump(exclude={"device_token"}),
            "user_agent": request.headers.get("user-agent"),
        },
    )
    async with services.unit_of_work() as session:
        outcome = await webauthn.login_with_passkey(
            session, ticket=body.ticket, response=body.credential, request=info
        )
    if isinstance(outcome, Refused):
        raise _authentication_error(outcome)
    return _tokens(outcome)


@router.post(
    "/step-up/options",
    operation_id="auth.webauthn.step_up.options",
    responses=problems(409, 429),
    **guarded(AUTHENTICATED),
)
async def step_up_options(
    request: Request, services: Services, webauthn: WebAuthn, principal: CurrentPrincipal
) -> CeremonyOptionsResponse:
    """Start a step-up with a passkey or security key: options for the browser and a ticket.

    The ticket works once, in this session only; send it back with the assertion to
    POST /api/v1/auth/mfa/step-up (method "webauthn").
    """
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        outcome = await webauthn.step_up_options(
            session, user=user, state=principal.state, request=request_info(request)
        )
    if isinstance(outcome, Denied):
        raise refusal_error(outcome)
    if isinstance(outcome, Refused) and outcome.reason is WebAuthnRefusal.NOT_ENROLLED:
        # The caller is signed in (a 401 would tell a client to drop its token): they just
        # have no key to step up with.
        raise Conflict(
            "no passkey or security key is registered; step up with an authenticator app "
            "or a backup code, or register a key first"
        )
    if isinstance(outcome, Refused):
        raise _authentication_error(outcome)
    return _options(outcome)
