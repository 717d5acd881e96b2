"""Breached-password lookups by k-anonymity (the Have I Been Pwned range API format).

Only the first 5 hex characters of the password's SHA-1 leave the process; the service answers
with every suffix under that prefix and the match happens here. SHA-1 is the format the corpus
is published in, used only as a lookup key, never to store anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Protocol

from tradeguard.identity.errors import BreachCheckUnavailable

PREFIX_LENGTH = 5
_SUFFIX_LENGTH = 35
_HEX_UPPER = frozenset("0123456789ABCDEF")

RangeFetcher = Callable[[str], Awaitable[str]]
"""Fetch the range body for a 5-character uppercase hex prefix (GET /range/{prefix})."""


class BreachedPasswordChecker(Protocol):
    async def is_breached(self, password: str) -> bool:
        """True if the password appears in the breach corpus."""
        ...


class NoBreachCheck:
    """For embedded and offline deployments: nothing is reported as breached."""

    async def is_breached(self, password: str) -> bool:
        return False


class KAnonymityBreachChecker:
    """Asks a range API with the SHA-1 prefix; `min_count` sightings make a password breached."""

    def __init__(self, fetch_range: RangeFetcher, *, min_count: int = 1) -> None:
        if min_count < 1:
            raise ValueError("min_count must be at least 1")
        self._fetch_range = fetch_range
        self._min_count = min_count

    async def is_breached(self, password: str) -> bool:
        digest = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False)
        hexdigest = digest.hexdigest().upper()
        prefix, suffix = hexdigest[:PREFIX_LENGTH], hexdigest[PREFIX_LENGTH:]
        try:
            body = await self._fetch_range(prefix)
        except Exception as exc:
            # Whatever the transport raised; the caller chooses to fail open or closed.
            raise BreachCheckUnavailable() from exc
        return parse_range_response(body).get(suffix, 0) >= self._min_count


def parse_range_response(body: str) -> dict[str, int]:
    """Parse `SUFFIX:COUNT` lines; padding entries (count 0) are kept and never match."""
    counts: dict[str, int] = {}
    for raw_line in body.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        suffix, sep, count = line.partition(":")
        suffix = suffix.upper()
        if (
            not sep
            or len(suffix) != _SUFFIX_LENGTH
            or not set(suffix) <= _HEX_UPPER
            or not count.isascii()
            or not count.isdigit()
        ):
            # A body that is not in the range format cannot be trusted to say "not breached".
            raise BreachCheckUnavailable("The breached-password service sent a malformed reply")
        counts[suffix] = int(count)
    return counts
