"""RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30-second steps) for authenticator apps (AUTH-6).

Verification accepts one step either side of now (RFC 6238 section 5.2 recommends at most one
step of network delay) and never accepts a step at or before the last step the user already
spent (section 5.2: "the verifier MUST NOT accept the second attempt of the same OTP"). The
caller stores the step `verify` returns, including for the enrolment code.
"""

from __future__ import annotations

import hmac
import io
from dataclasses import dataclass, field

import pyotp
import segno

from tradeguard.core.clock import NS_PER_SECOND

STEP_SECONDS = 30
DIGITS = 6
# 160 bits, the HMAC-SHA-1 output length recommended by RFC 4226 section 4 (R6).
SECRET_BITS = 160
ACCEPTED_SKEW_STEPS = 1


def new_secret() -> str:
    """A fresh base32 secret of SECRET_BITS bits from the OS CSPRNG."""
    return pyotp.random_base32(length=SECRET_BITS // 5)


def time_step(now_ns: int) -> int:
    """The RFC 6238 counter T = floor((now - T0) / X) with T0 = 0."""
    return (now_ns // NS_PER_SECOND) // STEP_SECONDS


def code_at_step(secret: str, step: int, *, digits: int = DIGITS) -> str:
    """The code an authenticator shows during `step`."""
    return pyotp.TOTP(secret, digits=digits, interval=STEP_SECONDS).generate_otp(step)


def is_well_formed(code: str, *, digits: int = DIGITS) -> bool:
    """ASCII digits of the right length; `str.isdigit` alone also accepts '²' and '٣'."""
    return len(code) == digits and code.isascii() and code.isdigit()


def verify(
    secret: str,
    code: str,
    *,
    now_ns: int,
    last_used_step: int | None,
    digits: int = DIGITS,
) -> int | None:
    """The time step `code` belongs to if it is valid and unspent, else None."""
    # Users type "123 456"; spaces carry no information. Anything else malformed is refused
    # before any HMAC is computed.
    candidate = code.replace(" ", "")
    if not is_well_formed(candidate, digits=digits):
        return None
    current = time_step(now_ns)
    matched: int | None = None
    # Compute and compare every step in the window, whatever matched earlier, so the time
    # taken does not reveal which step (if any) matched.
    for step in range(current - ACCEPTED_SKEW_STEPS, current + ACCEPTED_SKEW_STEPS + 1):
        expected = code_at_step(secret, step, digits=digits)
        equal = hmac.compare_digest(expected.encode("ascii"), candidate.encode("ascii"))
        unspent = last_used_step is None or step > last_used_step
        if equal and unspent and matched is None:
            matched = step
    return matched


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The otpauth:// URI (Key Uri Format) that authenticator apps scan."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_png(uri: str, *, scale: int = 5) -> bytes:
    """The URI as a QR code PNG; error correction M, enough for screens."""
    buffer = io.BytesIO()
    segno.make_qr(uri, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class TotpFactor:
    """One user's TOTP secret; the secret is stored encrypted by the caller, never logged."""

    secret: str = field(repr=False)

    @classmethod
    def generate(cls) -> TotpFactor:
        return cls(new_secret())

    def provisioning_uri(self, account: str, issuer: str) -> str:
        return provisioning_uri(self.secret, account=account, issuer=issuer)

    def verify(self, code: str, *, now_ns: int, last_used_step: int | None) -> int | None:
        return verify(self.secret, code, now_ns=now_ns, last_used_step=last_used_step)
