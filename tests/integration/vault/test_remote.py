"""The vault in a process of its own (PCI-3): mutual TLS 1.3 on a Unix socket, roles from
client certificates, and the platform using it through RemoteVaultClient (SQLite and
PostgreSQL). The server runs on its own thread and event loop, with its own engine."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.vault.conftest import VaultDatabase
from tests.support.api import running_api
from tests.support.cards import AMEX, AMEX_CVV, VISA
from tests.support.trading import signed_in_trader
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock, SystemClock
from tradeguard.core.errors import ConfigurationError
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.providers import LocalFileKek
from tradeguard.vault.certs import VaultPki, issue_all, issue_ca, issue_client
from tradeguard.vault.domain import InvalidCardNumber, VaultAccessDenied, VaultRole
from tradeguard.vault.remote import RemoteVaultClient, client_ssl_context
from tradeguard.vault.server import create_vault_app
from tradeguard.vault.serving import (
    VaultListenerUnavailable,
    VaultServer,
    bind_vault_socket,
    parse_listen,
)
from tradeguard.vault.store import CardVaultStore, VaultUnavailable

WHO = "user:alice"


@dataclass
class RunningVault:
    pki: VaultPki
    endpoint: str
    socket_path: Path

    def client(self, role: VaultRole) -> RemoteVaultClient:
        return RemoteVaultClient(self.endpoint, pki=self.pki, role=role)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A Unix socket path must stay under ~108 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="tgv-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vault_process(
    vault_database: VaultDatabase, short_dir: Path, tmp_path: Path
) -> Iterator[RunningVault]:
    """`tradeguard vault serve` in miniature: its own thread, loop, engine and key file.
    Certificates use the real clock: OpenSSL checks validity against it."""
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
    listen = f"unix://{short_dir / 'vault.sock'}"
    started = threading.Event()
    server = VaultServer(
        create_vault_app(store), pki, bind_vault_socket(listen), on_started=started.set
    )
    thread = threading.Thread(target=server.run, name="vault-server", daemon=True)
    thread.start()
    assert started.wait(30), "the vault server did not start"
    try:
        yield RunningVault(pki, listen, short_dir / "vault.sock")
    finally:
        server.stop()
        thread.join(30)


@contextlib.asynccontextmanager
async def raw_client(
    vault: RunningVault, context: ssl.SSLContext | None
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(uds=str(vault.socket_path), verify=context or False)
    scheme = "https" if context is not None else "http"
    async with httpx.AsyncClient(
        transport=transport, base_url=f"{scheme}://tradeguard-vault", timeout=5
    ) as client:
        yield client


def tokenize_body(pan: str = VISA) -> dict[str, object]:
    return {"pan": pan, "expiry_month": 12, "expiry_year": 2035, "on_behalf_of": WHO}


class TestMutualTls:
    @pytest.mark.spec("PCI-3", "PCI-2")
    async def test_the_app_certificate_tokenizes_but_may_not_detokenize(
        self, vault_process: RunningVault
    ) -> None:
        client = vault_process.client(VaultRole.APP)
        try:
            card = await client.tokenize(
                pan=VISA, expiry_month=12, expiry_year=2035, on_behalf_of=WHO
            )
            assert (card.brand.value, card.last4) == ("visa", "1111")
            assert [
                c.token for c in await client.describe(tokens=[card.token], on_behalf_of=WHO)
            ] == [card.token]
            with pytest.raises(VaultAccessDenied):
                await client.detokenize(token=card.token, on_behalf_of=WHO)
            with pytest.raises(InvalidCardNumber) as bad:
                await client.tokenize(
                    pan="4111111111111112", expiry_month=12, expiry_year=2035, on_behalf_of=WHO
                )
            assert bad.value.problem.value == "checksum"
        finally:
            await client.close()
        context = client_ssl_context(vault_process.pki, VaultRole.APP)
        async with raw_client(vault_process, context) as raw:
            response = await raw.post(
                "/v1/detokenize", json={"token": card.token, "on_behalf_of": WHO}
            )
            refused = await raw.post("/v1/tokenize", json=tokenize_body("4111111111111112"))
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/vault-access-denied")
        assert refused.status_code == 422
        assert "4111111111111112" not in refused.text

    @pytest.mark.spec("PCI-1")
    async def test_a_card_number_sent_as_a_json_key_is_never_repeated(
        self, vault_process: RunningVault
    ) -> None:
        """Left from the review of issue #10: the vault server's validation errors repeated
        the client's key names."""
        context = client_ssl_context(vault_process.pki, VaultRole.APP)
        async with raw_client(vault_process, context) as raw:
            refused = await raw.post(
                "/v1/tokenize", json={**tokenize_body(), "4111111111111111": "x"}
            )
        assert refused.status_code == 422
        assert "4111111111111111" not in refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert {
            "location": ["body", "(unknown field)"],
            "message": "Extra inputs are not permitted",
        } in refused.json()["errors"]

    @pytest.mark.spec("PCI-3", "PCI-2")
    async def test_the_payment_certificate_detokenizes_and_takes_a_security_code(
        self, vault_process: RunningVault
    ) -> None:
        client = vault_process.client(VaultRole.PAYMENT)
        try:
            card = await client.tokenize(
                pan=AMEX, expiry_month=12, expiry_year=2035, on_behalf_of=WHO
            )
            assert (await client.detokenize(token=card.token, on_behalf_of=WHO)).pan == AMEX
            prepared = await client.authorization_card(
                token=card.token, cvv=AMEX_CVV, on_behalf_of="service:payments"
            )
            assert prepared.secret.value == AMEX_CVV
        finally:
            await client.close()

    async def test_a_security_code_answered_422_is_logged_invalid(
        self, vault_process: RunningVault, vault_database: VaultDatabase
    ) -> None:
        context = client_ssl_context(vault_process.pki, VaultRole.PAYMENT)
        async with raw_client(vault_process, context) as raw:
            made = await raw.post("/v1/tokenize", json=tokenize_body(VISA))
            token = made.json()["token"]
            answers = [
                await raw.post(
                    "/v1/authorization-card",
                    json={"token": token, "cvv": cvv, "on_behalf_of": "service:payments"},
                )
                for cvv in ("12", "12a")
            ]
        assert [a.status_code for a in answers] == [422, 422]
        engine = vault_database.engine()
        try:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text(
                            "SELECT outcome FROM vault_access_log WHERE operation = 'authorize'"
                            " ORDER BY occurred_ns, id"
                        )
                    )
                ).all()
        finally:
            await engine.dispose()
        assert [r[0] for r in rows] == ["invalid", "invalid"]

    @pytest.mark.spec("PCI-3")
    async def test_a_client_without_a_certificate_is_refused_at_the_handshake(
        self, vault_process: RunningVault
    ) -> None:
        context = ssl.create_default_context(cafile=str(vault_process.pki.ca_cert))
        async with raw_client(vault_process, context) as raw:
            with pytest.raises(httpx.HTTPError):
                await raw.post("/v1/tokenize", json=tokenize_body())
        client = RemoteVaultClient(
            vault_process.endpoint, pki=vault_process.pki, role=VaultRole.APP, context=context
        )
        try:
            with pytest.raises(VaultUnavailable):
                await client.tokenize(pan=VISA, expiry_month=12, expiry_year=2035, on_behalf_of=WHO)
        finally:
            await client.close()

    @pytest.mark.spec("PCI-3")
    async def test_a_payment_certificate_from_another_ca_is_refused(
        self, vault_process: RunningVault, short_dir: Path
    ) -> None:
        rogue = VaultPki(short_dir / "rogue")
        now = datetime.now(UTC)
        issue_ca(rogue, now=now)
        issue_client(rogue, VaultRole.PAYMENT, now=now)
        context = ssl.create_default_context(cafile=str(vault_process.pki.ca_cert))
        context.load_cert_chain(
            str(rogue.client_cert(VaultRole.PAYMENT)), str(rogue.client_key(VaultRole.PAYMENT))
        )
        async with raw_client(vault_process, context) as raw:
            with pytest.raises(httpx.HTTPError):
                await raw.post("/v1/detokenize", json={"token": "tok_x", "on_behalf_of": WHO})

    @pytest.mark.spec("PCI-3")
    async def test_plain_http_and_an_untrusted_server_are_refused(
        self, vault_process: RunningVault, short_dir: Path
    ) -> None:
        async with raw_client(vault_process, None) as raw:
            with pytest.raises(httpx.HTTPError):
                await raw.post("/v1/tokenize", json=tokenize_body())
        # A client that trusts only another CA does not talk to this server either.
        other = VaultPki(short_dir / "other")
        issue_all(other, now=datetime.now(UTC))
        client = RemoteVaultClient(vault_process.endpoint, pki=other, role=VaultRole.PAYMENT)
        try:
            with pytest.raises(VaultUnavailable):
                await client.detokenize(token="tok_x", on_behalf_of=WHO)
        finally:
            await client.close()

    @pytest.mark.spec("PCI-3")
    async def test_the_socket_is_only_for_its_owner_and_group(
        self, vault_process: RunningVault
    ) -> None:
        assert vault_process.socket_path.stat().st_mode & 0o777 == 0o660
        assert (vault_process.pki.ca_key.stat().st_mode & 0o777) == 0o600
        for role in VaultRole:
            assert vault_process.pki.client_key(role).stat().st_mode & 0o777 == 0o600


class TestOneVaultPerSocket:
    async def test_a_second_vault_on_the_same_socket_is_refused_and_the_first_keeps_serving(
        self, vault_process: RunningVault
    ) -> None:
        inode = vault_process.socket_path.stat().st_ino
        with pytest.raises(VaultListenerUnavailable, match="already listening"):
            bind_vault_socket(vault_process.endpoint)
        assert vault_process.socket_path.stat().st_ino == inode
        client = vault_process.client(VaultRole.APP)
        try:
            card = await client.tokenize(
                pan=VISA, expiry_month=12, expiry_year=2035, on_behalf_of=WHO
            )
        finally:
            await client.close()
        assert card.last4 == "1111"

    def test_a_stale_socket_file_is_replaced(self, short_dir: Path) -> None:
        path = short_dir / "vault.sock"
        left = bind_vault_socket(f"unix://{path}")
        left.close()  # a vault killed without removing its socket file
        assert path.is_socket()
        sock = bind_vault_socket(f"unix://{path}")
        try:
            assert path.is_socket()
            assert path.stat().st_mode & 0o777 == 0o660
        finally:
            sock.close()

    def test_a_path_that_is_not_a_socket_is_refused_and_kept(self, short_dir: Path) -> None:
        path = short_dir / "vault.sock"
        path.write_text("not a socket")
        with pytest.raises(VaultListenerUnavailable, match="not a socket"):
            bind_vault_socket(f"unix://{path}")
        assert path.read_text() == "not a socket"

    def test_a_port_in_use_and_an_address_not_ours_are_refused(self) -> None:
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(VaultListenerUnavailable, match="already in use"):
                bind_vault_socket(f"https://127.0.0.1:{port}")
        finally:
            taken.close()
        with pytest.raises(VaultListenerUnavailable, match="not an address of this machine"):
            bind_vault_socket("https://10.255.255.254:9443")


class TestListenAddresses:
    @pytest.mark.spec("PCI-3")
    @pytest.mark.parametrize(
        "listen",
        [
            "https://8.8.8.8:9443",
            "https://0.0.0.0:9443",
            "https://[::]:9443",
            "http://x",
            # Ranges the standard library calls private that are no deployment network.
            "https://203.0.113.7:9443",
            "https://198.18.0.1:9443",
            "https://[2001:db8::1]:9443",
        ],
    )
    def test_public_or_wildcard_addresses_are_refused(self, listen: str) -> None:
        with pytest.raises(ConfigurationError):
            parse_listen(listen)

    @pytest.mark.parametrize(
        "listen",
        [
            "https://10.0.0.5:9443",
            "https://127.0.0.1:9443",
            "https://[fd00::1]:9443",
            "https://172.31.0.2:9443",
            "https://192.168.1.10:9443",
            "https://[::1]:9443",
        ],
    )
    def test_private_and_loopback_addresses_are_accepted(self, listen: str) -> None:
        assert parse_listen(listen)[1] is not None

    def test_the_endpoint_setting_refuses_public_addresses(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="private"):
            Settings(vault_endpoint="https://8.8.8.8:9443", _env_file=None)  # type: ignore[call-arg]


class TestPlatformOverMutualTls:
    @pytest.mark.spec("PCI-3", "PCI-2")
    async def test_the_platform_stores_cards_in_the_remote_vault_and_holds_no_vault_data(
        self,
        vault_process: RunningVault,
        settings: Settings,
        engine: AsyncEngine,
        vault_database: VaultDatabase,
        clock: FrozenClock,
    ) -> None:
        remote = settings.model_copy(
            update={
                "vault_endpoint": vault_process.endpoint,
                "vault_tls_dir": vault_process.pki.directory,
            }
        )
        async with running_api(remote, engine, clock) as api:
            assert api.app.state.vault.store is None  # no vault database in this process
            trader = await signed_in_trader(api, api.client(), "alice")
            added = await trader.post(
                "/api/v1/me/cards", {"pan": VISA, "expiry_month": 12, "expiry_year": 2035}
            )
            assert added.status_code == 201, added.text
            assert added.json()["masked"] == "***1111"
            # The platform's client holds the app certificate: it cannot detokenize.
            assert api.app.state.vault.payment_client is None
        assert not remote.vault_master_key_file.exists()
        check = vault_database.engine()
        try:
            async with check.connect() as conn:
                count = (await conn.execute(text("SELECT count(*) FROM vault_card"))).scalar()
        finally:
            await check.dispose()
        assert count == 1
