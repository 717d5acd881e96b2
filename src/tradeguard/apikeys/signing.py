"""The canonical request and its HMAC-SHA256 signature (API-3), and the nonce stores (pure
apart from the stores' Redis client).

A signed request carries four headers: `TG-API-KEY` (the key id), `TG-TIMESTAMP` (Unix
milliseconds), `TG-NONCE` (16-64 characters of [A-Za-z0-9_-], random, never reused) and
`TG-SIGNATURE` (lower-case hex HMAC-SHA256 of the canonical request under the key's secret,
the secret's UTF-8 bytes being the HMAC key). The canonical request is these lines joined by
a line feed (no trailing one), modelled on AWS SigV4:

    TG1-HMAC-SHA256
    <method, upper case>
    <path, each segment percent-encoded as in SigV4 (unreserved characters kept)>
    <query: pairs percent-decoded, re-encoded as in SigV4, sorted by name then value, a=b&c=d>
    <hex SHA-256 of the raw body (of the empty string when there is none)>
    <timestamp>
    <nonce>
    <key id>

docs/api-keys.md publishes test vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import zlib
from collections.abc import Callable
from typing import Final, Protocol
from urllib.parse import quote, unquote_to_bytes

from redis.asyncio import Redis

ALGORITHM: Final = "TG1-HMAC-SHA256"
KEY_HEADER: Final = "tg-api-key"
TIMESTAMP_HEADER: Final = "tg-timestamp"
NONCE_HEADER: Final = "tg-nonce"
SIGNATURE_HEADER: Final = "tg-signature"
SIGNED_HEADERS: Final = (KEY_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)

# Recognisable prefixes for secret scanners (docs/api-keys.md gives the patterns).
KEY_ID_PREFIX: Final = "tgk_id_"
SECRET_PREFIX: Final = "tgk_live_"  # noqa: S105 - a prefix, not a secret
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_RANDOM_CHARS: Final = 40  # about 238 bits
CHECKSUM_CHARS: Final = 6
KEY_ID_PATTERN: Final = re.compile(r"tgk_id_[0-9a-f]{24}")
SECRET_PATTERN: Final = re.compile(r"tgk_live_[0-9A-Za-z]{46}")
NONCE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")
SIGNATURE_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
TIMESTAMP_PATTERN: Final = re.compile(r"[0-9]{1,16}")
EMPTY_BODY_SHA256: Final = hashlib.sha256(b"").hexdigest()


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(reversed(chars))


def new_key_id() -> str:
    return KEY_ID_PREFIX + secrets.token_hex(12)


def new_secret() -> str:
    """`tgk_live_` + 40 random base62 characters + a 6-character base62 CRC32 of the rest,
    so a scanner can tell a real token from a look-alike without asking us."""
    body = SECRET_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(SECRET_RANDOM_CHARS))
    return body + _base62(zlib.crc32(body.encode()), CHECKSUM_CHARS)


def well_formed_secret(token: str) -> bool:
    if not SECRET_PATTERN.fullmatch(token):
        return False
    body, checksum = token[:-CHECKSUM_CHARS], token[-CHECKSUM_CHARS:]
    return hmac.compare_digest(_base62(zlib.crc32(body.encode()), CHECKSUM_CHARS), checksum)


def secret_digest(secret: str) -> str:
    """How a secret is found again from itself (a leak report): its SHA-256. The secret has
    over 230 random bits, so no salt or slow hash is needed to keep it from being guessed."""
    return hashlib.sha256(secret.encode()).hexdigest()


# RFC 3986 unreserved characters are kept, everything else is %XX (upper case), as SigV4.
_SAFE: Final = "-_.~"


# Text that encodes to itself: the common case, checked with one regex instead of encoding.
_PLAIN_PATH: Final = re.compile(r"[A-Za-z0-9\-_.~/]+")
_PLAIN_PART: Final = re.compile(r"[A-Za-z0-9\-_.~]*")
_PLAIN_QUERY: Final = re.compile(r"[A-Za-z0-9\-_.~=&]+")


def _encode(value: bytes) -> str:
    return quote(value, safe=_SAFE)


def _reencode(part: str) -> str:
    """A raw query name or value, percent-decoded ('+' is a space) and re-encoded."""
    if _PLAIN_PART.fullmatch(part):
        return part
    return _encode(unquote_to_bytes(part.replace("+", " ")))


def canonical_path(path: str) -> str:
    """The decoded path, each segment percent-encoded ('/' kept)."""
    if _PLAIN_PATH.fullmatch(path):
        return path
    return "/".join(_encode(segment.encode()) for segment in path.split("/")) or "/"


def _pair(part: str) -> tuple[str, str]:
    name, _, value = part.partition("=")
    return name, value


def canonical_query(raw_query: str) -> str:
    """Pairs of the raw query string, percent-decoded ('+' is a space), re-encoded and
    sorted by encoded name, then value; a name without '=' has an empty value."""
    if not raw_query:
        return ""
    if _PLAIN_QUERY.fullmatch(raw_query):
        # Nothing to decode or encode (the common case): only split and sort.
        parts = raw_query.split("&")
        parts.sort(key=_pair)
        return "&".join(part if "=" in part else part + "=" for part in parts if part)
    pairs = sorted(
        (_reencode(name), _reencode(value))
        for name, value in (_pair(part) for part in raw_query.split("&") if part)
    )
    return "&".join(f"{name}={value}" for name, value in pairs)


def canonical_request(
    *,
    method: str,
    path: str,
    query: str,
    body: bytes,
    timestamp_ms: int | str,
    nonce: str,
    key_id: str,
    body_sha256: str | None = None,
) -> str:
    return "\n".join(
        (
            ALGORITHM,
            method.upper(),
            canonical_path(path),
            canonical_query(query),
            body_sha256 if body_sha256 is not None else hashlib.sha256(body).hexdigest(),
            str(timestamp_ms),
            nonce,
            key_id,
        )
    )


def signature(secret: str | bytes, canonical: str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def signature_matches(secret: bytes, canonical: str, presented: str) -> bool:
    """Constant-time comparison of the expected MAC with the presented hex signature."""
    expected = hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, presented)


def sign_headers(
    *,
    key_id: str,
    secret: str,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    timestamp_ms: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers of a signed request (what a client does; docs/api-keys.md)."""
    stamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    once = nonce or secrets.token_urlsafe(24)
    canonical = canonical_request(
        method=method,
        path=path,
        query=query,
        body=body,
        timestamp_ms=stamp,
        nonce=once,
        key_id=key_id,
    )
    return {
        "TG-API-KEY": key_id,
        "TG-TIMESTAMP": str(stamp),
        "TG-NONCE": once,
        "TG-SIGNATURE": signature(secret, canonical),
    }


class NonceStore(Protocol):
    """Remembers nonces for a while; `claim` is true for the first claim of a nonce only."""

    async def claim(self, key_id: str, nonce: str, ttl_ms: int) -> bool: ...


class MemoryNonceStore:
    """For one process: a dict of nonce -> expiry. A claim checks and sets without awaiting,
    so two coroutines of one loop cannot both claim one nonce."""

    MAX_ENTRIES: Final = 1_000_000

    def __init__(self, monotonic_ms: Callable[[], int]) -> None:
        self._now = monotonic_ms
        self._seen: dict[str, int] = {}
        self._next_sweep = 0

    async def claim(self, key_id: str, nonce: str, ttl_ms: int) -> bool:
        now = self._now()
        if now >= self._next_sweep or len(self._seen) >= self.MAX_ENTRIES:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
            self._next_sweep = now + 1000
            if len(self._seen) >= self.MAX_ENTRIES:
                return False  # flooded: refuse rather than forget nonces still live
        name = f"{key_id}:{nonce}"
        expires = self._seen.get(name)
        if expires is not None and expires > now:
            return False
        self._seen[name] = now + ttl_ms
        return True


class RedisNonceStore:
    """For replicas: SET NX with an expiry, one atomic command per claim."""

    PREFIX: Final = "tradeguard:apikeys:nonce:"

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def claim(self, key_id: str, nonce: str, ttl_ms: int) -> bool:
        stored = await self._redis.set(f"{self.PREFIX}{key_id}:{nonce}", b"1", nx=True, px=ttl_ms)
        return bool(stored)
