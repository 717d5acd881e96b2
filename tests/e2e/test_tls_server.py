"""A real server process over TLS: versions, suites, plain HTTP, limits, headers (TLS-1, TLS-2)."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import LOOPBACK, REPO_ROOT, RunningServer, running_server

pytestmark = pytest.mark.e2e

MAX_BODY_BYTES = 2048
HANDSHAKE_TIMEOUT_SECONDS = 1.0

# How a refusal looks from the client once its ClientHello went out: an alert from the
# server, or (asyncio and uvloop close the transport without flushing the alert) the server
# hanging up mid-handshake. A client-side refusal would fail before sending anything, with
# NO_PROTOCOLS_AVAILABLE or NO_CIPHERS_AVAILABLE; the in-memory handshakes in
# tests/unit/web/test_tls.py show the server end raising for each of these cases.
REFUSED_BY_SERVER = {
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "UNEXPECTED_EOF_WHILE_READING",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """TLS 1.2 minimum (the default), a small body limit and a short handshake timeout."""
    with running_server(
        tmp_path_factory.mktemp("tls12"),
        [
            "--max-body-bytes",
            str(MAX_BODY_BYTES),
            "--handshake-timeout",
            str(HANDSHAKE_TIMEOUT_SECONDS),
        ],
    ) as running:
        yield running


@pytest.fixture(scope="module")
def tls13_only_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("tls13"), ["--tls-min-version", "1.3"]) as running:
        yield running


@pytest.fixture
def https(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.base_url, verify=server.client_context(), timeout=10
    ) as client:
        yield client


def tls_connect(server: RunningServer, context: ssl.SSLContext) -> tuple[str, str, str | None]:
    """Handshake with the server; return (version, cipher, ALPN protocol)."""
    with (
        socket.create_connection((LOOPBACK, server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        version, cipher = tls.version(), tls.cipher()
        assert version is not None
        assert cipher is not None
        return version, cipher[0], tls.selected_alpn_protocol()


def legacy_client(
    server: RunningServer,
    *,
    maximum: ssl.TLSVersion,
    minimum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    context = server.client_context()
    with warnings.catch_warnings():
        # Deprecated versions are requested on purpose, to prove the server refuses them.
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            context.minimum_version = minimum
        context.maximum_version = maximum
    if ciphers is not None:
        # @SECLEVEL=0 stops OpenSSL's client from refusing on its own, so any refusal seen
        # in the test comes from the server.
        context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    return context


class TestProtocolVersions:
    @pytest.mark.spec("TLS-1", "TLS-2")
    def test_tls13_is_negotiated_and_the_certificate_validates(self, server: RunningServer) -> None:
        context = server.client_context()
        context.set_alpn_protocols(["h2", "http/1.1"])
        version, _cipher, alpn = tls_connect(server, context)
        assert version == "TLSv1.3"
        assert alpn == "http/1.1"

    @pytest.mark.spec("TLS-2")
    def test_a_client_that_does_not_trust_the_certificate_is_stopped(
        self, server: RunningServer
    ) -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_connect(server, ssl.create_default_context())

    @pytest.mark.spec("TLS-1")
    def test_tls12_works_when_allowed_and_uses_ecdhe(self, server: RunningServer) -> None:
        version, cipher, _ = tls_connect(
            server, legacy_client(server, maximum=ssl.TLSVersion.TLSv1_2)
        )
        assert version == "TLSv1.2"
        assert cipher.startswith("ECDHE-")

    @pytest.mark.spec("TLS-1")
    def test_tls12_is_refused_when_the_minimum_is_tls13(
        self, tls13_only_server: RunningServer
    ) -> None:
        context = legacy_client(tls13_only_server, maximum=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLError) as refused:
            tls_connect(tls13_only_server, context)
        assert refused.value.reason in REFUSED_BY_SERVER
        version, _, _ = tls_connect(tls13_only_server, tls13_only_server.client_context())
        assert version == "TLSv1.3"

    @pytest.mark.spec("TLS-1")
    def test_tls11_is_refused_by_the_server(self, server: RunningServer) -> None:
        context = legacy_client(
            server,
            minimum=ssl.TLSVersion.TLSv1_1,
            maximum=ssl.TLSVersion.TLSv1_1,
            ciphers="DEFAULT",
        )
        with pytest.raises(ssl.SSLError) as refused:
            tls_connect(server, context)
        assert refused.value.reason in REFUSED_BY_SERVER


class TestCipherSuites:
    @pytest.mark.spec("TLS-1")
    @pytest.mark.parametrize(
        "cipher",
        [
            "AES256-GCM-SHA384",  # RSA key exchange: no forward secrecy
            "ECDHE-ECDSA-AES256-SHA384",  # CBC mode: outside the profile
            "ECDHE-ECDSA-AES128-SHA",  # CBC with SHA-1
        ],
    )
    def test_suites_outside_the_profile_are_refused(
        self, server: RunningServer, cipher: str
    ) -> None:
        context = legacy_client(server, maximum=ssl.TLSVersion.TLSv1_2, ciphers=cipher)
        with pytest.raises(ssl.SSLError) as refused:
            tls_connect(server, context)
        assert refused.value.reason in REFUSED_BY_SERVER


# Made by scripts/ensure-test-tools.sh (which `make test` runs) from requirements/sslyze.lock.
SSLYZE_PYTHON = REPO_ROOT / ".venv-tools" / "sslyze" / "bin" / "python"
SSLYZE_TIMEOUT_SECONDS = 120


def sslyze_python() -> Path:
    if not SSLYZE_PYTHON.is_file():
        reason = f"sslyze is not installed at {SSLYZE_PYTHON} (run scripts/ensure-test-tools.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; it is required in CI")
        pytest.skip(reason)
    return SSLYZE_PYTHON


class TestMozillaIntermediateProfile:
    """An independent scanner (sslyze, its own OpenSSL build) against the running server."""

    @pytest.mark.spec("TLS-1")
    def test_sslyze_finds_the_server_compliant_with_mozilla_intermediate(
        self, server: RunningServer, tmp_path: Path
    ) -> None:
        report = tmp_path / "sslyze.json"
        # The development certificate is self-signed: it is handed to the scanner as the one
        # trusted root, so its chain validates and every other check counts in full.
        scan = subprocess.run(
            [
                str(sslyze_python()),
                "-m",
                "sslyze",
                "--mozilla_config",
                "intermediate",
                "--certinfo_ca_file",
                str(server.cert_file),
                "--json_out",
                str(report),
                f"{LOOPBACK}:{server.port}",
            ],
            capture_output=True,
            text=True,
            timeout=SSLYZE_TIMEOUT_SECONDS,
            check=False,
        )
        # sslyze exits 1 and lists the failed checks on stdout when the server is not compliant.
        assert scan.returncode == 0, scan.stdout + scan.stderr
        assert "OK - Compliant." in scan.stdout
        results = json.loads(report.read_text())["server_scan_results"][0]["scan_result"]
        curves = results["elliptic_curves"]["result"]["supported_curves"]
        assert {curve["name"] for curve in curves} == {"X25519", "secp256r1", "secp384r1"}
        for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
            assert results[f"{old}_cipher_suites"]["result"]["accepted_cipher_suites"] == []
        for version in ("tls_1_2", "tls_1_3"):
            accepted = results[f"{version}_cipher_suites"]["result"]["accepted_cipher_suites"]
            assert accepted
            # Forward secrecy: every accepted suite agreed an ephemeral (EC)DH key.
            assert all(suite["ephemeral_key"] is not None for suite in accepted)


class TestNoPlainHttp:
    @pytest.mark.spec("TLS-2")
    def test_plain_http_gets_no_http_response(self, server: RunningServer) -> None:
        received = b""
        with socket.create_connection((LOOPBACK, server.port), timeout=5) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            try:
                while chunk := sock.recv(4096):
                    received += chunk
            except ConnectionResetError:
                pass
        assert b"HTTP/" not in received
        assert b"status" not in received

    @pytest.mark.spec("TLS-2")
    def test_a_silent_client_is_dropped_after_the_handshake_timeout(
        self, server: RunningServer
    ) -> None:
        # The socket's own timeout is the bound: a server that never drops the client makes
        # recv raise TimeoutError, failing the test, instead of the test measuring time.
        with socket.create_connection(
            (LOOPBACK, server.port), timeout=HANDSHAKE_TIMEOUT_SECONDS + 4
        ) as sock:
            try:
                data = sock.recv(1)
            except ConnectionResetError:
                data = b""
        assert data == b""


class TestHttpsRequests:
    @pytest.mark.spec("TLS-2")
    def test_live_over_https_with_security_headers(self, https: httpx.Client) -> None:
        response = https.get("/health/live")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.http_version == "HTTP/1.1"
        assert (
            response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
        )
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert "server" not in response.headers

    @pytest.mark.spec("TLS-2")
    def test_ready_after_migrations(self, https: httpx.Client) -> None:
        assert https.get("/health/ready").status_code == 200

    @pytest.mark.spec("TLS-2")
    def test_unknown_route_is_a_problem(self, https: httpx.Client) -> None:
        response = https.get("/definitely/not/here")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 404

    @pytest.mark.spec("API-2")
    def test_oversize_declared_body_is_refused(self, https: httpx.Client) -> None:
        response = https.post("/health/live", content=b"x" * (MAX_BODY_BYTES + 1))
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"

    @pytest.mark.spec("IAC-4")
    def test_access_log_is_json_with_the_request_id(
        self, https: httpx.Client, server: RunningServer
    ) -> None:
        https.get("/health/live?token=abc123", headers={"X-Request-ID": "e2e-access-1"})
        deadline = time.monotonic() + 5
        entry = None
        while entry is None and time.monotonic() < deadline:
            for line in server.log_text().splitlines():
                if "e2e-access-1" in line:
                    entry = json.loads(line)
            time.sleep(0.05)
        assert entry is not None
        assert entry["logger"] == "tradeguard.access"
        assert entry["path"] == "/health/live"
        assert entry["status"] == 200
        assert entry["client_ip"] == LOOPBACK
        assert "abc123" not in server.log_text()
