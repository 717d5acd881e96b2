"""The vault's private PKI for mutual TLS (PCI-3): its own CA, a server certificate and one
client certificate per vault role.

The CA is the vault's alone: the vault server trusts client certificates signed by it and
nothing else (not the public web PKI, not the platform's API certificate), and a client
trusts only it for the server. A client certificate names its vault role in a URI subject
alternative name, `urn:tradeguard:vault:role:<role>`; the server reads the role from the
verified certificate, so only whoever holds the payment key may detokenize. Keys are ECDSA
P-256, written 0600 in a 0700 directory; certificates carry the usual leaf constraints
(not a CA, digital signature only, server or client auth only).

Revocation (PCI-3): every certificate issued is recorded in `issued.jsonl` (serial, kind,
role, validity; public data only), and `crl.pem` is a certificate revocation list signed by
the vault CA (RFC 5280). `revoke` adds a serial to it and signs it again; the vault server
checks each client certificate against it (vault/serving.py), so one leaked client
certificate is revoked without re-issuing the others.

For production, issue these from the organisation's own CA or a secrets manager and keep
the CA key offline; `tradeguard vault certs` is the self-contained default.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tradeguard.core.errors import ConfigurationError
from tradeguard.vault.domain import VaultRole

ROLE_URI_PREFIX: Final = "urn:tradeguard:vault:role:"
SERVER_NAME: Final = "tradeguard-vault"
CA_VALIDITY: Final = timedelta(days=3650)
LEAF_VALIDITY: Final = timedelta(days=365)
BACKDATE: Final = timedelta(minutes=5)
# How long a CRL is valid: it is signed again at every revocation, and `vault certs crl`
# signs it again at any time; a vault refuses to serve with an expired one.
CRL_VALIDITY: Final = timedelta(days=365)
CLIENT: Final = "client"
SERVER: Final = "server"


@dataclass(frozen=True, slots=True)
class VaultPki:
    """Where the vault's certificates and keys are (one directory)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    def client_cert(self, role: VaultRole) -> Path:
        return self.directory / f"client-{role.value}.pem"

    def client_key(self, role: VaultRole) -> Path:
        return self.directory / f"client-{role.value}-key.pem"

    @property
    def crl(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def issued_log(self) -> Path:
        return self.directory / "issued.jsonl"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file (created 0600) and rename: never half a PEM, never a key
    readable by others even for a moment."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def issue_ca(pki: VaultPki, *, now: datetime) -> None:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tradeguard vault CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        # May sign leaves only: no intermediate CAs below it.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(pki.ca_key, _pem_key(key), 0o600)
    _write(pki.ca_cert, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _load_ca(pki: VaultPki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    certificate = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the vault CA key is not an ECDSA key")
    return certificate, key


def _leaf(
    pki: VaultPki,
    *,
    kind: str,
    role: VaultRole | None,
    common_name: str,
    names: Iterable[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    now: datetime,
    cert_path: Path,
    key_path: Path,
) -> None:
    ca_cert, ca_key = _load_ca(pki)
    key = _key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(key_path, _pem_key(key), 0o600)
    _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    _record_issued(pki, IssuedCertificate.of(certificate, kind=kind, role=role, issued_at=now))


def issue_server(
    pki: VaultPki,
    *,
    now: datetime,
    hosts: Iterable[str] = (),
) -> None:
    """The server certificate: the name `tradeguard-vault` (what clients on the Unix socket
    verify), localhost, and each of `hosts` (private addresses or names it listens on)."""
    names: list[x509.GeneralName] = [x509.DNSName(SERVER_NAME), x509.DNSName("localhost")]
    for host in ("127.0.0.1", "::1", *hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    _leaf(
        pki,
        kind=SERVER,
        role=None,
        common_name=SERVER_NAME,
        names=dict.fromkeys(names),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        now=now,
        cert_path=pki.server_cert,
        key_path=pki.server_key,
    )


def issue_client(pki: VaultPki, role: VaultRole, *, now: datetime) -> None:
    _leaf(
        pki,
        kind=CLIENT,
        role=role,
        common_name=f"tradeguard vault client ({role.value})",
        names=[x509.UniformResourceIdentifier(ROLE_URI_PREFIX + role.value)],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        now=now,
        cert_path=pki.client_cert(role),
        key_path=pki.client_key(role),
    )


def issue_all(pki: VaultPki, *, now: datetime, hosts: Iterable[str] = ()) -> list[Path]:
    """A CA (if none), a server certificate and a client certificate per role."""
    pki.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(pki.directory, 0o700)
    if not (pki.ca_cert.is_file() and pki.ca_key.is_file()):
        issue_ca(pki, now=now)
    issue_server(pki, now=now, hosts=hosts)
    for role in VaultRole:
        issue_client(pki, role, now=now)
    if not pki.crl.is_file():
        write_crl(pki, now=now)
    return [
        pki.ca_cert,
        pki.server_cert,
        *(pki.client_cert(role) for role in VaultRole),
        pki.crl,
    ]


def role_of_peer(peer: Mapping[str, Any] | None) -> VaultRole | None:
    """The vault role named by a verified peer certificate (`SSLSocket.getpeercert()`);
    None without a certificate or with no single role in it."""
    if not peer:
        return None
    roles = {
        value[len(ROLE_URI_PREFIX) :]
        for kind, value in peer.get("subjectAltName", ())
        if kind == "URI" and isinstance(value, str) and value.startswith(ROLE_URI_PREFIX)
    }
    if len(roles) != 1:
        return None
    try:
        return VaultRole(roles.pop())
    except ValueError:
        return None


# -- issued certificates and revocation (PCI-3) ---------------------------------------------


class CertificateRevocationError(ConfigurationError):
    slug = "vault-certificate-revocation"
    title = "The vault's certificate revocation list cannot be used"


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate the vault CA issued, as `issued.jsonl` keeps it (public data only)."""

    serial: int
    kind: str  # server or client
    role: str | None
    common_name: str
    not_after: datetime
    issued_at: datetime

    @property
    def serial_hex(self) -> str:
        return format_serial(self.serial)

    @classmethod
    def of(
        cls,
        certificate: x509.Certificate,
        *,
        kind: str,
        role: VaultRole | None,
        issued_at: datetime,
    ) -> IssuedCertificate:
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return cls(
            serial=certificate.serial_number,
            kind=kind,
            role=None if role is None else role.value,
            common_name=str(names[0].value) if names else "",
            not_after=certificate.not_valid_after_utc,
            issued_at=issued_at,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "serial": self.serial_hex,
                "kind": self.kind,
                "role": self.role,
                "common_name": self.common_name,
                "not_after": self.not_after.isoformat(),
                "issued_at": self.issued_at.isoformat(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> IssuedCertificate:
        data = json.loads(line)
        return cls(
            serial=int(data["serial"], 16),
            kind=str(data["kind"]),
            role=None if data.get("role") is None else str(data["role"]),
            common_name=str(data.get("common_name", "")),
            not_after=datetime.fromisoformat(data["not_after"]),
            issued_at=datetime.fromisoformat(data["issued_at"]),
        )


@dataclass(frozen=True, slots=True)
class RevokedCertificate:
    serial: int
    revoked_at: datetime
    reason: str


REVOCATION_REASONS: Final[dict[str, x509.ReasonFlags]] = {
    "key-compromise": x509.ReasonFlags.key_compromise,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
    "privilege-withdrawn": x509.ReasonFlags.privilege_withdrawn,
    "unspecified": x509.ReasonFlags.unspecified,
}
_REASON_NAMES: Final = {flag: name for name, flag in REVOCATION_REASONS.items()}
MAX_SERIAL_CHARS: Final = 64


def format_serial(serial: int) -> str:
    """A serial as `openssl x509 -serial` prints it: upper-case hex."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def parse_serial(text: str) -> int:
    """A serial in hex, as `vault certs list` shows it (colons and a 0x prefix allowed)."""
    cleaned = text.strip().replace(":", "").lower().removeprefix("0x")
    if (
        not cleaned
        or len(cleaned) > MAX_SERIAL_CHARS
        or any(c not in "0123456789abcdef" for c in cleaned)
    ):
        raise CertificateRevocationError(
            "a serial number is hexadecimal, as `tradeguard vault certs list` shows it"
        )
    return int(cleaned, 16)


def _record_issued(pki: VaultPki, issued: IssuedCertificate) -> None:
    fd = os.open(pki.issued_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(issued.to_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def issued_certificates(pki: VaultPki) -> list[IssuedCertificate]:
    """Every certificate the vault CA issued here, oldest first (the log, and the certificate
    files of a directory made before the log existed)."""
    found: dict[int, IssuedCertificate] = {}
    if pki.issued_log.is_file():
        for line in pki.issued_log.read_text(encoding="utf-8").splitlines():
            if line.strip():
                issued = IssuedCertificate.from_json(line)
                found[issued.serial] = issued
    files: list[tuple[Path, str, VaultRole | None]] = [(pki.server_cert, SERVER, None)]
    files += [(pki.client_cert(role), CLIENT, role) for role in VaultRole]
    for path, kind, role in files:
        if path.is_file():
            certificate = x509.load_pem_x509_certificate(path.read_bytes())
            if certificate.serial_number not in found:
                found[certificate.serial_number] = IssuedCertificate.of(
                    certificate, kind=kind, role=role, issued_at=certificate.not_valid_before_utc
                )
    return sorted(found.values(), key=lambda c: (c.issued_at, c.serial))


def _ca_public_key(pki: VaultPki) -> tuple[x509.Certificate, ec.EllipticCurvePublicKey]:
    try:
        certificate = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    except FileNotFoundError:
        raise CertificateRevocationError(f"no vault CA certificate at {pki.ca_cert}") from None
    except ValueError:
        raise CertificateRevocationError(f"{pki.ca_cert} is not a PEM certificate") from None
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CertificateRevocationError("the vault CA key is not an ECDSA key")
    return certificate, key


def load_crl(pki: VaultPki, *, now: datetime | None = None) -> x509.CertificateRevocationList:
    """The vault's CRL, once it is shown to be the vault CA's: signed by its key, issued under
    its name, and not past its next update. CertificateRevocationError otherwise."""
    try:
        crl = x509.load_pem_x509_crl(pki.crl.read_bytes())
    except FileNotFoundError:
        raise CertificateRevocationError(
            f"no certificate revocation list at {pki.crl}; run `tradeguard vault certs crl`"
        ) from None
    except ValueError:
        raise CertificateRevocationError(f"{pki.crl} is not a PEM revocation list") from None
    ca_cert, ca_key = _ca_public_key(pki)
    if crl.issuer != ca_cert.subject or not crl.is_signature_valid(ca_key):
        raise CertificateRevocationError(
            f"the revocation list {pki.crl} is not signed by the vault CA ({pki.ca_cert})"
        )
    moment = now or datetime.now(UTC)
    next_update = crl.next_update_utc
    if next_update is not None and next_update < moment:
        raise CertificateRevocationError(
            f"the revocation list {pki.crl} expired at {next_update.isoformat()}; sign it "
            "again with `tradeguard vault certs crl`"
        )
    return crl


def revoked_certificates(crl: x509.CertificateRevocationList) -> dict[int, RevokedCertificate]:
    entries: dict[int, RevokedCertificate] = {}
    for entry in crl:
        reason = "unspecified"
        try:
            flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            reason = _REASON_NAMES.get(flag, flag.value)
        except x509.ExtensionNotFound:
            pass
        entries[entry.serial_number] = RevokedCertificate(
            entry.serial_number, entry.revocation_date_utc, reason
        )
    return entries


def write_crl(
    pki: VaultPki,
    *,
    now: datetime,
    revoked: Iterable[RevokedCertificate] = (),
    number: int = 1,
) -> x509.CertificateRevocationList:
    """Sign the list of `revoked` with the vault CA key and write it to `crl.pem`."""
    ca_cert, ca_key = _load_ca(pki)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - BACKDATE)
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
            .add_extension(x509.CRLReason(REVOCATION_REASONS[entry.reason]), critical=False)
            .build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    _write(pki.crl, crl.public_bytes(serialization.Encoding.PEM), 0o644)
    return crl


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def _current_entries(pki: VaultPki, now: datetime) -> tuple[dict[int, RevokedCertificate], int]:
    if not pki.crl.is_file():
        return {}, 0
    crl = load_crl(pki, now=now)
    return revoked_certificates(crl), _crl_number(crl)


def resign_crl(pki: VaultPki, *, now: datetime) -> x509.CertificateRevocationList:
    """Sign the current list again (a new validity period), or an empty one if none."""
    entries, number = _current_entries(pki, now)
    return write_crl(pki, now=now, revoked=entries.values(), number=number + 1)


def revoke(pki: VaultPki, serial: int, *, reason: str, now: datetime) -> IssuedCertificate:
    """Add a client certificate the vault CA issued to the CRL, and sign it again."""
    if reason not in REVOCATION_REASONS:
        raise CertificateRevocationError(
            f"unknown reason {reason[:40]!r}; one of: {', '.join(REVOCATION_REASONS)}"
        )
    if not pki.ca_key.is_file():
        raise CertificateRevocationError(
            f"no vault CA key at {pki.ca_key}: revoke where the CA key is kept"
        )
    issued = {c.serial: c for c in issued_certificates(pki)}
    certificate = issued.get(serial)
    if certificate is None:
        raise CertificateRevocationError(
            f"no certificate with serial {format_serial(serial)} was issued by this vault CA "
            "(see `tradeguard vault certs list`)"
        )
    if certificate.kind != CLIENT:
        raise CertificateRevocationError(
            f"serial {format_serial(serial)} is the {certificate.kind} certificate; only client "
            "certificates are revoked (issue a new server certificate with `vault certs`)"
        )
    entries, number = _current_entries(pki, now)
    if serial in entries:
        raise CertificateRevocationError(
            f"the certificate {format_serial(serial)} is already revoked "
            f"(since {entries[serial].revoked_at.isoformat()})"
        )
    entries[serial] = RevokedCertificate(serial, now, reason)
    write_crl(pki, now=now, revoked=entries.values(), number=number + 1)
    return certificate


def x509_serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number
