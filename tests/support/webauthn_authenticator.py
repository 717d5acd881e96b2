"""A software WebAuthn authenticator for tests: ES256 and Ed25519, "none" attestation.

It builds the same bytes a real authenticator and browser would (W3C WebAuthn Level 3
sections 5.8.1 clientDataJSON, 6.1 authenticator data, 6.5 attestation objects) so the
relying-party code under test cannot tell the difference. Knobs: signature counter,
user-verification flag, backup flags, a different RP ID, and `clone()` for a copy of the same
key whose counter falls behind the original.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

COSE_ES256 = -7
COSE_EDDSA = -8

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cose_public_key(private_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        raw = private_key.public_key().public_bytes_raw()
        # RFC 9053 section 7.2: kty OKP (1), alg -8, crv Ed25519 (6), x.
        return bytes(cbor2.dumps({1: 1, 3: COSE_EDDSA, -1: 6, -2: raw}))
    numbers = private_key.public_key().public_numbers()
    # RFC 9053 section 7.1: kty EC2 (2), alg -7, crv P-256 (1), x, y.
    return bytes(
        cbor2.dumps(
            {
                1: 2,
                3: COSE_ES256,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
    )


@dataclass
class SoftwareAuthenticator:
    """One credential on one authenticator; `create` makes it, `get` uses it."""

    algorithm: int = COSE_ES256
    aaguid: bytes = field(default_factory=lambda: bytes(16))
    sign_count: int = 0
    # Increment per assertion; 0 models authenticators that never count (many passkeys).
    counter_step: int = 1
    user_verified: bool = True
    backup_eligible: bool = False
    backed_up: bool = False
    transports: tuple[str, ...] = ("usb",)
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    user_handle: bytes | None = None
    private_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = field(init=False)

    def __post_init__(self) -> None:
        if self.algorithm == COSE_ES256:
            self.private_key = ec.generate_private_key(ec.SECP256R1())
        elif self.algorithm == COSE_EDDSA:
            self.private_key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"unsupported COSE algorithm {self.algorithm}")

    def clone(self) -> SoftwareAuthenticator:
        """A copy with the same key and the counter as it is now (an extracted key)."""
        return copy.copy(self)

    def _flags(self, *, attested: bool) -> int:
        flags = FLAG_UP
        if self.user_verified:
            flags |= FLAG_UV
        if self.backup_eligible:
            flags |= FLAG_BE
        if self.backed_up:
            flags |= FLAG_BS
        if attested:
            flags |= FLAG_AT
        return flags

    def _authenticator_data(self, rp_id: str, *, attested: bool) -> bytes:
        data = hashlib.sha256(rp_id.encode("utf-8")).digest()
        data += bytes([self._flags(attested=attested)]) + struct.pack(">I", self.sign_count)
        if attested:
            data += self.aaguid + struct.pack(">H", len(self.credential_id)) + self.credential_id
            data += _cose_public_key(self.private_key)
        return data

    def _sign(self, message: bytes) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(message)
        return self.private_key.sign(message, ec.ECDSA(hashes.SHA256()))

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False},
            separators=(",", ":"),
        ).encode("utf-8")

    def create(self, options_json: str, origin: str, *, rp_id: str | None = None) -> str:
        """Answer navigator.credentials.create() options with a registration response."""
        options: dict[str, Any] = json.loads(options_json)
        self.user_handle = b64url_decode(options["user"]["id"])
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        auth_data = self._authenticator_data(rp_id or options["rp"]["id"], attested=True)
        attestation_object = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(bytes(attestation_object)),
                    "transports": list(self.transports),
                },
                "clientExtensionResults": {},
                "authenticatorAttachment": "cross-platform",
            }
        )

    def get(self, options_json: str, origin: str, *, rp_id: str | None = None) -> str:
        """Answer navigator.credentials.get() options with an assertion, advancing the counter."""
        options: dict[str, Any] = json.loads(options_json)
        self.sign_count += self.counter_step
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = self._authenticator_data(rp_id or options["rpId"], attested=False)
        signature = self._sign(auth_data + hashlib.sha256(client_data).digest())
        response: dict[str, Any] = {
            "authenticatorData": b64url(auth_data),
            "clientDataJSON": b64url(client_data),
            "signature": b64url(signature),
        }
        if self.user_handle is not None:
            response["userHandle"] = b64url(self.user_handle)
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": response,
                "clientExtensionResults": {},
                "authenticatorAttachment": "cross-platform",
            }
        )
