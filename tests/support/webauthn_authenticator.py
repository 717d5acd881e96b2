"""A software WebAuthn authenticator for tests: ES256 and Ed25519, with attestation.

It builds the same bytes a real authenticator and browser would (W3C WebAuthn Level 3
sections 5.8.1 clientDataJSON, 6.1 authenticator data, 6.5 attestation objects) so the
relying-party code under test cannot tell the difference. Knobs: signature counter,
user-verification flag, backup flags, a different RP ID, and `clone()` for a copy of the same
key whose counter falls behind the original.

Attestation: asked for "none" it answers "none", as browsers do. Asked for "direct" it answers
with `attestation`: "packed" (full basic attestation: an attestation certificate issued by a
test vendor's root, `AttestationCA`, with the section 8.2.1 fields and the AAGUID extension),
"self" (packed, signed by the credential key itself, no certificate) or "none".
`metadata_document` writes the FIDO MDS3-style catalogue that trusts a test vendor's models.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import struct
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

COSE_ES256 = -7
COSE_EDDSA = -8

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40

AAGUID_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
# The model every SoftwareAuthenticator claims unless told otherwise; `default_metadata_document`
# lists it under the shared test vendor's root.
TEST_AAGUID = uuid.UUID("7e57ab1e-0000-4000-8000-00000000a77e").bytes


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
class AttestationCA:
    """A test authenticator vendor: a self-signed root that issues attestation certificates."""

    name: str = "Tradeguard Test Attestation Root"
    key: ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    certificate: x509.Certificate = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def root_base64(self) -> str:
        """The root as FIDO metadata lists it: base64 (not base64url) DER."""
        return base64.b64encode(self.certificate.public_bytes(Encoding.DER)).decode("ascii")

    def issue(
        self,
        aaguid: bytes | None,
        *,
        organizational_unit: str = "Authenticator Attestation",
        ca: bool = False,
        aaguid_critical: bool = False,
    ) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """An attestation key and its DER certificate (WebAuthn section 8.2.1 by default).

        `aaguid` None leaves the AAGUID extension out (it is optional); the other knobs make
        certificates that break one requirement each.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tradeguard Test Vendor"),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, organizational_unit),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Test Key Attestation"),
                    ]
                )
            )
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if aaguid is not None:
            # id-fido-gen-ce-aaguid: an OCTET STRING wrapping the 16-byte AAGUID.
            builder = builder.add_extension(
                x509.UnrecognizedExtension(AAGUID_EXTENSION_OID, b"\x04\x10" + aaguid),
                critical=aaguid_critical,
            )
        certificate = builder.sign(self.key, hashes.SHA256())
        return key, certificate.public_bytes(Encoding.DER)


@cache
def shared_attestation_ca() -> AttestationCA:
    """The test vendor every SoftwareAuthenticator is certified by unless given another."""
    return AttestationCA()


def metadata_entry(
    aaguid: bytes,
    ca: AttestationCA,
    *,
    description: str = "Tradeguard Test Security Key",
    statuses: tuple[str, ...] = ("FIDO_CERTIFIED_L1",),
) -> dict[str, Any]:
    """One FIDO MDS3 BLOB payload entry (section 3.1.1) trusting `ca` for `aaguid`."""
    model = str(uuid.UUID(bytes=aaguid))
    return {
        "aaguid": model,
        "metadataStatement": {
            "aaguid": model,
            "description": description,
            "attestationTypes": ["basic_full"],
            "attestationRootCertificates": [ca.root_base64()],
        },
        "statusReports": [
            {"status": status, "effectiveDate": f"2024-01-{day:02d}"}
            for day, status in enumerate(statuses, start=1)
        ],
    }


def metadata_document(*entries: dict[str, Any]) -> str:
    """A FIDO MDS3 BLOB payload (section 3.1.6) with these entries, as JSON text."""
    return json.dumps({"no": 1, "nextUpdate": "2099-01-01", "entries": list(entries)})


def default_metadata_document() -> str:
    """The catalogue the test settings use: the default test model under the test root."""
    return metadata_document(metadata_entry(TEST_AAGUID, shared_attestation_ca()))


@dataclass
class SoftwareAuthenticator:
    """One credential on one authenticator; `create` makes it, `get` uses it."""

    algorithm: int = COSE_ES256
    aaguid: bytes = TEST_AAGUID
    sign_count: int = 0
    # Increment per assertion; 0 models authenticators that never count (many passkeys).
    counter_step: int = 1
    user_verified: bool = True
    backup_eligible: bool = False
    backed_up: bool = False
    transports: tuple[str, ...] = ("usb",)
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    user_handle: bytes | None = None
    # What to answer when the relying party asks for attestation ("direct", "indirect").
    attestation: Literal["packed", "self", "none"] = "packed"
    attestation_ca: AttestationCA | None = None  # None: the shared test vendor
    # The AAGUID written into the attestation certificate; None: this authenticator's own.
    certified_aaguid: bytes | None = None
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
        fmt, statement = self._attestation_statement(
            str(options.get("attestation", "none")), auth_data, client_data
        )
        attestation_object = cbor2.dumps({"fmt": fmt, "attStmt": statement, "authData": auth_data})
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

    def _attestation_statement(
        self, conveyance: str, auth_data: bytes, client_data: bytes
    ) -> tuple[str, dict[str, Any]]:
        """Section 8.2 "packed" (full or self) when attestation is asked for, else "none"."""
        if conveyance == "none" or self.attestation == "none":
            return "none", {}
        signed = auth_data + hashlib.sha256(client_data).digest()
        if self.attestation == "self":
            return "packed", {"alg": self.algorithm, "sig": self._sign(signed)}
        ca = self.attestation_ca or shared_attestation_ca()
        certified = self.aaguid if self.certified_aaguid is None else self.certified_aaguid
        key, certificate = ca.issue(certified)
        signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return "packed", {"alg": COSE_ES256, "sig": signature, "x5c": [certificate]}

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
