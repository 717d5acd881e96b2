"""TLS: development certificates and the server SSL context (handshakes over memory BIOs)."""

from __future__ import annotations

import ipaddress
import ssl
import stat
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock, ns_to_datetime
from tradeguard.core.errors import ConfigurationError
from tradeguard.web.tls import (
    build_server_ssl_context,
    ensure_dev_certificate,
    generate_dev_certificate,
    restrict_key_exchange_groups,
)


@pytest.fixture
def dev_pair(tmp_path: Path, clock: FrozenClock) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_dev_certificate(cert, key, clock=clock)
    return cert, key


class HandshakeRefused(Exception):
    def __init__(self, side: str, error: ssl.SSLError) -> None:
        super().__init__(f"{side}: {error}")
        self.side = side
        self.error = error


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> ssl.SSLObject:
    """Run a TLS handshake in memory; return the client end or say which side refused."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(client_in, client_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, end in (("client", client), ("server", server)):
            if done[side]:
                continue
            try:
                end.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                raise HandshakeRefused(side, exc) from exc
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            return client
    raise AssertionError("handshake did not finish")


def client_context(
    cert: Path,
    *,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    minimum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    with warnings.catch_warnings():
        # Old versions are set on purpose, to prove the server refuses them.
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            context.minimum_version = minimum
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


class TestDevCertificate:
    @pytest.mark.spec("TLS-2")
    def test_certificate_is_ecdsa_p256_for_localhost_with_ip_sans(
        self, dev_pair: tuple[Path, Path], clock: FrozenClock
    ) -> None:
        cert = x509.load_pem_x509_certificate(dev_pair[0].read_bytes())
        public_key = cert.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        assert public_key.curve.name == "secp256r1"
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["localhost"]
        assert set(san.get_values_for_type(x509.IPAddress)) == {
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("::1"),
        }
        assert cert.subject.rfc4514_string() == "CN=localhost"

    @pytest.mark.spec("TLS-2")
    def test_validity_is_one_year_from_the_injected_clock(
        self, dev_pair: tuple[Path, Path], clock: FrozenClock
    ) -> None:
        cert = x509.load_pem_x509_certificate(dev_pair[0].read_bytes())
        now = ns_to_datetime(clock.now_ns())
        assert now - timedelta(hours=1) < cert.not_valid_before_utc <= now
        assert cert.not_valid_after_utc - now == timedelta(days=365)

    @pytest.mark.spec("TLS-2")
    def test_private_key_file_is_readable_by_owner_only(self, dev_pair: tuple[Path, Path]) -> None:
        assert stat.S_IMODE(dev_pair[1].stat().st_mode) == 0o600

    @pytest.mark.spec("TLS-2")
    def test_ensure_creates_once_and_then_leaves_the_pair_alone(
        self, settings: Settings, clock: FrozenClock
    ) -> None:
        assert ensure_dev_certificate(settings, clock) is True
        first = settings.dev_cert_file.read_bytes()
        assert ensure_dev_certificate(settings, clock) is False
        assert settings.dev_cert_file.read_bytes() == first

    @pytest.mark.spec("TLS-2")
    def test_ensure_regenerates_the_pair_when_the_key_is_missing(
        self, settings: Settings, clock: FrozenClock
    ) -> None:
        ensure_dev_certificate(settings, clock)
        first = settings.dev_cert_file.read_bytes()
        settings.dev_key_file.unlink()
        assert ensure_dev_certificate(settings, clock) is True
        assert settings.dev_cert_file.read_bytes() != first
        build_server_ssl_context(settings.dev_cert_file, settings.dev_key_file)

    @pytest.mark.spec("TLS-2")
    def test_ensure_never_generates_when_a_certificate_is_configured(
        self, tmp_path: Path, clock: FrozenClock
    ) -> None:
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path / "var",
            tls_cert_file=tmp_path / "operator-cert.pem",
            tls_key_file=tmp_path / "operator-key.pem",
        )
        assert ensure_dev_certificate(settings, clock) is False
        assert not settings.dev_cert_file.exists()
        assert not settings.tls_cert_file.exists()  # type: ignore[union-attr]


class TestServerContext:
    @pytest.mark.spec("TLS-1")
    def test_tls12_suites_are_all_ecdhe_with_aead(self, dev_pair: tuple[Path, Path]) -> None:
        context = build_server_ssl_context(*dev_pair)
        tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12
        for cipher in tls12:
            assert cipher["kea"] == "kx-ecdhe", cipher["name"]
            assert cipher["aead"], cipher["name"]
        assert {c["name"] for c in tls12} <= {
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-RSA-CHACHA20-POLY1305",
        }

    @pytest.mark.spec("TLS-1")
    def test_versions_compression_and_renegotiation(self, dev_pair: tuple[Path, Path]) -> None:
        context = build_server_ssl_context(*dev_pair)
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
        assert context.maximum_version is ssl.TLSVersion.TLSv1_3
        assert context.options & ssl.OP_NO_COMPRESSION
        assert context.options & ssl.OP_NO_RENEGOTIATION
        assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE

    @pytest.mark.spec("TLS-1")
    def test_minimum_can_be_raised_to_tls13(self, dev_pair: tuple[Path, Path]) -> None:
        context = build_server_ssl_context(*dev_pair, "1.3")
        assert context.minimum_version is ssl.TLSVersion.TLSv1_3

    @pytest.mark.spec("TLS-1")
    def test_tls11_is_not_a_configurable_minimum(
        self, dev_pair: tuple[Path, Path], tmp_path: Path
    ) -> None:
        with pytest.raises(ConfigurationError, match="TRADEGUARD_TLS_MIN_VERSION"):
            build_server_ssl_context(*dev_pair, "1.1")

    @pytest.mark.spec("TLS-1")
    def test_tls13_is_negotiated_and_alpn_is_http11(self, dev_pair: tuple[Path, Path]) -> None:
        client_ctx = client_context(dev_pair[0])
        client_ctx.set_alpn_protocols(["h2", "http/1.1"])
        client = handshake(build_server_ssl_context(*dev_pair), client_ctx)
        assert client.version() == "TLSv1.3"
        assert client.selected_alpn_protocol() == "http/1.1"

    @pytest.mark.spec("TLS-1")
    def test_tls12_client_gets_an_ecdhe_suite(self, dev_pair: tuple[Path, Path]) -> None:
        client_ctx = client_context(dev_pair[0], maximum=ssl.TLSVersion.TLSv1_2)
        client = handshake(build_server_ssl_context(*dev_pair), client_ctx)
        assert client.version() == "TLSv1.2"
        cipher = client.cipher()
        assert cipher is not None
        assert cipher[0].startswith("ECDHE-")

    @pytest.mark.spec("TLS-1")
    def test_tls12_client_is_refused_when_the_minimum_is_tls13(
        self, dev_pair: tuple[Path, Path]
    ) -> None:
        client_ctx = client_context(dev_pair[0], maximum=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(HandshakeRefused) as refused:
            handshake(build_server_ssl_context(*dev_pair, "1.3"), client_ctx)
        assert refused.value.side == "server"

    @pytest.mark.spec("TLS-1")
    def test_tls11_client_is_refused_by_the_server(self, dev_pair: tuple[Path, Path]) -> None:
        # @SECLEVEL=0 lets OpenSSL's client offer TLS 1.1, so the refusal comes from the server.
        client_ctx = client_context(
            dev_pair[0],
            minimum=ssl.TLSVersion.TLSv1_1,
            maximum=ssl.TLSVersion.TLSv1_1,
            ciphers="DEFAULT:@SECLEVEL=0",
        )
        with pytest.raises(HandshakeRefused) as refused:
            handshake(build_server_ssl_context(*dev_pair), client_ctx)
        assert refused.value.side == "server"
        assert refused.value.error.reason == "UNSUPPORTED_PROTOCOL"

    @pytest.mark.spec("TLS-1")
    @pytest.mark.parametrize(
        "cipher",
        ["ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA", "AES256-GCM-SHA384"],
    )
    def test_tls12_suites_outside_the_profile_are_refused(
        self, dev_pair: tuple[Path, Path], cipher: str
    ) -> None:
        client_ctx = client_context(
            dev_pair[0], maximum=ssl.TLSVersion.TLSv1_2, ciphers=f"{cipher}:@SECLEVEL=0"
        )
        with pytest.raises(HandshakeRefused) as refused:
            handshake(build_server_ssl_context(*dev_pair), client_ctx)
        assert refused.value.side == "server"


def single_group_client(
    cert: Path, group: str, maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
) -> ssl.SSLContext:
    """A client that offers exactly one key-exchange group (set_ecdh_curve sets the list)."""
    context = client_context(cert, maximum=maximum)
    context.set_ecdh_curve(group)
    return context


@pytest.fixture(scope="module")
def rsa_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An RSA certificate: in TLS 1.2 a client's group list also limits the curves of an
    ECDSA certificate, so only an RSA certificate shows the key-exchange groups on their own."""
    directory = tmp_path_factory.mktemp("rsa")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# TLS 1.3 with the ECDSA development certificate; TLS 1.2 with the RSA one (see rsa_pair).
HANDSHAKES = [
    pytest.param(ssl.TLSVersion.TLSv1_3, "dev_pair", id="tls13"),
    pytest.param(ssl.TLSVersion.TLSv1_2, "rsa_pair", id="tls12"),
]


class TestKeyExchangeGroups:
    """Mozilla intermediate (5.7): X25519, P-256 and P-384, and nothing else."""

    @pytest.mark.spec("TLS-1")
    @pytest.mark.parametrize(("version", "pair"), HANDSHAKES)
    @pytest.mark.parametrize("group", ["X25519", "prime256v1", "secp384r1"])
    def test_a_client_offering_only_a_profile_group_is_served(
        self, request: pytest.FixtureRequest, group: str, version: ssl.TLSVersion, pair: str
    ) -> None:
        cert, key = request.getfixturevalue(pair)
        client = handshake(
            build_server_ssl_context(cert, key), single_group_client(cert, group, version)
        )
        assert client.version() == version.name.replace("v1_", "v1.")

    @pytest.mark.spec("TLS-1")
    @pytest.mark.parametrize(("version", "pair"), HANDSHAKES)
    @pytest.mark.parametrize("group", ["X448", "secp521r1"])
    def test_a_client_offering_only_another_curve_is_refused_by_the_server(
        self, request: pytest.FixtureRequest, group: str, version: ssl.TLSVersion, pair: str
    ) -> None:
        cert, key = request.getfixturevalue(pair)
        # Without the restriction OpenSSL 3 accepts both curves (the control case below).
        unrestricted = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        unrestricted.load_cert_chain(cert, key)
        handshake(unrestricted, single_group_client(cert, group, version))
        with pytest.raises(HandshakeRefused) as refused:
            handshake(
                build_server_ssl_context(cert, key), single_group_client(cert, group, version)
            )
        assert refused.value.side == "server"

    @pytest.mark.spec("TLS-1")
    def test_finite_field_groups_are_refused_in_tls13(self, dev_pair: tuple[Path, Path]) -> None:
        client_ctx = single_group_client(dev_pair[0], "ffdhe2048")
        with pytest.raises(HandshakeRefused) as refused:
            handshake(build_server_ssl_context(*dev_pair), client_ctx)
        assert refused.value.side == "server"

    @pytest.mark.spec("TLS-1")
    def test_the_whole_list_is_set_on_this_python_not_the_single_group_fallback(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        assert restrict_key_exchange_groups(context) is True

    def test_an_unknown_group_is_a_configuration_error(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with pytest.raises(ConfigurationError, match="groups"):
            restrict_key_exchange_groups(context, ("X25519", "no-such-group"))


class TestCertificateErrors:
    @pytest.mark.spec("TLS-2")
    def test_missing_certificate_names_the_setting(
        self, dev_pair: tuple[Path, Path], tmp_path: Path
    ) -> None:
        with pytest.raises(ConfigurationError, match="TRADEGUARD_TLS_CERT_FILE"):
            build_server_ssl_context(tmp_path / "absent.pem", dev_pair[1])

    @pytest.mark.spec("TLS-2")
    def test_missing_key_names_the_setting(
        self, dev_pair: tuple[Path, Path], tmp_path: Path
    ) -> None:
        with pytest.raises(ConfigurationError, match="TRADEGUARD_TLS_KEY_FILE"):
            build_server_ssl_context(dev_pair[0], tmp_path / "absent.pem")

    @pytest.mark.spec("TLS-2")
    def test_key_of_another_certificate_is_rejected(
        self, dev_pair: tuple[Path, Path], tmp_path: Path, clock: FrozenClock
    ) -> None:
        other_cert, other_key = tmp_path / "other-cert.pem", tmp_path / "other-key.pem"
        generate_dev_certificate(other_cert, other_key, clock=clock)
        with pytest.raises(ConfigurationError, match="TRADEGUARD_TLS_KEY_FILE") as error:
            build_server_ssl_context(dev_pair[0], other_key)
        assert "BEGIN" not in str(error.value)

    @pytest.mark.spec("TLS-2")
    def test_a_file_that_is_not_pem_is_rejected(
        self, dev_pair: tuple[Path, Path], tmp_path: Path
    ) -> None:
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("not a certificate")
        with pytest.raises(ConfigurationError, match="TRADEGUARD_TLS_CERT_FILE"):
            build_server_ssl_context(garbage, dev_pair[1])
