"""Backup (recovery) codes (AUTH-7): NIST SP 800-63B-4 look-up secrets, section 3.1.2.

Each code is 13 Crockford base32 characters, 65 bits from the OS CSPRNG, shown as
4-4-5 groups (e.g. 7K3M-9QRT-2HX8V). Input is case-insensitive, ignores spaces and
hyphens, and reads I/L as 1 and O as 0 (Crockford's aliases for what people mistype).

Storage: HMAC-SHA-256 under a server-side pepper (a key kept outside the database). A slow
hash buys little here: it exists to make low-entropy human passwords expensive to guess, and
with 65 bits an offline search needs ~2^64 tries per code on average. The pepper adds that a
copy of the database alone cannot test guesses at all. This is a deliberate reading of
SP 800-63B's look-up secret storage rule, whose letter asks for a salted password-hashing
scheme below 112 bits of entropy; a user holds 10 codes and a login tries them all, so Argon2
would cost 10 hashes per attempt. Record it in an ADR if the rule is audited literally.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_LENGTH = 13
BITS_PER_CHAR = 5
ENTROPY_BITS = CODE_LENGTH * BITS_PER_CHAR
DEFAULT_COUNT = 10
_GROUPS = (4, 4, 5)
_ALIASES = str.maketrans({"I": "1", "L": "1", "O": "0"})
_SEPARATORS = str.maketrans("", "", " -")
_MIN_PEPPER_BYTES = 32


def normalize_code(code: str) -> str | None:
    """The canonical 13-character form, or None if it cannot be a backup code."""
    canonical = code.translate(_SEPARATORS).upper().translate(_ALIASES)
    if len(canonical) != CODE_LENGTH or not all(c in ALPHABET for c in canonical):
        return None
    return canonical


def format_code(canonical: str) -> str:
    """Group a canonical code for display in 4-4-5 groups."""
    parts, start = [], 0
    for size in _GROUPS:
        parts.append(canonical[start : start + size])
        start += size
    return "-".join(parts)


class BackupCodeBook:
    """Generates and matches a user's set of single-use backup codes."""

    def __init__(self, pepper: bytes, *, count: int = DEFAULT_COUNT) -> None:
        if len(pepper) < _MIN_PEPPER_BYTES:
            raise ValueError("the pepper must be at least 32 bytes")
        if count < DEFAULT_COUNT:
            raise ValueError("issue at least 10 backup codes")
        self._pepper = pepper
        self.count = count

    def hash_code(self, canonical: str) -> bytes:
        return hmac.new(self._pepper, canonical.encode("ascii"), hashlib.sha256).digest()

    def generate(self) -> tuple[list[str], list[bytes]]:
        """Display-formatted codes for the user (shown once) and their hashes for storage."""
        canonical = [
            "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH)) for _ in range(self.count)
        ]
        return [format_code(c) for c in canonical], [self.hash_code(c) for c in canonical]

    def match(self, code: str, stored_hashes: Sequence[bytes | None]) -> int | None:
        """Index of the stored hash `code` matches; None marks a slot already spent.

        The caller makes the code single-use by clearing that slot (or deleting its row) in
        the same transaction that accepts the login.
        """
        canonical = normalize_code(code)
        if canonical is None:
            return None
        candidate = self.hash_code(canonical)
        matched: int | None = None
        # Compare against every stored code, not just until the first match, so the time taken
        # does not reveal which code (if any) matched. Spent slots compare against a value no
        # code hashes to, so they cost the same as live ones.
        for index, stored in enumerate(stored_hashes):
            reference = stored if stored is not None else bytes(len(candidate))
            if hmac.compare_digest(reference, candidate) and stored is not None and matched is None:
                matched = index
        return matched
