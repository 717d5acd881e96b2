"""FIDO Metadata Service 3.0 allow-list and attestation trust for staff authenticators (IAC-3).

The catalogue is read from a FIDO MDS3 BLOB payload (section 3.1.6: `{"entries": [...]}`,
each entry a `MetadataBLOBPayloadEntry` with `aaguid`, `metadataStatement` and
`statusReports`) or a trimmed file of the same shape, so an operator can drop in entries
taken from the FIDO Alliance's BLOB. A model is trusted only through the attestation root
certificates of its own entry: a vendor's root never vouches for another vendor's AAGUID.

The certificate checks are those of W3C WebAuthn Level 3 section 8.2.1 (packed attestation
statement certificate requirements) and 8.3.1 (TPM); py_webauthn verifies the signatures and
the chain but not these requirements.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

# FIDO MDS 3.0 section 3.1.4 AuthenticatorStatus values after which the model must not be
# trusted: the vendor revoked it, or its attestation or user keys (or user verification) were
# compromised. Any such report refuses the model, even if a later report follows: a later
# "UPDATE_AVAILABLE" says a fix exists, not that the key in front of us has it.
UNTRUSTED_STATUSES = frozenset(
    {
        "REVOKED",
        "USER_VERIFICATION_BYPASS",
        "ATTESTATION_KEY_COMPROMISE",
        "USER_KEY_REMOTE_COMPROMISE",
        "USER_KEY_PHYSICAL_COMPROMISE",
    }
)
# id-fido-gen-ce-aaguid: the AAGUID an attestation certificate was issued for.
AAGUID_EXTENSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
ATTESTATION_OU = "Authenticator Attestation"
# An operator's file should stay small; the full FIDO BLOB payload is about 10 MB.
MAX_METADATA_BYTES = 32 * 1024 * 1024


class AttestationRefusal(StrEnum):
    """Why a staff authenticator's attestation was not trusted; stable codes for the ledger."""

    NOT_ATTESTED = "NOT_ATTESTED"  # "none", self attestation, or a format without a chain
    UNKNOWN_MODEL = "UNKNOWN_MODEL"  # AAGUID not in the catalogue (or listed without roots)
    REVOKED_MODEL = "REVOKED_MODEL"  # the catalogue reports the model revoked or compromised
    UNTRUSTED_CHAIN = "UNTRUSTED_CHAIN"  # the chain does not lead to the model's listed root
    BAD_CERTIFICATE = "BAD_CERTIFICATE"  # the attestation certificate breaks section 8.2.1


class MetadataInvalid(ValueError):
    """The metadata file cannot be used; the message names the entry, never a certificate."""


@dataclass(frozen=True, slots=True)
class AuthenticatorModel:
    """One allow-listed authenticator model and the roots its attestations must chain to."""

    aaguid: str
    description: str
    root_certificates: tuple[bytes, ...] = field(repr=False)  # DER
    status: str | None
    revoked: bool

    def roots_pem(self) -> list[bytes]:
        return [
            x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
            for der in self.root_certificates
        ]


@dataclass(frozen=True, slots=True)
class AuthenticatorCatalogue:
    models: Mapping[str, AuthenticatorModel]
    serial: int | None = None  # the BLOB's "no", when the file came from one
    next_update: str | None = None

    def model(self, aaguid: str) -> AuthenticatorModel | None:
        return self.models.get(aaguid.lower())

    def __len__(self) -> int:
        return len(self.models)


def parse_catalogue(text: str | bytes) -> AuthenticatorCatalogue:
    """Read a FIDO MDS3 BLOB payload (or a list of its entries) into a catalogue.

    Entries without an AAGUID (FIDO U2F and UAF authenticators) are skipped: WebAuthn
    registrations name their model by AAGUID. Anything malformed refuses the whole file, so
    a mistaken update fails loudly instead of silently trusting less (or more).
    """
    if len(text) > MAX_METADATA_BYTES:
        raise MetadataInvalid(f"larger than {MAX_METADATA_BYTES} bytes")
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MetadataInvalid("not JSON") from exc
    if isinstance(document, list):
        entries, serial, next_update = document, None, None
    elif isinstance(document, dict) and isinstance(document.get("entries"), list):
        entries = document["entries"]
        serial = document.get("no") if isinstance(document.get("no"), int) else None
        next_update = str(document["nextUpdate"]) if "nextUpdate" in document else None
    else:
        raise MetadataInvalid('expected {"entries": [...]} or a list of entries')
    models: dict[str, AuthenticatorModel] = {}
    for index, entry in enumerate(entries):
        model = _model(entry, index)
        if model is None:
            continue
        if model.aaguid in models:
            raise MetadataInvalid(f"entry {index}: AAGUID {model.aaguid} is listed twice")
        models[model.aaguid] = model
    return AuthenticatorCatalogue(models, serial=serial, next_update=next_update)


def _model(entry: Any, index: int) -> AuthenticatorModel | None:
    if not isinstance(entry, dict):
        raise MetadataInvalid(f"entry {index}: not an object")
    statement = entry.get("metadataStatement", entry)
    if not isinstance(statement, dict):
        raise MetadataInvalid(f"entry {index}: metadataStatement is not an object")
    raw_aaguid = entry.get("aaguid", statement.get("aaguid"))
    if raw_aaguid is None:
        return None
    try:
        aaguid = str(uuid.UUID(str(raw_aaguid)))
    except ValueError as exc:
        raise MetadataInvalid(f"entry {index}: aaguid is not a GUID") from exc
    roots = statement.get("attestationRootCertificates", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise MetadataInvalid(f"entry {index} ({aaguid}): attestationRootCertificates")
    statuses = _statuses(entry, index, aaguid)
    return AuthenticatorModel(
        aaguid=aaguid,
        description=str(statement.get("description", ""))[:200],
        root_certificates=tuple(_der_certificate(r, index, aaguid) for r in roots),
        status=statuses[-1] if statuses else None,
        revoked=any(s in UNTRUSTED_STATUSES for s in statuses),
    )


def _statuses(entry: dict[str, Any], index: int, aaguid: str) -> list[str]:
    """Status values oldest first (by effectiveDate where given, else in file order)."""
    reports = entry.get("statusReports", [])
    if not isinstance(reports, list) or not all(
        isinstance(r, dict) and isinstance(r.get("status"), str) for r in reports
    ):
        raise MetadataInvalid(f"entry {index} ({aaguid}): statusReports")
    dated = sorted(
        enumerate(reports), key=lambda item: (str(item[1].get("effectiveDate", "")), item[0])
    )
    statuses = [str(report["status"]).upper() for _, report in dated]
    if "status" in entry:  # the trimmed form: one status per model
        statuses.append(str(entry["status"]).upper())
    return statuses


def _der_certificate(text: str, index: int, aaguid: str) -> bytes:
    try:
        der = base64.b64decode(text, validate=True)
        x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise MetadataInvalid(
            f"entry {index} ({aaguid}): a root certificate is not base64 DER"
        ) from exc
    return der


def certificate_refusal(
    certificate_der: bytes, *, fmt: str, aaguid: bytes
) -> AttestationRefusal | None:
    """Check an attestation certificate against WebAuthn 8.2.1 (packed) / 8.3.1 (TPM)."""
    try:
        certificate = x509.load_der_x509_certificate(certificate_der)
    except ValueError:
        return AttestationRefusal.BAD_CERTIFICATE
    if certificate.version is not x509.Version.v3:
        return AttestationRefusal.BAD_CERTIFICATE
    extensions = {ext.oid: ext for ext in certificate.extensions}
    constraints = extensions.get(x509.oid.ExtensionOID.BASIC_CONSTRAINTS)
    # An attestation key must not be able to sign certificates for other "authenticators".
    if constraints is None or not isinstance(constraints.value, x509.BasicConstraints):
        return AttestationRefusal.BAD_CERTIFICATE
    if constraints.value.ca:
        return AttestationRefusal.BAD_CERTIFICATE
    claimed = extensions.get(AAGUID_EXTENSION_OID)
    if claimed is not None:
        # The certificate names the model it was issued for: it must be the model the
        # authenticator data claims, and the extension must not be critical.
        if claimed.critical or not isinstance(claimed.value, x509.UnrecognizedExtension):
            return AttestationRefusal.BAD_CERTIFICATE
        if claimed.value.value != b"\x04\x10" + aaguid:
            return AttestationRefusal.BAD_CERTIFICATE
    if fmt == "packed" and not _packed_subject(certificate.subject):
        return AttestationRefusal.BAD_CERTIFICATE
    return None


def _packed_subject(subject: x509.Name) -> bool:
    """Section 8.2.1: C, O, OU "Authenticator Attestation" and CN are all present."""

    def values(oid: x509.ObjectIdentifier) -> list[str]:
        return [str(attribute.value) for attribute in subject.get_attributes_for_oid(oid)]

    return (
        bool(values(NameOID.COUNTRY_NAME))
        and bool(values(NameOID.ORGANIZATION_NAME))
        and values(NameOID.ORGANIZATIONAL_UNIT_NAME) == [ATTESTATION_OU]
        and bool(values(NameOID.COMMON_NAME))
    )


def describe(models: Sequence[AuthenticatorModel]) -> list[str]:
    """One line per model, for operators (`aaguid  description  status`)."""
    return [
        f"{m.aaguid}  {m.description}  {m.status or '-'}{'  (refused)' if m.revoked else ''}"
        for m in sorted(models, key=lambda m: m.description)
    ]
