"""JWT access tokens (RFC 9068 profile, RFC 8725 practices) and opaque refresh tokens.

Access tokens live 15 minutes (SESS-1) and carry the role and permissions (RBAC-3); refresh
tokens live 24 hours (SESS-2) and are stored only as a SHA-256 hash. Verification trusts
nothing in the token header to choose how to verify it: the algorithm allow-list is
configuration, the key comes from our ring by `kid`, and that key's own algorithm is the only
one accepted for it. Time comes from the injected clock, not from PyJWT's `time.time()`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import jwt

from tradeguard.core.clock import NS_PER_SECOND, Clock
from tradeguard.identity.errors import InvalidToken
from tradeguard.identity.signing_keys import SUPPORTED_ALGORITHMS, SigningKeyRing

ACCESS_TOKEN_TTL_SECONDS = 15 * 60
REFRESH_TOKEN_TTL_SECONDS = 24 * 60 * 60
# RFC 9068 section 2.1; section 4 lets resource servers accept the media-type form too.
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
_ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
MAX_LEEWAY_SECONDS = 30
# Far above any token we issue; refuses megabyte inputs before any parsing.
MAX_TOKEN_CHARS = 8192
# Verified tokens remembered (by SHA-256 of the token) so a client's next request with the
# same token costs a dictionary lookup, not a signature check.
CLAIMS_CACHE_SIZE = 100_000
_REQUIRED_REGISTERED = ["iss", "aud", "sub", "exp", "iat", "nbf", "jti"]
REFRESH_TOKEN_PREFIX = "tgr_"  # noqa: S105 - a public marker, not a secret


class TokenRefusal(StrEnum):
    """Why an access token was refused: counted (web/metrics.py), never told the client."""

    SIGNATURE = "signature"  # signed by a key of ours, but the signature does not verify
    UNKNOWN_KEY = "unknown_key"  # no key of ours by that kid, or one of another algorithm
    EXPIRED = "expired"  # outside its validity window, or claiming a longer life than policy
    MALFORMED = "malformed"  # not a JWT of our profile (type, algorithm, claims, size)


class _Refused(Exception):  # carries a TokenRefusal inside the verifier, never raised out
    def __init__(self, refusal: TokenRefusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified content of an access token; times are Unix seconds."""

    subject: str
    session_id: str
    role: str
    permissions: tuple[str, ...]
    amr: tuple[str, ...]
    jwt_id: str
    issuer: str
    audience: str
    issued_at: int
    not_before: int
    expires_at: int
    key_id: str


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str = field(repr=False)
    claims: AccessClaims


class AccessTokenIssuer:
    """Signs access tokens with the ring's active key."""

    def __init__(
        self,
        *,
        keys: SigningKeyRing,
        clock: Clock,
        issuer: str,
        audience: str,
        ttl_seconds: int = ACCESS_TOKEN_TTL_SECONDS,
    ) -> None:
        if not 0 < ttl_seconds <= ACCESS_TOKEN_TTL_SECONDS:
            raise ValueError("access tokens live at most 15 minutes (SESS-1)")
        self._keys = keys
        self._clock = clock
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds

    def issue(
        self,
        *,
        subject: str,
        session_id: str,
        role: str,
        permissions: Sequence[str],
        amr: Sequence[str],
    ) -> IssuedAccessToken:
        key = self._keys.active
        now = self._clock.now_ns() // NS_PER_SECOND
        claims = AccessClaims(
            subject=subject,
            session_id=session_id,
            role=role,
            permissions=tuple(permissions),
            amr=tuple(amr),
            jwt_id=secrets.token_urlsafe(16),
            issuer=self._issuer,
            audience=self._audience,
            issued_at=now,
            not_before=now,
            expires_at=now + self._ttl,
            key_id=key.kid,
        )
        payload = {
            "iss": claims.issuer,
            "aud": claims.audience,
            "sub": claims.subject,
            "iat": claims.issued_at,
            "nbf": claims.not_before,
            "exp": claims.expires_at,
            "jti": claims.jwt_id,
            "sid": claims.session_id,
            "role": claims.role,
            "permissions": list(claims.permissions),
            "amr": list(claims.amr),
        }
        token = jwt.encode(
            payload,
            key.private_key,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": ACCESS_TOKEN_TYPE},
        )
        return IssuedAccessToken(token=token, claims=claims)


class AccessTokenVerifier:
    """Verifies access tokens; every failure is the same `InvalidToken`."""

    def __init__(
        self,
        *,
        keys: SigningKeyRing,
        clock: Clock,
        issuer: str,
        audience: str,
        algorithms: Collection[str] = SUPPORTED_ALGORITHMS,
        leeway_seconds: int = 0,
        max_lifetime_seconds: int = ACCESS_TOKEN_TTL_SECONDS,
    ) -> None:
        allowed = frozenset(algorithms)
        # Only asymmetric algorithms we implement can be configured: "none" and HS* never.
        if not allowed or not allowed <= set(SUPPORTED_ALGORITHMS):
            raise ValueError(f"algorithms must be a non-empty subset of {SUPPORTED_ALGORITHMS}")
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway_seconds must be between 0 and {MAX_LEEWAY_SECONDS}")
        self._keys = keys
        self._clock = clock
        self._issuer = issuer
        self._audience = audience
        self._algorithms = allowed
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        self._cache: OrderedDict[bytes, AccessClaims] = OrderedDict()
        self._by_session: dict[str, set[bytes]] = {}
        # Told why each token was refused (the security-signal metrics): a run of bad
        # signatures or unknown keys is someone forging tokens, not clients with old ones.
        self.on_refused: Callable[[TokenRefusal], None] | None = None

    def verify(self, token: str) -> AccessClaims:
        """The token's claims if it is authentic, current and meant for us.

        A token verified once is remembered until it expires (keyed by its SHA-256, never the
        token itself); the cached answer is re-checked against the clock and the key ring on
        every use, so expiry and key removal still apply, and `forget_sessions` drops it when
        its session is revoked.
        """
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            self._refused(TokenRefusal.MALFORMED)
            raise InvalidToken()
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            now = self._clock.now_ns() // NS_PER_SECOND
            if (
                now < cached.expires_at + self._leeway
                and now >= cached.not_before - self._leeway
                and self._keys.verification_key(cached.key_id) is not None
            ):
                return cached
            self._evict(digest)
        try:
            claims = self._verify(token)
        except _Refused as refused:
            self._refused(refused.refusal)
            raise InvalidToken() from None
        except InvalidToken:
            self._refused(TokenRefusal.MALFORMED)
            raise
        except jwt.InvalidSignatureError as exc:
            self._refused(TokenRefusal.SIGNATURE)
            raise InvalidToken() from exc
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            # PyJWT's messages name the failed check, never the token; the detail stays generic.
            self._refused(TokenRefusal.MALFORMED)
            raise InvalidToken() from exc
        self._remember(digest, claims)
        return claims

    def _refused(self, refusal: TokenRefusal) -> None:
        if self.on_refused is not None:
            self.on_refused(refusal)

    def forget_sessions(self, session_ids: Iterable[str]) -> None:
        """Drop remembered tokens of revoked sessions."""
        for session_id in session_ids:
            for digest in self._by_session.pop(session_id, set()):
                self._cache.pop(digest, None)

    def _remember(self, digest: bytes, claims: AccessClaims) -> None:
        self._cache[digest] = claims
        self._by_session.setdefault(claims.session_id, set()).add(digest)
        while len(self._cache) > CLAIMS_CACHE_SIZE:
            old, old_claims = self._cache.popitem(last=False)
            self._discard_index(old, old_claims.session_id)

    def _evict(self, digest: bytes) -> None:
        claims = self._cache.pop(digest, None)
        if claims is not None:
            self._discard_index(digest, claims.session_id)

    def _discard_index(self, digest: bytes, session_id: str) -> None:
        members = self._by_session.get(session_id)
        if members is not None:
            members.discard(digest)
            if not members:
                del self._by_session[session_id]

    def _verify(self, token: str) -> AccessClaims:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise InvalidToken()
        header = _unverified_header(token)
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken()
        if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
            raise InvalidToken()
        key = self._keys.verification_key(kid) if isinstance(kid, str) else None
        # The key decides the algorithm: a token cannot ask an ES256 key to be read as EdDSA.
        if key is None or key.algorithm != alg:
            raise _Refused(TokenRefusal.UNKNOWN_KEY)
        payload = jwt.decode(
            token,
            key.public_key,
            algorithms=[key.algorithm],
            audience=self._audience,
            issuer=self._issuer,
            options={
                "require": _REQUIRED_REGISTERED,
                "strict_aud": True,
                # Checked below against the injected clock instead of time.time().
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
        self._check_times(payload)
        return _claims_from_payload(payload, key_id=key.kid)

    def _check_times(self, payload: dict[str, Any]) -> None:
        exp, nbf, iat = (_int_claim(payload, name) for name in ("exp", "nbf", "iat"))
        now = self._clock.now_ns() / NS_PER_SECOND
        leeway = self._leeway
        if now >= exp + leeway or now < nbf - leeway or iat > now + leeway:
            raise _Refused(TokenRefusal.EXPIRED)
        # A token claiming a longer life than policy allows was not issued by our issuer.
        if exp - iat > self._max_lifetime:
            raise _Refused(TokenRefusal.EXPIRED)


def _unverified_header(token: str) -> dict[str, Any]:
    segment = token.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken() from exc
    if not isinstance(header, dict):
        raise InvalidToken()
    return header


def _int_claim(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidToken()
    return value


def _str_claim(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken()
    return value


def _str_list_claim(payload: dict[str, Any], name: str) -> tuple[str, ...]:
    value = payload.get(name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidToken()
    return tuple(value)


def _claims_from_payload(payload: dict[str, Any], *, key_id: str) -> AccessClaims:
    return AccessClaims(
        subject=_str_claim(payload, "sub"),
        session_id=_str_claim(payload, "sid"),
        role=_str_claim(payload, "role"),
        permissions=_str_list_claim(payload, "permissions"),
        amr=_str_list_claim(payload, "amr"),
        jwt_id=_str_claim(payload, "jti"),
        issuer=_str_claim(payload, "iss"),
        audience=_str_claim(payload, "aud"),
        issued_at=_int_claim(payload, "iat"),
        not_before=_int_claim(payload, "nbf"),
        expires_at=_int_claim(payload, "exp"),
        key_id=key_id,
    )


def new_refresh_token() -> tuple[str, bytes]:
    """An opaque refresh token (256 random bits) and the hash to store and look it up by."""
    # The prefix lets secret scanners recognise a leaked token; it adds no entropy.
    token = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> bytes:
    """SHA-256 of the token.

    Unsalted and fast on purpose: the token has 256 bits of entropy, so no search can find
    it from the hash, and a deterministic hash is what lets the database index the lookup.
    """
    return hashlib.sha256(token.encode("utf-8")).digest()
