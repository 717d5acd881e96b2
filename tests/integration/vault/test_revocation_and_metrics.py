"""`tradeguard vault serve` with a revoked client certificate (PCI-3) and its metrics
listener (PCI-1), over real mutual TLS on a Unix socket (SQLite and PostgreSQL).

A client certificate revoked while the vault runs is refused from the next connection (and
on a connection kept open) without a restart; the others keep working; a revocation list
that is not the vault CA's is refused at load, and a bad one written later leaves the last
good list in force. The metrics count operations by role and outcome, refused certificates
by reason, and never carry a card number or a token."""

from __future__ import annotations

import shutil
import ssl
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.vault.conftest import VaultDatabase
from tests.support.cards import VISA
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import ConfigurationError
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.providers import LocalFileKek
from tradeguard.vault.certs import (
    CertificateRevocationError,
    VaultPki,
    issue_all,
    issue_ca,
    issue_client,
    load_crl,
    revoke,
    write_crl,
    x509_serial,
)
from tradeguard.vault.domain import VaultRole
from tradeguard.vault.metrics import VaultMetrics
from tradeguard.vault.remote import client_ssl_context
from tradeguard.vault.server import create_vault_app
from tradeguard.vault.serving import (
    MetricsListener,
    VaultListenerUnavailable,
    VaultServer,
    bind_vault_socket,
    parse_metrics_address,
    vault_server_context,
)
from tradeguard.vault.store import CardVaultStore

WHO = "user:alice"


@dataclass
class Vault:
    pki: VaultPki
    socket_path: Path
    metrics: MetricsListener

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.metrics.url, timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        self.last_text = text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tgr-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vault(vault_database: VaultDatabase, short_dir: Path, tmp_path: Path) -> Iterator[Vault]:
    pki = VaultPki(short_dir / "pki")
    issue_all(pki, now=datetime.now(UTC))
    clock = SystemClock()
    store = CardVaultStore.open_with(
        engine=vault_database.engine(),
        provider=LocalFileKek.load_or_create(tmp_path / "vault-server-keys" / "master.key"),
        clock=clock,
        ids=IdGenerator(clock),
        owns_engine=True,
    )
    metrics = VaultMetrics()
    listener = MetricsListener(metrics, "127.0.0.1:0")
    listener.start()
    started = threading.Event()
    listen = f"unix://{short_dir / 'vault.sock'}"
    server = VaultServer(
        create_vault_app(store, metrics),
        pki,
        bind_vault_socket(listen),
        on_started=started.set,
        metrics=metrics,
    )
    thread = threading.Thread(target=server.run, name="vault-server", daemon=True)
    thread.start()
    assert started.wait(30), "the vault server did not start"
    try:
        yield Vault(pki, short_dir / "vault.sock", listener)
    finally:
        server.stop()
        thread.join(30)
        listener.stop()


def client(vault: Vault, role: VaultRole) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(
        uds=str(vault.socket_path), verify=client_ssl_context(vault.pki, role)
    )
    return httpx.AsyncClient(transport=transport, base_url="https://tradeguard-vault", timeout=5)


def tokenize_body(pan: str = VISA) -> dict[str, object]:
    return {"pan": pan, "expiry_month": 12, "expiry_year": 2035, "on_behalf_of": WHO}


async def tokenized(vault: Vault) -> str:
    async with client(vault, VaultRole.APP) as app:
        response = await app.post("/v1/tokenize", json=tokenize_body())
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def detokenize_status(vault: Vault, token: str) -> int:
    async with client(vault, VaultRole.PAYMENT) as payment:
        response = await payment.post("/v1/detokenize", json={"token": token, "on_behalf_of": WHO})
    return response.status_code


REFUSED = "tradeguard_vault_client_certificates_refused_total"
OPERATIONS = "tradeguard_vault_operations_total"


class TestRevocation:
    @pytest.mark.spec("PCI-3")
    async def test_a_certificate_revoked_while_the_vault_runs_is_refused_the_others_still_work(
        self, vault: Vault
    ) -> None:
        token = await tokenized(vault)
        # A payment connection opened before the revocation, kept alive.
        kept = client(vault, VaultRole.PAYMENT)
        try:
            first = await kept.post("/v1/detokenize", json={"token": token, "on_behalf_of": WHO})
            assert first.status_code == 200, first.text
            serial = x509_serial(vault.pki.client_cert(VaultRole.PAYMENT))
            revoke(vault.pki, serial, reason="key-compromise", now=datetime.now(UTC))
            # The open connection: its next request is refused (no role), nothing revealed.
            again = await kept.post("/v1/detokenize", json={"token": token, "on_behalf_of": WHO})
            assert again.status_code == 403
            assert again.json()["type"].endswith("/vault-client-certificate-required")
            assert VISA not in again.text
        finally:
            await kept.aclose()
        # New connections with the revoked certificate: refused (after the handshake the
        # first time the list changed, at the handshake from then on).
        for _ in range(2):
            with pytest.raises(httpx.HTTPError):
                await detokenize_status(vault, token)
        # The platform's certificate, not revoked, still works without a restart.
        assert await tokenized(vault)
        assert vault.value(REFUSED, reason="revoked") >= 2
        assert vault.value("tradeguard_vault_crl_revoked_certificates") == 1

    @pytest.mark.spec("PCI-3")
    async def test_a_reissued_certificate_for_the_role_works_after_the_old_one_is_revoked(
        self, vault: Vault
    ) -> None:
        token = await tokenized(vault)
        old = x509_serial(vault.pki.client_cert(VaultRole.PAYMENT))
        revoke(vault.pki, old, reason="superseded", now=datetime.now(UTC))
        with pytest.raises(httpx.HTTPError):
            await detokenize_status(vault, token)
        issue_client(vault.pki, VaultRole.PAYMENT, now=datetime.now(UTC))
        assert await detokenize_status(vault, token) == 200

    @pytest.mark.spec("PCI-3")
    async def test_a_list_not_signed_by_the_ca_written_later_leaves_the_last_good_one_in_force(
        self, vault: Vault, short_dir: Path
    ) -> None:
        token = await tokenized(vault)
        serial = x509_serial(vault.pki.client_cert(VaultRole.PAYMENT))
        revoke(vault.pki, serial, reason="key-compromise", now=datetime.now(UTC))
        with pytest.raises(httpx.HTTPError):
            await detokenize_status(vault, token)
        # Someone replaces crl.pem with an empty list signed by another CA: refused, the
        # revocation stays.
        rogue = VaultPki(short_dir / "rogue")
        issue_ca(rogue, now=datetime.now(UTC))
        write_crl(rogue, now=datetime.now(UTC))
        shutil.copy(rogue.crl, vault.pki.crl)
        with pytest.raises(httpx.HTTPError):
            await detokenize_status(vault, token)
        # The next connection that passes the handshake reads the changed file: refused.
        assert await tokenized(vault)
        assert vault.value("tradeguard_vault_crl_reload_failures_total") == 1
        with pytest.raises(httpx.HTTPError):
            await detokenize_status(vault, token)


class TestRevocationListAtLoad:
    def test_a_list_signed_by_another_ca_is_refused(self, short_dir: Path) -> None:
        pki = VaultPki(short_dir / "pki")
        issue_all(pki, now=datetime.now(UTC))
        rogue = VaultPki(short_dir / "rogue")
        issue_ca(rogue, now=datetime.now(UTC))
        write_crl(rogue, now=datetime.now(UTC))
        shutil.copy(rogue.crl, pki.crl)
        with pytest.raises(CertificateRevocationError, match="not signed by the vault CA"):
            vault_server_context(pki)

    def test_an_expired_or_unreadable_list_is_refused(self, short_dir: Path) -> None:
        pki = VaultPki(short_dir / "pki")
        issue_all(pki, now=datetime.now(UTC))
        write_crl(pki, now=datetime.now(UTC) - timedelta(days=400))
        with pytest.raises(CertificateRevocationError, match="expired"):
            vault_server_context(pki)
        pki.crl.write_text("not a CRL")
        with pytest.raises(CertificateRevocationError, match="not a PEM revocation list"):
            vault_server_context(pki)

    def test_a_directory_without_a_list_gets_an_empty_one_when_the_ca_key_is_here(
        self, short_dir: Path
    ) -> None:
        pki = VaultPki(short_dir / "pki")
        issue_all(pki, now=datetime.now(UTC))
        pki.crl.unlink()
        vault_server_context(pki)
        assert list(load_crl(pki)) == []
        pki.crl.unlink()
        pki.ca_key.unlink()  # the CA key kept offline: no list can be made here
        with pytest.raises(CertificateRevocationError, match="no certificate revocation list"):
            vault_server_context(pki)

    def test_a_revocation_keeps_the_earlier_ones_and_refuses_bad_requests(
        self, short_dir: Path
    ) -> None:
        pki = VaultPki(short_dir / "pki")
        now = datetime.now(UTC)
        issue_all(pki, now=now)
        app = x509_serial(pki.client_cert(VaultRole.APP))
        payment = x509_serial(pki.client_cert(VaultRole.PAYMENT))
        revoke(pki, app, reason="superseded", now=now)
        revoke(pki, payment, reason="key-compromise", now=now)
        revoked = {entry.serial_number for entry in load_crl(pki)}
        assert revoked == {app, payment}
        with pytest.raises(CertificateRevocationError, match="already revoked"):
            revoke(pki, app, reason="superseded", now=now)
        with pytest.raises(CertificateRevocationError, match="was issued by this vault CA"):
            revoke(pki, 12345, reason="superseded", now=now)
        with pytest.raises(CertificateRevocationError, match="the server certificate"):
            revoke(pki, x509_serial(pki.server_cert), reason="superseded", now=now)
        with pytest.raises(CertificateRevocationError, match="unknown reason"):
            revoke(pki, app, reason="because", now=now)


class TestMetrics:
    @pytest.mark.spec("PCI-1")
    async def test_operations_are_counted_by_role_and_outcome_without_cardholder_data(
        self, vault: Vault
    ) -> None:
        token = await tokenized(vault)
        async with client(vault, VaultRole.APP) as app:
            denied = await app.post("/v1/detokenize", json={"token": token, "on_behalf_of": WHO})
            invalid = await app.post("/v1/tokenize", json=tokenize_body("4111111111111112"))
        assert (denied.status_code, invalid.status_code) == (403, 422)
        assert await detokenize_status(vault, token) == 200
        assert await detokenize_status(vault, "tok_" + "A" * 26) == 404
        values = vault.scrape()

        def count(operation: str, role: str, outcome: str) -> float:
            key = (("operation", operation), ("outcome", outcome), ("role", role))
            return values[(OPERATIONS, key)]

        assert count("tokenize", "app", "allowed") == 1
        assert count("tokenize", "app", "invalid") == 1
        assert count("detokenize", "app", "denied") == 1
        assert count("detokenize", "payment", "allowed") == 1
        assert count("detokenize", "payment", "not_found") == 1
        latency = (
            "tradeguard_vault_operation_duration_seconds_count",
            (("operation", "detokenize"),),
        )
        assert values[latency] == 3
        text = vault.last_text
        for secret in (VISA, token, "4111111111111112", WHO, "1111"):
            assert secret not in text

    @pytest.mark.spec("PCI-1")
    async def test_refused_certificates_are_counted_by_reason(
        self, vault: Vault, short_dir: Path
    ) -> None:
        no_cert = ssl.create_default_context(cafile=str(vault.pki.ca_cert))
        transport = httpx.AsyncHTTPTransport(uds=str(vault.socket_path), verify=no_cert)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://tradeguard-vault", timeout=5
        ) as raw:
            with pytest.raises(httpx.HTTPError):
                await raw.get("/v1/health")
        other = VaultPki(short_dir / "other")
        issue_all(other, now=datetime.now(UTC))
        rogue = ssl.create_default_context(cafile=str(vault.pki.ca_cert))
        rogue.load_cert_chain(
            str(other.client_cert(VaultRole.APP)), str(other.client_key(VaultRole.APP))
        )
        transport = httpx.AsyncHTTPTransport(uds=str(vault.socket_path), verify=rogue)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://tradeguard-vault", timeout=5
        ) as raw:
            with pytest.raises(httpx.HTTPError):
                await raw.get("/v1/health")
        assert vault.value(REFUSED, reason="no_certificate") == 1
        assert vault.value(REFUSED, reason="untrusted") == 1

    async def test_the_metrics_are_not_on_the_card_api(self, vault: Vault) -> None:
        async with client(vault, VaultRole.APP) as app:
            response = await app.get("/metrics")
        assert response.status_code == 404
        assert "tradeguard_vault" not in response.text


class TestMetricsAddress:
    @pytest.mark.parametrize(
        ("address", "message"),
        [
            ("10.0.0.5:9465", "not a loopback address"),
            ("0.0.0.0:9465", "not a loopback address"),
            ("localhost:9465", "give an IP address and a port"),
            ("127.0.0.1", "give an IP address and a port"),
            ("127.0.0.1:99999", "out of range"),
        ],
    )
    def test_a_bad_or_non_loopback_address_is_refused(self, address: str, message: str) -> None:
        with pytest.raises(ConfigurationError, match=message):
            parse_metrics_address(address)

    def test_a_private_address_only_when_allowed_and_never_a_public_one(self) -> None:
        assert parse_metrics_address("10.0.0.5:9465", allow_remote=True) == ("10.0.0.5", 9465)
        assert parse_metrics_address("[::1]:9465") == ("::1", 9465)
        for public in ("8.8.8.8:9465", "0.0.0.0:9465"):
            with pytest.raises(ConfigurationError, match="not a loopback or private"):
                parse_metrics_address(public, allow_remote=True)

    def test_a_port_in_use_is_one_clear_error(self) -> None:
        first = MetricsListener(VaultMetrics(), "127.0.0.1:0")
        try:
            with pytest.raises(VaultListenerUnavailable, match="already in use"):
                MetricsListener(VaultMetrics(), f"127.0.0.1:{first.port}")
        finally:
            first.stop()
