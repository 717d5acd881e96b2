"""A migrated vault database beside the main one: a second SQLite file, or a second
PostgreSQL schema; and a started vault store on it with its own master key file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import POSTGRES_URL, _drop_schema, _postgres_engine
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.providers import LocalFileKek
from tradeguard.db.engine import create_engine
from tradeguard.vault.migrate import upgrade as upgrade_vault
from tradeguard.vault.store import CardVaultStore


@dataclass(frozen=True)
class VaultDatabase:
    """Where the test's vault database is: a URL, and on PostgreSQL a schema of its own."""

    url: str
    schema: str | None

    def engine(self) -> AsyncEngine:
        return create_engine(self.url, pg_schema=self.schema)


@pytest.fixture
async def vault_database(db_backend: str, tmp_path: Path) -> AsyncIterator[VaultDatabase]:
    """A migrated vault database (its own chain), dropped afterwards."""
    if db_backend == "sqlite":
        database = VaultDatabase(f"sqlite:///{tmp_path / 'vault.db'}", None)
        eng = database.engine()
        await upgrade_vault(eng)
        await eng.dispose()
        yield database
        return
    eng, schema = await _postgres_engine()
    try:
        await upgrade_vault(eng)
        await eng.dispose()
        yield VaultDatabase(POSTGRES_URL, schema)
    finally:
        await eng.dispose()
        await _drop_schema(schema)


@pytest.fixture
async def vault_engine(vault_database: VaultDatabase) -> AsyncIterator[AsyncEngine]:
    eng = vault_database.engine()
    yield eng
    await eng.dispose()


@pytest.fixture
async def store(
    vault_engine: AsyncEngine, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[CardVaultStore]:
    vault = CardVaultStore.open_with(
        engine=vault_engine,
        provider=LocalFileKek.load_or_create(tmp_path / "vault-keys" / "master.key"),
        clock=clock,
        ids=IdGenerator(clock),
    )
    await vault.start()
    yield vault
    await vault.close()
