"""Identity HTTP API under /api/v1/auth (paths are stable: external clients rely on them)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from tradeguard.access.domain import Permission
from tradeguard.core.errors import (
    CodeExpired,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from tradeguard.identity import repository
from tradeguard.identity import schemas as s
from tradeguard.identity.devices import plain_text, user_agent_text
from tradeguard.identity.errors import WebAuthnAuthenticationRejected
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.factors import TotpEnrolment
from tradeguard.identity.guard import (
    AUTHENTICATED,
    CurrentPrincipal,
    Principal,
    Services,
    guarded,
    problems,
    public_route,
    request_info,
    state_cache,
)
from tradeguard.identity.ip_allowlist import allowed, normalize
from tradeguard.identity.models import User
from tradeguard.identity.sessions import (
    CONSOLE_CODE_SECONDS,
    Denied,
    Failure,
    Method,
    MfaChallenge,
    TokenPair,
    refusal_error,
)
from tradeguard.identity.webauthn_service import Refused, WebAuthnRefusal, WebAuthnService

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
# Routes outside /api/v1/auth: the JWKS document and the caller's profile.
jwks_router = APIRouter(tags=["auth"])

IdPath = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[0-9a-f-]+$")]
GENERIC_LOGIN_FAILURE = "invalid username or password"


def _tokens(pair: TokenPair) -> s.TokenResponse:
    return s.TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        session_id=pair.session_id,
        device_token=pair.device_token,
    )


def _raise_denied(denied: Denied) -> None:
    if denied.failure in {Failure.THROTTLED, Failure.ACCOUNT_LOCKED}:
        raise refusal_error(denied)
    if denied.failure is Failure.TICKET_EXPIRED:
        raise CodeExpired("the sign-in has expired; sign in again")
    if denied.failure in {Failure.INVALID_CREDENTIALS, Failure.IP_NOT_ALLOWED}:
        # One answer for unknown user, wrong password, locked account and refused address.
        raise Unauthorized(GENERIC_LOGIN_FAILURE)
    if denied.failure is Failure.WRONG_CODE:
        raise Unauthorized("that code or key was not accepted")
    if denied.failure is Failure.METHOD_NOT_ENROLLED:
        raise Unauthorized("that method is not available for this sign-in")
    if denied.failure is Failure.INACTIVE:
        raise Unauthorized("signed out after inactivity; sign in again")
    if denied.failure is Failure.REFRESH_REUSED:
        raise Unauthorized("refresh token already used; the session was ended for safety")
    raise Unauthorized("the ticket or token is invalid or expired; sign in again")


async def _user(services: Services, session: Any, principal: Principal) -> User:
    user = await repository.user_by_id(session, principal.user_id)
    if user is None:
        raise Unauthorized("the session has ended; sign in again", bearer_error="invalid_token")
    return user


# Registration and email ---------------------------------------------------------------


@router.post(
    "/register",
    status_code=201,
    operation_id="auth.register",
    responses=problems(409, 429, 503),
    **public_route(),
)
async def register(
    body: s.RegisterRequest, request: Request, services: Services
) -> s.RegisterResponse:
    """Sign up as a trader; a verification link is emailed.

    A taken email gets the same answer (its owner is told by email); a taken username is 409.
    """
    info = request_info(request)
    # The attempt is counted in a unit of work of its own, so a sign-up rejected below
    # (taken username, weak password) still counts towards the network's quota.
    async with services.unit_of_work() as session:
        wait = await services.accounts.sign_up_refused(session, request=info)
    if wait:
        raise TooManyRequests(
            "too many sign-ups from this network; try again later", retry_after_seconds=wait
        )
    async with services.unit_of_work() as session:
        await services.accounts.register(
            session,
            username=body.username,
            email=body.email,
            password=body.password,
            request=info,
        )
    return s.RegisterResponse()


@router.post(
    "/email/verify", operation_id="auth.email.verify", responses=problems(401), **public_route()
)
async def verify_email(body: s.TokenRequest, request: Request, services: Services) -> s.Accepted:
    """Confirm the email address with the emailed token."""
    async with services.unit_of_work() as session:
        ok = await services.accounts.verify_email(
            session, token=body.token, request=request_info(request)
        )
    if not ok:
        raise Unauthorized("the verification link is invalid or expired; request a new one")
    return s.Accepted(detail="email address verified")


@router.post(
    "/email/verify/resend",
    status_code=202,
    operation_id="auth.email.verify.resend",
    responses=problems(429),
    **public_route(),
)
async def resend_verification(
    body: s.ResendVerificationRequest, request: Request, services: Services
) -> s.Accepted:
    """Send a new verification link. The answer is the same whether or not the address has an
    account (or one still to verify); links sent earlier keep working until they expire."""
    async with services.unit_of_work() as session:
        wait = await services.accounts.resend_verification(
            session, email=body.email, request=request_info(request)
        )
    if wait:
        raise TooManyRequests(
            "too many verification emails requested; try again later", retry_after_seconds=wait
        )
    return s.Accepted(detail="if that address has an account to verify, a new link is on its way")


# Login ----------------------------------------------------------------------------------


@router.post(
    "/login",
    operation_id="auth.login",
    response_model=s.LoginResponse,
    responses=problems(401, 429),
    **public_route(),
)
async def login(
    body: s.LoginRequest, request: Request, services: Services
) -> s.TokenResponse | s.MfaRequiredResponse:
    """Sign in with a password: tokens, or `mfa_required` with a ticket and the methods.

    Unknown user, wrong password and locked account all get the same 401.
    """
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
        outcome = await services.auth.login(
            session, login=body.login, password=body.password, request=info
        )
    if isinstance(outcome, Denied):
        _raise_denied(outcome)
    if isinstance(outcome, MfaChallenge):
        return s.MfaRequiredResponse(
            ticket=outcome.ticket,
            methods=outcome.methods,
            expires_in=outcome.expires_in,
            device_token=outcome.device_token,
        )
    assert isinstance(outcome, TokenPair)  # noqa: S101 - the union is exhausted above
    return _tokens(outcome)


@router.post(
    "/mfa/send", operation_id="auth.mfa.send", responses=problems(401, 429), **public_route()
)
async def send_login_code(
    body: s.MfaSendRequest, request: Request, services: Services
) -> s.Accepted:
    """Send an email or SMS code for a pending sign-in (MFA ticket)."""
    async with services.unit_of_work() as session:
        denied = await services.auth.send_login_code(
            session, ticket=body.ticket, method=Method(body.method), request=request_info(request)
        )
    if denied is not None:
        _raise_denied(denied)
    return s.Accepted(detail=f"a code was sent by {body.method}; it expires in 5 minutes")


@router.post(
    "/mfa/verify", operation_id="auth.mfa.verify", responses=problems(401, 429), **public_route()
)
async def verify_mfa(
    body: s.MfaVerifyRequest, request: Request, services: Services
) -> s.TokenResponse:
    """Complete a sign-in with the MFA ticket and one second factor: tokens."""
    verifier = None
    if body.method == "webauthn":
        webauthn = request.app.state.webauthn
        verifier = webauthn.login_assertion_verifier(body.assertion or {}, request_info(request))
    async with services.unit_of_work() as session:
        outcome = await services.auth.verify_login(
            session,
            ticket=body.ticket,
            method=Method(body.method),
            code=body.code,
            request=request_info(request),
            webauthn_verifier=verifier,
        )
    if isinstance(outcome, Denied):
        _raise_denied(outcome)
    assert isinstance(outcome, TokenPair)  # noqa: S101 - the union is exhausted above
    return _tokens(outcome)


@router.post(
    "/mfa/step-up",
    operation_id="auth.mfa.step_up",
    responses=problems(401, 429),
    **guarded(AUTHENTICATED),
)
async def step_up(
    body: s.StepUpRequest, request: Request, services: Services, principal: CurrentPrincipal
) -> s.StepUpAccepted:
    """Re-confirm a second factor before a sensitive action (valid for a few minutes).

    A TOTP or backup code, or (method "webauthn") a passkey or security key answering the
    challenge from POST /api/v1/auth/webauthn/step-up/options. The answer carries a new
    access token for this session that includes the factor just proved (a staff member's
    permissions after a security-key step-up), so no refresh is needed; the refresh token
    is unchanged.
    """
    outcome: Denied | Refused | None
    async with services.unit_of_work() as session:
        if isinstance(body, s.WebAuthnStepUp):
            user = await _user(services, session, principal)
            webauthn: WebAuthnService = request.app.state.webauthn
            outcome = await webauthn.step_up(
                session,
                user=user,
                state=principal.state,
                ticket=body.ticket,
                response=body.assertion,
                request=request_info(request),
            )
        else:
            outcome = await services.auth.step_up(
                session,
                user_id=principal.user_id,
                session_id=principal.session_id,
                method=Method(body.method),
                code=body.code,
                request=request_info(request),
            )
        fresh = (
            None
            if outcome is not None
            else await services.auth.fresh_access_token(
                session, user_id=principal.user_id, session_id=principal.session_id
            )
        )
    state_cache(request).drop(principal.session_id)
    if isinstance(outcome, Denied):
        _raise_denied(outcome)
    if isinstance(outcome, Refused):
        # One answer whatever the cause (the owner of a suspected clone is told by email),
        # except a challenge that is used or stale, which can simply be asked for again.
        if outcome.reason is WebAuthnRefusal.INVALID_TICKET:
            raise WebAuthnAuthenticationRejected(
                "the step-up challenge is invalid, used or expired; request new options"
            )
        raise WebAuthnAuthenticationRejected("the passkey or security key was not accepted")
    return s.StepUpAccepted(
        detail="confirmed; sensitive actions are allowed for the next few minutes",
        access_token=fresh[0] if fresh else None,
        expires_in=fresh[1] if fresh else None,
    )


@router.post(
    "/console-code",
    status_code=201,
    operation_id="auth.console_code",
    responses=problems(403),
    # Held by every staff member at every level, and by nobody without a security-key
    # session (IAC-3): the guard itself keeps out customers and password-only staff.
    **guarded(Permission.ACCESS_REQUEST),
)
async def console_code(
    request: Request, services: Services, principal: CurrentPrincipal
) -> s.ConsoleCodeResponse:
    """A single-use code for acting as yourself at the command line (`--as`), valid for 5
    minutes; shown once. Staff only, from a session signed in or stepped up with a WebAuthn
    security key or passkey (IAC-3)."""
    async with services.unit_of_work() as session:
        code = await services.auth.issue_console_code(
            session,
            user_id=principal.user_id,
            session_id=principal.session_id,
            request=request_info(request),
        )
    if code is None:
        raise Forbidden("console codes are for staff signed in with their security key or passkey")
    return s.ConsoleCodeResponse(code=code, expires_in=CONSOLE_CODE_SECONDS)


@router.post(
    "/token/refresh", operation_id="auth.token.refresh", responses=problems(401), **public_route()
)
async def refresh(body: s.RefreshRequest, request: Request, services: Services) -> s.TokenResponse:
    """Rotate a refresh token: new tokens; reusing a spent one ends the session."""
    async with services.unit_of_work() as session:
        outcome = await services.auth.refresh(
            session, refresh_token=body.refresh_token, request=request_info(request)
        )
    if isinstance(outcome, Denied):
        # The family was revoked: its access tokens must stop working at once here too.
        state_cache(request).drop(*outcome.revoked_sessions)
        _raise_denied(outcome)
    assert isinstance(outcome, TokenPair)  # noqa: S101 - the union is exhausted above
    return _tokens(outcome)


@router.post("/logout", status_code=204, operation_id="auth.logout", **guarded(AUTHENTICATED))
async def logout(request: Request, services: Services, principal: CurrentPrincipal) -> Response:
    """Sign out: end this session."""
    async with services.unit_of_work() as session:
        await services.auth.revoke(
            session,
            user_id=principal.user_id,
            session_id=principal.session_id,
            request=request_info(request),
            reason="logout",
        )
    state_cache(request).drop(principal.session_id)
    return Response(status_code=204)


# Sessions and devices -------------------------------------------------------------------


@router.get("/sessions", operation_id="auth.sessions.list", **guarded(AUTHENTICATED))
async def list_sessions(services: Services, principal: CurrentPrincipal) -> list[s.SessionView]:
    """List your active sessions."""
    async with services.unit_of_work() as session:
        rows = await repository.sessions_of(session, principal.user_id, services.clock.now_ns())
    return [
        s.SessionView(
            id=r.id,
            created_ns=str(r.created_ns),
            last_seen_ns=str(r.last_seen_ns),
            expires_ns=str(r.expires_ns),
            amr=r.amr.split(),
            ip=r.ip,
            user_agent=user_agent_text(r.user_agent),
            device_id=r.device_id,
            current=r.id == principal.session_id,
        )
        for r in rows
    ]


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    operation_id="auth.sessions.revoke",
    **guarded(AUTHENTICATED),
)
async def revoke_session(
    session_id: IdPath, request: Request, services: Services, principal: CurrentPrincipal
) -> Response:
    """End one of your sessions."""
    async with services.unit_of_work() as session:
        revoked = await services.auth.revoke(
            session,
            user_id=principal.user_id,
            session_id=session_id,
            request=request_info(request),
            reason="user_revoked",
        )
    if not revoked:
        raise NotFound("no active session with that id")
    state_cache(request).drop(*revoked)
    return Response(status_code=204)


@router.get("/devices", operation_id="auth.devices.list", **guarded(AUTHENTICATED))
async def list_devices(services: Services, principal: CurrentPrincipal) -> list[s.DeviceView]:
    """List the devices that signed in to your account."""
    async with services.unit_of_work() as session:
        rows = await repository.devices_of(session, principal.user_id)
    return [
        s.DeviceView(
            id=d.id,
            name=plain_text(d.name, limit=120) or "unknown client",
            authorized=d.authorized_ns is not None,
            created_ns=str(d.created_ns),
            last_seen_ns=str(d.last_seen_ns),
            last_ip=d.last_ip,
        )
        for d in rows
    ]


@router.post(
    "/devices/{device_id}", operation_id="auth.devices.authorize", **guarded(AUTHENTICATED)
)
async def authorize_device(
    device_id: IdPath, request: Request, services: Services, principal: CurrentPrincipal
) -> s.Accepted:
    """Authorize one of your devices for trading (needs a fresh second factor)."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        await services.factors.require_fresh_factor(session, user=user, state=principal.state)
        device = await repository.device_of(session, user.id, device_id)
        if device is None:
            raise NotFound("no device with that id")
        if device.authorized_ns is None:
            device.authorized_ns = services.clock.now_ns()
            await services.deps.audit(
                session,
                IdentityEvent.DEVICE_AUTHORIZED,
                user_id=user.id,
                request=request_info(request),
                data={"device_id": device.id, "by": "step_up"},
            )
    return s.Accepted(detail="device authorized")


@router.delete(
    "/devices/{device_id}",
    status_code=204,
    operation_id="auth.devices.revoke",
    **guarded(AUTHENTICATED),
)
async def revoke_device(
    device_id: IdPath, request: Request, services: Services, principal: CurrentPrincipal
) -> Response:
    """Revoke a device and end its sessions."""
    info = request_info(request)
    async with services.unit_of_work() as session:
        device = await repository.device_of(session, principal.user_id, device_id)
        if device is None:
            raise NotFound("no device with that id")
        device.revoked_ns = services.clock.now_ns()
        revoked = await services.auth.revoke(
            session,
            user_id=principal.user_id,
            device_id=device.id,
            request=info,
            reason="device_revoked",
        )
        await services.deps.audit(
            session,
            IdentityEvent.DEVICE_REVOKED,
            user_id=principal.user_id,
            request=info,
            data={"device_id": device.id, "sessions_revoked": len(revoked)},
        )
    state_cache(request).drop(*revoked)
    return Response(status_code=204)


@router.get("/ip-allowlist", operation_id="auth.ip_allowlist.get", **guarded(AUTHENTICATED))
async def get_ip_allowlist(
    services: Services, principal: CurrentPrincipal
) -> s.IpAllowlistResponse:
    """Your IP allowlist (empty: any address)."""
    return s.IpAllowlistResponse(cidrs=list(principal.state.ip_allowlist))


@router.put("/ip-allowlist", operation_id="auth.ip_allowlist.replace", **guarded(AUTHENTICATED))
async def put_ip_allowlist(
    body: s.IpAllowlistRequest, request: Request, services: Services, principal: CurrentPrincipal
) -> s.IpAllowlistResponse:
    """Replace your IP allowlist (needs a fresh second factor; must include your address)."""
    cidrs = normalize(body.cidrs)
    info = request_info(request)
    if cidrs and not allowed(cidrs, info.ip):
        from tradeguard.core.errors import InvalidInput  # noqa: PLC0415

        raise InvalidInput(
            "the list must include the address you are using now, or you would be locked out"
        )
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        await services.factors.require_fresh_factor(session, user=user, state=principal.state)
        user.ip_allowlist = json.dumps(cidrs) if cidrs else None
        await services.deps.audit(
            session,
            IdentityEvent.IP_ALLOWLIST_CHANGED,
            user_id=user.id,
            request=info,
            personal={"cidrs": cidrs},
        )
        # Every session of the user carries the list in its cached state, not only this one:
        # a session in use from an address now outside the list must be refused at once.
        live = await repository.sessions_of(session, user.id, services.clock.now_ns())
    state_cache(request).drop(principal.session_id, *(row.id for row in live))
    return s.IpAllowlistResponse(cidrs=cidrs)


# Factors --------------------------------------------------------------------------------


@router.post(
    "/email/proof",
    status_code=202,
    operation_id="auth.email.proof.send",
    responses=problems(429),
    **guarded(AUTHENTICATED),
)
async def send_email_proof(
    request: Request, services: Services, principal: CurrentPrincipal
) -> s.Accepted:
    """Email a code proving this session controls the mailbox (before the first factor)."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        await services.factors.send_email_proof(
            session, user=user, state=principal.state, request=request_info(request)
        )
    return s.Accepted(detail="a code was emailed to your verified address; it expires in 5 minutes")


@router.post(
    "/email/proof/verify",
    operation_id="auth.email.proof.verify",
    responses=problems(404, 429),
    **guarded(AUTHENTICATED),
)
async def verify_email_proof(
    body: s.CodeRequest, request: Request, services: Services, principal: CurrentPrincipal
) -> s.Accepted:
    """Check the emailed proof code."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        ok = await services.factors.verify_email_proof(
            session, user=user, state=principal.state, code=body.code, request=request_info(request)
        )
    if not ok:
        raise Unauthorized("that code was not accepted")
    return s.Accepted(detail="email confirmed; you can add your first sign-in factor now")


@router.get("/mfa", operation_id="auth.mfa.list", **guarded(AUTHENTICATED))
async def list_factors(services: Services, principal: CurrentPrincipal) -> list[s.FactorView]:
    """List your second factors."""
    async with services.unit_of_work() as session:
        factors = await services.factors.list_factors(session, user_id=principal.user_id)
    return [
        s.FactorView(
            id=f.id,
            kind=f.kind,
            label=f.label,
            status=f.status,
            created_ns=str(f.created_ns),
            last_used_ns=str(f.last_used_ns) if f.last_used_ns else None,
            restricted=f.restricted,
        )
        for f in factors
    ]


@router.post(
    "/mfa/totp/enroll",
    status_code=201,
    operation_id="auth.mfa.totp.enroll",
    responses=problems(429),
    **guarded(AUTHENTICATED),
)
async def enrol_totp(
    request: Request, services: Services, principal: CurrentPrincipal
) -> s.TotpEnrolResponse:
    """Start enrolling an authenticator app: its secret and QR code."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        enrolment = await services.factors.enrol_totp(
            session, user=user, state=principal.state, request=request_info(request)
        )
    if isinstance(enrolment, Denied):
        _raise_denied(enrolment)
    assert isinstance(enrolment, TotpEnrolment)  # noqa: S101 - the union is exhausted above
    return s.TotpEnrolResponse(
        factor_id=enrolment.factor_id,
        secret=enrolment.secret,
        otpauth_uri=enrolment.otpauth_uri,
        qr_png_base64=enrolment.qr_png_base64,
    )


@router.post(
    "/mfa/totp/confirm",
    operation_id="auth.mfa.totp.confirm",
    responses=problems(404),
    **guarded(AUTHENTICATED),
)
async def confirm_totp(
    body: s.ConfirmRequest, request: Request, services: Services, principal: CurrentPrincipal
) -> s.Accepted:
    """Activate a pending authenticator app with a code from it."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        ok = await services.factors.confirm_totp(
            session,
            user=user,
            state=principal.state,
            factor_id=body.factor_id,
            code=body.code,
            request=request_info(request),
        )
    if not ok:
        raise Unauthorized("that code was not accepted; check the time on your device")
    return s.Accepted(detail="authenticator app enrolled; sign in again to use it")


@router.post(
    "/mfa/backup-codes",
    status_code=201,
    operation_id="auth.mfa.backup_codes.regenerate",
    responses=problems(409),
    **guarded(AUTHENTICATED),
)
async def backup_codes(
    request: Request, services: Services, principal: CurrentPrincipal
) -> s.BackupCodesResponse:
    """Issue a new set of backup codes (the old ones stop working)."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        codes = await services.factors.regenerate_backup_codes(
            session, user=user, state=principal.state, request=request_info(request)
        )
    return s.BackupCodesResponse(codes=codes)


@router.post(
    "/mfa/email/enroll",
    status_code=201,
    operation_id="auth.mfa.email.enroll",
    responses=problems(409, 429),
    **guarded(AUTHENTICATED),
)
async def enrol_email(
    request: Request, services: Services, principal: CurrentPrincipal
) -> s.PendingFactorResponse:
    """Start enrolling email codes as a factor: a code is emailed."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        factor_id = await services.factors.enrol_otp(
            session,
            user=user,
            state=principal.state,
            method=Method.EMAIL,
            phone=None,
            request=request_info(request),
        )
    if isinstance(factor_id, Denied):
        _raise_denied(factor_id)
    assert isinstance(factor_id, str)  # noqa: S101 - the union is exhausted above
    return s.PendingFactorResponse(factor_id=factor_id, detail="a code was emailed to you")


@router.post(
    "/mfa/sms/enroll",
    status_code=201,
    operation_id="auth.mfa.sms.enroll",
    responses=problems(409, 429),
    **guarded(AUTHENTICATED),
)
async def enrol_sms(
    body: s.SmsEnrolRequest, request: Request, services: Services, principal: CurrentPrincipal
) -> s.PendingFactorResponse:
    """Start enrolling SMS codes as a factor: a code is texted."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        factor_id = await services.factors.enrol_otp(
            session,
            user=user,
            state=principal.state,
            method=Method.SMS,
            phone=body.phone,
            request=request_info(request),
        )
    if isinstance(factor_id, Denied):
        _raise_denied(factor_id)
    assert isinstance(factor_id, str)  # noqa: S101 - the union is exhausted above
    return s.PendingFactorResponse(factor_id=factor_id, detail="a code was sent by SMS")


async def _confirm_otp(
    body: s.ConfirmRequest, request: Request, services: Services, principal: Principal
) -> s.Accepted:
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        ok = await services.factors.confirm_otp(
            session,
            user=user,
            state=principal.state,
            factor_id=body.factor_id,
            code=body.code,
            request=request_info(request),
        )
    if not ok:
        raise Unauthorized("that code was not accepted")
    return s.Accepted(detail="factor enrolled")


@router.post(
    "/mfa/email/confirm",
    operation_id="auth.mfa.email.confirm",
    responses=problems(404),
    **guarded(AUTHENTICATED),
)
async def confirm_email_factor(
    body: s.ConfirmRequest, request: Request, services: Services, principal: CurrentPrincipal
) -> s.Accepted:
    """Activate a pending email factor with the emailed code."""
    return await _confirm_otp(body, request, services, principal)


@router.post(
    "/mfa/sms/confirm",
    operation_id="auth.mfa.sms.confirm",
    responses=problems(404),
    **guarded(AUTHENTICATED),
)
async def confirm_sms_factor(
    body: s.ConfirmRequest, request: Request, services: Services, principal: CurrentPrincipal
) -> s.Accepted:
    """Activate a pending SMS factor with the texted code."""
    return await _confirm_otp(body, request, services, principal)


@router.delete(
    "/mfa/{factor_id}",
    status_code=204,
    operation_id="auth.mfa.remove",
    responses=problems(409),
    **guarded(AUTHENTICATED),
)
async def remove_factor(
    factor_id: IdPath, request: Request, services: Services, principal: CurrentPrincipal
) -> Response:
    """Remove a second factor (needs a fresh second factor; never your last one)."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        await services.factors.remove(
            session,
            user=user,
            state=principal.state,
            factor_id=factor_id,
            request=request_info(request),
        )
    return Response(status_code=204)


# Password and email changes (step-up required) --------------------------------------------


@router.put(
    "/password",
    operation_id="auth.password.change",
    responses=problems(503),
    **guarded(AUTHENTICATED),
)
async def change_password(
    body: s.PasswordChangeRequest,
    request: Request,
    services: Services,
    principal: CurrentPrincipal,
) -> s.Accepted:
    """Change your password (needs a fresh second factor); other sessions end."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        await services.factors.require_fresh_factor(session, user=user, state=principal.state)
        revoked = await services.accounts.change_password(
            session,
            user=user,
            current_session_id=principal.session_id,
            current_password=body.current_password,
            new_password=body.new_password,
            request=request_info(request),
        )
    if revoked is None:
        raise Unauthorized("the current password is not correct")
    state_cache(request).drop(*revoked)
    return s.Accepted(detail="password changed; your other sessions were signed out")


@router.put("/email", status_code=202, operation_id="auth.email.change", **guarded(AUTHENTICATED))
async def change_email(
    body: s.EmailChangeRequest, request: Request, services: Services, principal: CurrentPrincipal
) -> s.Accepted:
    """Change your email address (needs a fresh second factor): the new one must confirm."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        await services.factors.require_fresh_factor(session, user=user, state=principal.state)
        await services.accounts.request_email_change(
            session, user=user, new_email=body.new_email, request=request_info(request)
        )
    return s.Accepted(detail="a confirmation link was sent to the new address")


@router.post(
    "/email/change/confirm",
    operation_id="auth.email.change.confirm",
    responses=problems(401),
    **public_route(),
)
async def confirm_email_change(
    body: s.TokenRequest, request: Request, services: Services
) -> s.Accepted:
    """Confirm a new email address with the token sent to it."""
    async with services.unit_of_work() as session:
        ok = await services.accounts.confirm_email_change(
            session, token=body.token, request=request_info(request)
        )
    if not ok:
        raise Unauthorized("the confirmation link is invalid or expired; start again")
    return s.Accepted(detail="email address changed")


# Recovery -------------------------------------------------------------------------------


@router.post(
    "/password/reset",
    status_code=202,
    operation_id="auth.password.reset.request",
    responses=problems(429),
    **public_route(),
)
async def request_reset(
    body: s.PasswordResetRequest, request: Request, services: Services
) -> s.Accepted:
    """Ask for a password-reset link (the same answer whether or not the address has one)."""
    async with services.unit_of_work() as session:
        await services.accounts.request_password_reset(
            session, email=body.email, request=request_info(request)
        )
    return s.Accepted(detail="if that address has an account, a reset link is on its way")


@router.post(
    "/password/reset/confirm",
    operation_id="auth.password.reset.confirm",
    responses=problems(401, 403, 429, 503),
    **public_route(),
)
async def confirm_reset(
    body: s.PasswordResetConfirm, request: Request, services: Services
) -> s.Accepted:
    """Set a new password with the reset token (and a second factor when one is enrolled)."""
    async with services.unit_of_work() as session:
        revoked = await services.accounts.reset_password(
            session,
            token=body.token,
            new_password=body.new_password,
            method=body.method,
            code=body.code,
            request=request_info(request),
        )
    if revoked is None:
        raise Unauthorized("the reset link or code is invalid or expired")
    state_cache(request).drop(*revoked)
    return s.Accepted(detail="password changed; every session was signed out")


@jwks_router.get("/.well-known/jwks.json", operation_id="auth.jwks", **public_route())
async def jwks(services: Services) -> s.JwkSet:
    """The public keys (JWK Set, RFC 7517) that verify access tokens."""
    return s.JwkSet.model_validate(services.keys.jwks())


@jwks_router.get(
    "/api/v1/me",
    tags=["identity"],
    operation_id="identity.me",
    responses=problems(401),
    **guarded(AUTHENTICATED),
)
async def me(services: Services, principal: CurrentPrincipal) -> s.ProfileResponse:
    """The caller's own profile and what this session may do (nothing secret)."""
    async with services.unit_of_work() as session:
        user = await _user(services, session, principal)
        factors = await services.factors.list_factors(session, user_id=user.id)
    return s.ProfileResponse(
        id=user.id,
        username=user.username,
        email=user.email,
        role=user.role,
        email_verified=user.email_verified_ns is not None,
        created_ns=str(user.created_ns),
        factors=[
            s.FactorSummary(id=f.id, kind=f.kind, label=f.label, status=f.status) for f in factors
        ],
        session=s.SessionSummary(
            id=principal.session_id,
            amr=list(principal.amr),
            permissions=sorted(principal.permissions),
            device_authorized=principal.state.device_authorized,
        ),
    )
