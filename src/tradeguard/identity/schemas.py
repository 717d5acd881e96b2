"""API request and response bodies for identity (pydantic v2, extra fields refused)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Secret = Annotated[str, Field(min_length=1, max_length=1024)]
# A password being set: at most the policy's 256 characters, so the documented contract is the
# enforced one. (Too short or too weak is the policy's answer, after the sign-up quota has
# counted the attempt: rejected sign-ups must count.)
NewPassword = Annotated[
    str,
    Field(min_length=1, max_length=256, description="12 to 256 characters, not a common one."),
]
# Checked as an address by the service (email-validator, with a clear 422); the schema says so.
EmailAddress = Annotated[
    str, Field(min_length=3, max_length=254, json_schema_extra={"format": "email"})
]
Code = Annotated[str, Field(min_length=4, max_length=32)]
Opaque = Annotated[str, Field(min_length=16, max_length=128)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


NEW_DEVICE_HELP = (
    "A new device token when this sign-in is from a device not recognised before (null when "
    "the request's token was recognised). Store it and send it back as `device.device_token` "
    "on every later sign-in: that is how this client is recognised (no new device, no "
    "'new sign-in' email) and, once authorized by a second factor, exempt from lockouts "
    "caused by failures elsewhere."
)


class DeviceInfo(Strict):
    """What the client says about itself at sign-in; only the device token is trusted."""

    device_token: Opaque | None = Field(
        default=None,
        description=(
            "The device token a previous sign-in of this client returned. Sent back, it "
            "identifies this device; without it the sign-in counts as from a new device "
            "(matched only loosely, by fingerprint, to a recent unauthorized one)."
        ),
    )
    platform: Annotated[str, Field(max_length=64)] | None = None
    language: Annotated[str, Field(max_length=35)] | None = None
    timezone: Annotated[str, Field(max_length=64)] | None = None
    screen: Annotated[str, Field(max_length=32)] | None = None
    app_version: Annotated[str, Field(max_length=32)] | None = None


class RegisterRequest(Strict):
    username: Annotated[str, Field(min_length=3, max_length=32)]
    email: EmailAddress
    password: NewPassword


class RegisterResponse(Strict):
    status: Literal["verification_sent"] = "verification_sent"
    detail: str = "If the details are valid, a verification email is on its way."


class TokenRequest(Strict):
    token: Opaque


class LoginRequest(Strict):
    login: Annotated[str, Field(min_length=1, max_length=254)]
    password: Secret
    device: DeviceInfo | None = Field(
        default=None,
        description="The client's device token (from an earlier sign-in) and attributes.",
    )


class ResendVerificationRequest(Strict):
    email: Annotated[str, Field(min_length=3, max_length=254)]


class TokenResponse(Strict):
    status: Literal["authenticated"] = "authenticated"
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name
    expires_in: int
    session_id: str
    device_token: str | None = Field(default=None, description=NEW_DEVICE_HELP)


class MfaRequiredResponse(Strict):
    status: Literal["mfa_required"] = "mfa_required"
    ticket: str
    methods: list[str]
    expires_in: int
    device_token: str | None = Field(default=None, description=NEW_DEVICE_HELP)


# What POST /login answers, told apart by `status`.
LoginResponse = Annotated[TokenResponse | MfaRequiredResponse, Field(discriminator="status")]

MfaMethod = Literal["totp", "backup_code", "email", "sms", "webauthn"]


class MfaVerifyRequest(Strict):
    ticket: Opaque
    method: MfaMethod
    code: Code | None = None
    assertion: dict[str, object] | None = None


class MfaSendRequest(Strict):
    ticket: Opaque
    method: Literal["email", "sms"]


class CodeStepUp(Strict):
    method: Literal["totp", "backup_code"]
    code: Code


class WebAuthnStepUp(Strict):
    """The answer to POST /api/v1/auth/webauthn/step-up/options: its ticket and the assertion."""

    method: Literal["webauthn"]
    ticket: Opaque
    assertion: Annotated[dict[str, object], Field(min_length=1, max_length=8)]


# What POST /mfa/step-up takes, told apart by `method`.
StepUpRequest = Annotated[CodeStepUp | WebAuthnStepUp, Field(discriminator="method")]


class RefreshRequest(Strict):
    refresh_token: Opaque


class SessionView(Strict):
    id: str
    created_ns: str
    last_seen_ns: str
    expires_ns: str
    amr: list[str]
    ip: str | None
    user_agent: str | None
    device_id: str | None
    current: bool


class DeviceView(Strict):
    id: str
    name: str
    authorized: bool
    created_ns: str
    last_seen_ns: str
    last_ip: str | None


class FactorView(Strict):
    id: str
    kind: str
    label: str
    status: str
    created_ns: str
    last_used_ns: str | None
    restricted: bool


class TotpEnrolResponse(Strict):
    factor_id: str
    secret: str
    otpauth_uri: str
    qr_png_base64: str


class ConfirmRequest(Strict):
    factor_id: Annotated[str, Field(min_length=1, max_length=36)]
    code: Code


class CodeRequest(Strict):
    code: Code


class SmsEnrolRequest(Strict):
    phone: Annotated[str, Field(min_length=8, max_length=16)]


class PendingFactorResponse(Strict):
    factor_id: str
    detail: str


class BackupCodesResponse(Strict):
    codes: list[str]
    detail: str = "Store these codes somewhere safe; each works once and they are not shown again."


class IpAllowlistRequest(Strict):
    cidrs: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=50)]


class IpAllowlistResponse(Strict):
    cidrs: list[str]


class PasswordChangeRequest(Strict):
    current_password: Secret
    new_password: NewPassword


class EmailChangeRequest(Strict):
    new_email: EmailAddress


class PasswordResetRequest(Strict):
    email: EmailAddress


class PasswordResetConfirm(Strict):
    token: Opaque
    new_password: NewPassword
    method: Literal["totp", "backup_code"] | None = None
    code: Code | None = None


class Accepted(Strict):
    status: Literal["accepted"] = "accepted"
    detail: str


class ConsoleCodeResponse(Strict):
    """A console code for `--as` at the command line: shown once, single use."""

    code: str
    expires_in: int


class StepUpAccepted(Accepted):
    """A confirmed step-up, with an access token that carries what it proved (amr "hwk"
    and "mfa", and the permissions that follow) so the client need not refresh first; the
    refresh token is unchanged."""

    access_token: str | None = None
    expires_in: int | None = None


class FactorSummary(Strict):
    id: str
    kind: str
    label: str
    status: str


class SessionSummary(Strict):
    id: str
    amr: list[str]
    permissions: list[str]
    device_authorized: bool


class ProfileResponse(Strict):
    id: str
    username: str
    email: str
    role: str
    email_verified: bool
    created_ns: str
    factors: list[FactorSummary]
    session: SessionSummary


class Jwk(BaseModel):
    """A public key (RFC 7517 section 4; OKP keys: RFC 8037)."""

    model_config = ConfigDict(extra="allow")

    kty: str
    kid: str
    use: str | None = None
    alg: str | None = None


class JwkSet(Strict):
    keys: list[Jwk]
