"""Builds the vault's services for the platform: in process (the default) or remote."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.core.errors import ConfigurationError
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.tasks import keyring_from, vault_kek, vault_key_policy_from
from tradeguard.db.engine import create_engine, unit_of_work
from tradeguard.ledger.service import Ledger
from tradeguard.vault.cards import CustomerCards
from tradeguard.vault.certs import VaultPki
from tradeguard.vault.client import LocalVaultClient, VaultClient
from tradeguard.vault.domain import TokenFormat, VaultRole
from tradeguard.vault.remote import RemoteVaultClient
from tradeguard.vault.store import VAULT_LOCATIONS, CardVaultStore


@dataclass
class VaultServices:
    cards: CustomerCards
    client: VaultClient
    payment_client: VaultClient | None
    # The vault itself, when it runs in this process (None: remote).
    store: CardVaultStore | None

    async def start(self) -> None:
        """Read the in-process vault's keys (making its first ones); a no-op when remote."""
        if self.store is not None:
            await self.store.start()

    @property
    def ready(self) -> bool:
        return self.store is None or self.store.keyring.loaded

    async def close(self) -> None:
        await self.client.close()
        if self.payment_client is not None and self.payment_client is not self.client:
            await self.payment_client.close()
        if self.store is not None:
            await self.store.close()


class VaultDatabaseShared(ConfigurationError):
    slug = "vault-database-shared"
    title = "The card vault needs a database of its own"


def _database_identity(url: str) -> tuple[str, ...]:
    """Which database a URL names, whatever the driver, user or password: a SQLite file's
    resolved path, or a PostgreSQL server and database."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        name = parsed.database or ""
        if name in ("", ":memory:"):
            return ("sqlite", ":memory:", url)  # a memory database is never another's
        return ("sqlite", str(Path(name).resolve()))
    host = parsed.host or str(parsed.query.get("host") or "localhost")
    return (
        "postgresql",
        host.lower(),
        str(parsed.port or 5432),
        parsed.database or parsed.username or "",
    )


def own_vault_url(settings: Settings) -> str:
    """The vault's database URL, refused when it names the main database (PCI-2/3: the
    vault's tables and credentials are kept apart from the platform's)."""
    if _database_identity(settings.vault_url) == _database_identity(settings.main_database_url):
        raise VaultDatabaseShared(
            "TRADEGUARD_VAULT_DATABASE_URL names the main database; the card vault needs a "
            "database of its own (docs/vault.md)"
        )
    return settings.vault_url


def open_store(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    engine: AsyncEngine | None = None,
    create_key: bool = True,
) -> CardVaultStore:
    """The vault proper on its own database and key-encrypting key (the caller starts it):
    keys/vault/master.key (made on first start when `create_key`), or the vault's own KMS
    key (TRADEGUARD_VAULT_KEK_PROVIDER)."""
    # The key-encrypting key first: a missing key file or KMS key fails before any engine.
    keyring = keyring_from(
        settings,
        clock=clock,
        kek=vault_kek(settings),
        catalogue=VAULT_LOCATIONS,
        create=create_key,
    )
    return CardVaultStore(
        engine=engine or create_engine(own_vault_url(settings)),
        keyring=keyring,
        clock=clock,
        ids=ids,
        default_format=TokenFormat(settings.vault_token_format),
        owns_engine=engine is None,
        policy=vault_key_policy_from(settings),
    )


def build_vault(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    ledger: Ledger,
    sessions: async_sessionmaker[AsyncSession],
    vault_engine: AsyncEngine | None = None,
    store: CardVaultStore | None = None,
) -> VaultServices:
    """The platform's vault services (call `start` next: in process, it reads the vault's
    keys; until it succeeds, card routes answer 503)."""
    payment_client: VaultClient | None
    if settings.vault_endpoint is None:
        store = store or open_store(settings, clock=clock, ids=ids, engine=vault_engine)
        client: VaultClient = LocalVaultClient(store, role=VaultRole.APP)
        payment_client = LocalVaultClient(store, role=VaultRole.PAYMENT)
    else:
        role = VaultRole(settings.vault_client_role)
        client = RemoteVaultClient(
            settings.vault_endpoint,
            pki=VaultPki(settings.vault_pki_dir),
            role=role,
            timeout_seconds=settings.vault_timeout_seconds,
        )
        # A platform holding only the app certificate cannot detokenize at all: the payment
        # service runs with the payment certificate, in a process of its own.
        payment_client = client if role is VaultRole.PAYMENT else None
        store = None

    @asynccontextmanager
    async def main_unit_of_work() -> AsyncIterator[AsyncSession]:
        async with unit_of_work(sessions) as session:
            yield session

    cards = CustomerCards(
        client=client,
        payment_client=payment_client,
        ledger=ledger,
        unit_of_work=main_unit_of_work,
        clock=clock,
        ids=ids,
    )
    return VaultServices(cards=cards, client=client, payment_client=payment_client, store=store)
