"""Out-of-band one-time codes by SMS (AUTH-4) and email (AUTH-5): NIST SP 800-63B-4 3.1.3.

A challenge is an immutable value: `issue` makes one, `verify` returns the next state, and
the caller stores that state (with an optimistic version check) before answering. A code
expires after 5 minutes, is accepted once, and the challenge dies after 5 wrong guesses: with
6 digits an attacker's chance per challenge is 5 in 10^6.

SMS goes over the public telephone network, which SP 800-63B-4 section 3.1.3.3 calls a
RESTRICTED authenticator (SIM swap, number porting, SS7 interception): offer another factor
and tell the user the risk. Email is not an authenticator under SP 800-63B at all; email codes
prove control of the address (AUTH-5, ACCT-2 withdrawal verification), not identity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from tradeguard.core.clock import NS_PER_SECOND

DEFAULT_DIGITS = 6
DEFAULT_TTL_SECONDS = 5 * 60
DEFAULT_MAX_ATTEMPTS = 5
_MIN_PEPPER_BYTES = 32


class OtpChannel(StrEnum):
    SMS = "sms"
    EMAIL = "email"

    @property
    def is_restricted(self) -> bool:
        """True for NIST "restricted" authenticators: they need a risk notice and an alternative."""
        return self in RESTRICTED_CHANNELS


RESTRICTED_CHANNELS = frozenset({OtpChannel.SMS})


class OtpOutcome(StrEnum):
    ACCEPTED = "ACCEPTED"
    WRONG_CODE = "WRONG_CODE"
    MALFORMED = "MALFORMED"
    EXPIRED = "EXPIRED"
    ALREADY_USED = "ALREADY_USED"
    ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"


@dataclass(frozen=True, slots=True)
class OtpChallenge:
    """What is stored for one sent code: never the code itself."""

    challenge_id: str
    channel: OtpChannel
    code_hash: bytes = dataclasses.field(repr=False)
    digits: int
    expires_at_ns: int
    attempts_left: int
    used: bool = False

    @property
    def is_dead(self) -> bool:
        """No code can ever be accepted again for this challenge."""
        return self.used or self.attempts_left <= 0


@dataclass(frozen=True, slots=True)
class OtpVerification:
    outcome: OtpOutcome
    challenge: OtpChallenge

    @property
    def accepted(self) -> bool:
        return self.outcome is OtpOutcome.ACCEPTED


def _hash_code(pepper: bytes, challenge_id: str, code: str) -> bytes:
    # Six digits are only ~20 bits: a plain hash of them falls to a 10^6 search. Keying the
    # hash with the pepper (kept outside the database) makes a leaked row useless, and binding
    # it to the challenge id makes equal codes in different challenges hash differently.
    message = f"{challenge_id}:{code}".encode("ascii")
    return hmac.new(pepper, message, hashlib.sha256).digest()


def issue(
    *,
    channel: OtpChannel,
    now_ns: int,
    pepper: bytes,
    digits: int = DEFAULT_DIGITS,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> tuple[str, OtpChallenge]:
    """A fresh code to send and the challenge to store."""
    if not 6 <= digits <= 8:
        raise ValueError("one-time codes have 6 to 8 digits")
    if len(pepper) < _MIN_PEPPER_BYTES:
        raise ValueError("the pepper must be at least 32 bytes")
    if ttl_seconds <= 0 or max_attempts <= 0:
        raise ValueError("ttl_seconds and max_attempts must be positive")
    code = f"{secrets.randbelow(10**digits):0{digits}d}"
    challenge_id = secrets.token_urlsafe(16)
    challenge = OtpChallenge(
        challenge_id=challenge_id,
        channel=channel,
        code_hash=_hash_code(pepper, challenge_id, code),
        digits=digits,
        expires_at_ns=now_ns + ttl_seconds * NS_PER_SECOND,
        attempts_left=max_attempts,
    )
    return code, challenge


def verify(challenge: OtpChallenge, code: str, *, now_ns: int, pepper: bytes) -> OtpVerification:
    """Check `code` against the challenge and return the outcome and the state to store."""
    if challenge.used:
        return OtpVerification(OtpOutcome.ALREADY_USED, challenge)
    if challenge.attempts_left <= 0:
        return OtpVerification(OtpOutcome.ATTEMPTS_EXHAUSTED, challenge)
    if now_ns >= challenge.expires_at_ns:
        return OtpVerification(OtpOutcome.EXPIRED, challenge)
    candidate = code.strip().replace(" ", "")
    if not (len(candidate) == challenge.digits and candidate.isascii() and candidate.isdigit()):
        # Cannot be the code, so it is not a guess and does not spend an attempt.
        return OtpVerification(OtpOutcome.MALFORMED, challenge)
    expected = challenge.code_hash
    if hmac.compare_digest(expected, _hash_code(pepper, challenge.challenge_id, candidate)):
        return OtpVerification(OtpOutcome.ACCEPTED, dataclasses.replace(challenge, used=True))
    spent = dataclasses.replace(challenge, attempts_left=challenge.attempts_left - 1)
    return OtpVerification(OtpOutcome.WRONG_CODE, spent)
