"""The vault's private PKI for mutual TLS (PCI-3): its own CA, a server certificate and one
client certificate per vault role.

The CA is the vault's alone: the vault server trusts client certificates signed by it and
nothing else (not the public web PKI, not the platform's API certificate), and a client
trusts only it for the server. A client certificate names its vault role in a URI subject
alternative name, `urn:tradeguard:vault:role:<role>`; the server reads the role from the
verified certificate, so only whoever holds the payment key may detokenize. Keys are ECDSA
P-256, written 0600 in a 0700 directory; certificates carry the usual leaf constraints
(not a CA, digital signature only, server or client auth only).

For production, issue these from the organisation's own CA or a secrets manager and keep
the CA key offline; `tradeguard vault certs` is the self-contained default.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tradeguard.vault.domain import VaultRole

ROLE_URI_PREFIX: Final = "urn:tradeguard:vault:role:"
SERVER_NAME: Final = "tradeguard-vault"
CA_VALIDITY: Final = timedelta(days=3650)
LEAF_VALIDITY: Final = timedelta(days=365)
BACKDATE: Final = timedelta(minutes=5)


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
    return [pki.ca_cert, pki.server_cert, *(pki.client_cert(role) for role in VaultRole)]


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
