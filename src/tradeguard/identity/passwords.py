"""NIST SP 800-63B-4 password rules (section 3.1.1.2): length, normalization, blocklists.

No composition rules and no forced rotation, as the standard requires. What is refused: too
short, too long (so hashing cannot be used for denial of service), predictable (zxcvbn's
frequency lists of common passwords, names, words and keyboard patterns), built from the
user's own identifiers, or present in a breach corpus. Reasons never echo the password.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from zxcvbn import zxcvbn

from tradeguard.identity.breached_passwords import BreachedPasswordChecker

# zxcvbn's matching is super-linear in the password length, so it refuses input above 72
# characters. Longer passwords are scored on their first 72 characters: a long password whose
# first 72 characters are predictable is refused, which is conservative and cheap.
_ZXCVBN_MAX_CHARS = 72

# Identifiers shorter than this ("al", "x1") would refuse too many unrelated passwords.
_MIN_IDENTIFIER_CHARS = 3


class PasswordRejection(StrEnum):
    TOO_SHORT = "TOO_SHORT"
    TOO_LONG = "TOO_LONG"
    TOO_PREDICTABLE = "TOO_PREDICTABLE"
    CONTAINS_PERSONAL_INFO = "CONTAINS_PERSONAL_INFO"
    BREACHED = "BREACHED"


@dataclass(frozen=True, slots=True)
class PasswordVerdict:
    """The outcome of a policy check; `message` is safe to show the user."""

    reason: PasswordRejection | None = None
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.reason is None


ACCEPTED = PasswordVerdict()


def normalize_password(password: str) -> str:
    """Unicode NFKC, so the same password typed on different keyboards hashes the same."""
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """Length limits and blocklist checks; lengths count Unicode code points after NFKC."""

    min_length: int = 12
    max_length: int = 256
    # Four bytes per code point at most in UTF-8; the byte cap bounds the hashing input.
    max_utf8_bytes: int = 1024
    # zxcvbn score 0-4; 3 means "safely unguessable: moderate protection from offline attack".
    min_score: int = 3

    def __post_init__(self) -> None:
        if not 8 <= self.min_length <= self.max_length:
            # SP 800-63B-4 sets 8 as the floor even where passwords are one of several factors.
            raise ValueError("min_length must be at least 8 and at most max_length")
        if not 0 <= self.min_score <= 4:
            raise ValueError("min_score must be between 0 and 4")

    def check_length(self, password: str) -> PasswordVerdict:
        """Length rules alone; cheap, so it runs before anything that costs CPU."""
        # Bound the work NFKC itself does before normalizing untrusted input.
        if len(password) > 4 * self.max_length:
            return _too_long(self.max_length)
        normalized = normalize_password(password)
        if len(normalized) > self.max_length:
            return _too_long(self.max_length)
        if len(normalized.encode("utf-8")) > self.max_utf8_bytes:
            return _too_long(self.max_length)
        if len(normalized) < self.min_length:
            return PasswordVerdict(
                PasswordRejection.TOO_SHORT,
                f"Use at least {self.min_length} characters; a few unrelated words work well.",
            )
        return ACCEPTED

    def check(self, password: str, *, user_inputs: Iterable[str] = ()) -> PasswordVerdict:
        """Every local rule: length, the user's own identifiers, zxcvbn's frequency lists."""
        verdict = self.check_length(password)
        if not verdict.accepted:
            return verdict
        normalized = normalize_password(password)
        identifiers = _identifier_variants(user_inputs)
        folded = normalized.casefold()
        if any(identifier in folded for identifier in identifiers):
            return PasswordVerdict(
                PasswordRejection.CONTAINS_PERSONAL_INFO,
                "Do not use your username or email address in your password.",
            )
        result = zxcvbn(normalized[:_ZXCVBN_MAX_CHARS], user_inputs=sorted(identifiers))
        if int(result["score"]) < self.min_score:
            # zxcvbn's warnings are fixed sentences ("This is similar to a commonly used
            # password."), never fragments of the input.
            warning = str(result["feedback"].get("warning") or "")
            parts = ("This password is too easy to guess.", warning, "Try a longer phrase.")
            return PasswordVerdict(
                PasswordRejection.TOO_PREDICTABLE, " ".join(p for p in parts if p)
            )
        return ACCEPTED

    async def assess(
        self,
        password: str,
        *,
        user_inputs: Iterable[str] = (),
        breach_checker: BreachedPasswordChecker,
    ) -> PasswordVerdict:
        """Local rules first, then the breach corpus (the only check that leaves the process)."""
        verdict = self.check(password, user_inputs=user_inputs)
        if not verdict.accepted:
            return verdict
        if await breach_checker.is_breached(normalize_password(password)):
            return PasswordVerdict(
                PasswordRejection.BREACHED,
                "This password has appeared in a data breach; choose a different one.",
            )
        return ACCEPTED


def _too_long(max_length: int) -> PasswordVerdict:
    return PasswordVerdict(PasswordRejection.TOO_LONG, f"Use at most {max_length} characters.")


def _identifier_variants(user_inputs: Iterable[str]) -> set[str]:
    """The user's identifiers and the parts of an email address, case-folded."""
    variants: set[str] = set()
    for raw in user_inputs:
        value = normalize_password(raw).casefold().strip()
        candidates = {value}
        if "@" in value:
            local = value.partition("@")[0]
            candidates.add(local)
            # "alice.smith" -> "alice", "smith": people build passwords from name parts.
            candidates.update(local.replace("_", ".").replace("-", ".").split("."))
        variants.update(c for c in candidates if len(c) >= _MIN_IDENTIFIER_CHARS)
    return variants
