"""TLS for the API server: development certificates and the server SSL context (TLS-1, TLS-2).

The server context follows the Mozilla "intermediate" profile (server-side TLS guidelines,
version 5.7), narrowed to forward-secret ECDHE key exchange: TLS 1.3 is preferred, TLS 1.2 is
accepted only with ECDHE + AEAD suites unless the operator raises the floor to TLS 1.3, and
key exchange uses only the profile's groups X25519, P-256 and P-384.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import ssl
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tradeguard.config import Settings, TLSVersion
from tradeguard.core.clock import Clock, ns_to_datetime
from tradeguard.core.errors import ConfigurationError

# Mozilla intermediate TLS 1.2 suites minus the DHE ones: every suite left is ECDHE (forward
# secrecy from ephemeral elliptic-curve keys) with an AEAD cipher (AES-GCM or ChaCha20-Poly1305).
# Finite-field DHE is dropped because its security depends on the group size the server picks
# and it is much slower; RSA key exchange, CBC and SHA-1 suites were never in the profile.
# TLS 1.3 suites are not configured here: all five are AEAD with (EC)DHE by design.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

ALPN_PROTOCOLS = ("http/1.1",)

# The key-exchange groups of the Mozilla intermediate profile, in our preference order (names
# as OpenSSL's groups list spells them). OpenSSL 3.0 would also offer X448 and P-521 (and the
# finite-field groups for TLS 1.3): strong, but outside the profile and rarely used by
# clients, so offering them only widens what a scanner flags and what must be maintained.
KEY_EXCHANGE_GROUPS = ("X25519", "P-256", "P-384")
# The single group used where the list cannot be set (see restrict_key_exchange_groups):
# every TLS client supports P-256, so nobody is locked out.
FALLBACK_GROUP = "prime256v1"

# OpenSSL's SSL_CTX_set1_groups_list(ctx, list) is a macro for this SSL_CTX_ctrl command.
_SSL_CTRL_SET_GROUPS_LIST = 92

logger = logging.getLogger(__name__)

DEV_CERT_VALIDITY = timedelta(days=365)
# Backdate the start a little so a client whose clock runs slightly behind still accepts it.
DEV_CERT_BACKDATE = timedelta(minutes=5)

_CERT_ENV = "TRADEGUARD_TLS_CERT_FILE"
_KEY_ENV = "TRADEGUARD_TLS_KEY_FILE"


def generate_dev_certificate(cert_path: Path, key_path: Path, *, clock: Clock) -> None:
    """Write a self-signed ECDSA P-256 certificate for localhost and its key (mode 0600).

    For development and tests only: clients trust it by pinning this exact certificate as
    their CA file. Production configures TRADEGUARD_TLS_CERT_FILE / _KEY_FILE instead.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = ns_to_datetime(clock.now_ns())
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DEV_CERT_BACKDATE)
        .not_valid_after(now + DEV_CERT_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        # A leaf, not a CA: even if someone trusts this file, it cannot sign other certificates.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: a certificate without its key is useless, while a key without its
    # certificate is simply regenerated by ensure_dev_certificate.
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)


def ensure_dev_certificate(settings: Settings, clock: Clock) -> bool:
    """Generate the development certificate and key if either is missing; True if created.

    Does nothing when a certificate is configured (TRADEGUARD_TLS_CERT_FILE): an operator's
    files are never generated over. Serve with settings.effective_cert_file / _key_file.
    """
    if settings.tls_cert_file is not None:
        return False
    if settings.dev_cert_file.is_file() and settings.dev_key_file.is_file():
        return False
    # Both are regenerated together so the pair always matches.
    generate_dev_certificate(settings.dev_cert_file, settings.dev_key_file, clock=clock)
    return True


def build_server_ssl_context(
    cert_file: Path, key_file: Path, min_version: TLSVersion | str = TLSVersion.TLS1_2
) -> ssl.SSLContext:
    """The server-side context: TLS 1.3 preferred, TLS 1.2 with ECDHE + AEAD suites only."""
    try:
        version = TLSVersion(min_version)
    except ValueError:
        # TLS 1.0 and 1.1 are deprecated (RFC 8996) and never configurable.
        raise ConfigurationError(
            f"TRADEGUARD_TLS_MIN_VERSION: must be 1.2 or 1.3, not {min_version!r}"
        ) from None
    _require_readable(cert_file, _CERT_ENV, "certificate")
    _require_readable(key_file, _KEY_ENV, "private key")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if version is TLSVersion.TLS1_3 else ssl.TLSVersion.TLSv1_2
    )
    # OpenSSL always negotiates the highest version both sides support, so allowing 1.3 as
    # the maximum is what "TLS 1.3 preferred" means; downgrade protection is built into 1.3.
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(TLS12_CIPHERS)
    # Compression enables CRIME-style secret recovery; renegotiation has a history of
    # injection and DoS bugs and is not needed by HTTP/1.1 clients.
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # Mozilla intermediate leaves the choice to the client: every suite on the list is strong,
    # and a client without AES hardware may prefer ChaCha20-Poly1305.
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    restrict_key_exchange_groups(context)
    try:
        # An empty password stops OpenSSL from prompting on the terminal for an encrypted key.
        context.load_cert_chain(str(cert_file), str(key_file), password=lambda: b"")
    except ssl.SSLError as exc:
        reason = exc.reason or "unreadable"
        raise ConfigurationError(
            f"{_CERT_ENV} / {_KEY_ENV}: cannot load the certificate and key ({reason}); "
            "they must be PEM files, the key unencrypted and matching the certificate"
        ) from None
    return context


def restrict_key_exchange_groups(
    context: ssl.SSLContext, groups: tuple[str, ...] = KEY_EXCHANGE_GROUPS
) -> bool:
    """Offer only `groups` for (EC)DHE key exchange; False when only FALLBACK_GROUP could be set.

    The stdlib gained SSLContext.set_groups in Python 3.15. Before that it only has
    set_ecdh_curve, which sets exactly one group: P-256 alone would make every TLS 1.3 client
    that opens with an X25519 key share (nearly all of them) pay a HelloRetryRequest round
    trip, and X25519 alone would lock out TLS 1.2 clients without it. OPENSSL_CONF would work
    but is process-wide (it also changes our outgoing SMTP and HTTP clients) and must be set
    before OpenSSL initialises. So on older CPythons we call OpenSSL's
    SSL_CTX_set1_groups_list on this context's own SSL_CTX (see _set_groups_through_openssl).
    """
    group_list = ":".join(groups)
    set_groups = getattr(context, "set_groups", None)
    if set_groups is not None:  # pragma: no cover - Python 3.15+
        set_groups(group_list)
        return True
    if not _set_groups_through_openssl(context, group_list):  # pragma: no cover - see below
        # Only on interpreters or builds that hide OpenSSL's symbols (a statically linked
        # OpenSSL): still within the profile, at the cost of the extra round trip above.
        logger.warning("TLS key exchange limited to P-256: this Python cannot set a group list")
        context.set_ecdh_curve(FALLBACK_GROUP)
        return False
    return True


def _set_groups_through_openssl(context: ssl.SSLContext, group_list: str) -> bool:
    """SSL_CTX_set1_groups_list on the context's SSL_CTX via ctypes; False if not possible.

    Safe by construction rather than by hope:
    - the functions are looked up through the `_ssl` extension's own handle, so they are
      those of the very OpenSSL library this context lives in (dlsym searches the module's
      dependencies), never another copy on the system; a build that links OpenSSL statically
      and hides its symbols makes the lookup fail, and we fall back;
    - CPython's context object (PySSLContext in Modules/_ssl.c, unchanged from 3.7 to 3.14)
      starts with `SSL_CTX *ctx` right after the object header, whose size is
      object.__basicsize__; before using the pointer for a write we read the context's
      options through it and require them to equal what the stdlib reports;
    - OpenSSL validates the list and returns 0 for an unknown group, which we refuse.
    """
    if sys.implementation.name != "cpython":  # pragma: no cover - other interpreters
        return False
    try:
        import _ssl  # noqa: PLC0415 - the stdlib's OpenSSL binding, loaded by `ssl` already

        openssl = ctypes.CDLL(_ssl.__file__)
        get_options = openssl.SSL_CTX_get_options
        ctrl = openssl.SSL_CTX_ctrl
    except (AttributeError, OSError):  # pragma: no cover - symbols hidden or no shared module
        return False
    get_options.argtypes = [ctypes.c_void_p]
    get_options.restype = ctypes.c_uint64
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    ctrl.restype = ctypes.c_long
    ssl_ctx = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not ssl_ctx or get_options(ssl_ctx) != context.options:  # pragma: no cover
        return False
    if ctrl(ssl_ctx, _SSL_CTRL_SET_GROUPS_LIST, 0, group_list.encode("ascii")) != 1:
        raise ConfigurationError(f"OpenSSL refused the TLS key-exchange groups {group_list!r}")
    return True


def _require_readable(path: Path, env_name: str, what: str) -> None:
    if not path.is_file():
        raise ConfigurationError(f"{env_name}: no TLS {what} file at {path}")
    if not os.access(path, os.R_OK):
        raise ConfigurationError(f"{env_name}: the TLS {what} file {path} is not readable")


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a PEM behind."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file 0600 from the start: the key is never readable by others,
    # not even for the moment between creation and chmod.
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
