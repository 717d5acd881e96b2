"""Asymmetric signing keys for access tokens, their rotation and the JWK Set (RFC 7517).

Keys are Ed25519 ("EdDSA", RFC 8037) by default or P-256 ("ES256"). A key's `kid` is its
RFC 7638 JWK thumbprint, so it follows from the key itself and survives a PEM round trip.
The ring signs with one active key and keeps retired keys for verification until every token
they signed has expired (one access-token lifetime after rotation), then drops them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

SigningAlgorithm = Literal["EdDSA", "ES256"]
SUPPORTED_ALGORITHMS: tuple[SigningAlgorithm, ...] = ("EdDSA", "ES256")

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

# RFC 7638 section 3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_jwk(public_key: PublicKey) -> dict[str, str]:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return dict(OKPAlgorithm.to_jwk(public_key, as_dict=True))
    return dict(ECAlgorithm.to_jwk(public_key, as_dict=True))


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint: SHA-256 over the required members, no whitespace, sorted."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One private signing key with its algorithm and key id."""

    private_key: PrivateKey = field(repr=False)
    algorithm: SigningAlgorithm
    kid: str
    # Derived once: deriving an Ed25519 public key is a scalar multiplication, which would
    # otherwise cost as much as the signature check on every token verified.
    public_key: PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", self.private_key.public_key())

    @classmethod
    def from_private_key(cls, private_key: PrivateKey) -> SigningKey:
        algorithm: SigningAlgorithm
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            algorithm = "EdDSA"
        elif isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
            private_key.curve, ec.SECP256R1
        ):
            algorithm = "ES256"
        else:
            raise ValueError("signing keys are Ed25519 or ECDSA P-256")
        kid = jwk_thumbprint(_public_jwk(private_key.public_key()))
        return cls(private_key=private_key, algorithm=algorithm, kid=kid)

    @classmethod
    def generate(cls, algorithm: SigningAlgorithm = "EdDSA") -> SigningKey:
        if algorithm == "EdDSA":
            return cls.from_private_key(ed25519.Ed25519PrivateKey.generate())
        if algorithm == "ES256":
            return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))
        raise ValueError(f"unsupported signing algorithm: {algorithm!r}")

    @classmethod
    def from_pem(cls, pem: bytes, *, password: bytes | None = None) -> SigningKey:
        """Load a PKCS #8 PEM private key written by `to_pem`."""
        private_key = serialization.load_pem_private_key(pem, password=password)
        if not isinstance(private_key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("signing keys are Ed25519 or ECDSA P-256")
        return cls.from_private_key(private_key)

    def to_pem(self, *, password: bytes | None = None) -> bytes:
        """PKCS #8 PEM; encrypted with `password` when given (the file is a secret either way)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=encryption,
        )

    def public_jwk(self) -> dict[str, str]:
        """The public JWK with kid, alg and use; never any private member."""
        return {
            **_public_jwk(self.public_key),
            "kid": self.kid,
            "alg": self.algorithm,
            "use": "sig",
        }


class SigningKeyRing:
    """The active signing key plus retired keys still trusted for verification."""

    def __init__(self, active: SigningKey, retired: Iterable[SigningKey] = ()) -> None:
        self._active = active
        self._retired: tuple[SigningKey, ...] = tuple(k for k in retired if k.kid != active.kid)
        self._by_kid = self._index()

    @classmethod
    def generate(cls, algorithm: SigningAlgorithm = "EdDSA") -> SigningKeyRing:
        return cls(SigningKey.generate(algorithm))

    @classmethod
    def from_pems(
        cls, active_pem: bytes, retired_pems: Iterable[bytes] = (), *, password: bytes | None = None
    ) -> SigningKeyRing:
        return cls(
            SigningKey.from_pem(active_pem, password=password),
            [SigningKey.from_pem(pem, password=password) for pem in retired_pems],
        )

    def _index(self) -> dict[str, SigningKey]:
        return {key.kid: key for key in (self._active, *self._retired)}

    @property
    def active(self) -> SigningKey:
        return self._active

    @property
    def retired(self) -> tuple[SigningKey, ...]:
        return self._retired

    def rotate(self, algorithm: SigningAlgorithm | None = None) -> SigningKey:
        """Make a new active key; the old one is kept for verification only."""
        new_key = SigningKey.generate(algorithm or self._active.algorithm)
        self._retired = (self._active, *self._retired)
        self._active = new_key
        # Swap in a whole new index so a concurrent lookup sees the old or the new, never half.
        self._by_kid = self._index()
        return new_key

    def adopt(self, other: SigningKeyRing) -> None:
        """Take over another ring's keys (a ring re-read from disk after a rotation).

        Issuers and verifiers hold this object, so they sign and verify with the new keys from
        their next token on, without being rebuilt.
        """
        self._active = other.active
        self._retired = other.retired
        self._by_kid = self._index()

    def drop(self, kid: str) -> None:
        """Stop trusting a retired key; tokens it signed fail verification from now on."""
        if kid == self._active.kid:
            raise ValueError("the active key cannot be dropped; rotate first")
        self._retired = tuple(k for k in self._retired if k.kid != kid)
        self._by_kid = self._index()

    def verification_key(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set for /.well-known/jwks.json: public keys only, active key first."""
        return {"keys": [key.public_jwk() for key in (self._active, *self._retired)]}
