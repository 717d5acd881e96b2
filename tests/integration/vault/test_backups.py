"""Backups of the card vault's database (ENC-1, PCI DSS 3.5.1) on SQLite and PostgreSQL:
sealed under the vault's own key hierarchy, restored into a fresh database equal table by
table and row by row (and the restored vault detokenizes with the same vault master key),
no PAN in clear in the files, a tampered backup fails verify, and neither key hierarchy
opens the other's backups."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.integration.vault.conftest import VaultDatabase
from tests.support.backup import backup_signer, location_of, restore_target, start, table_rows
from tests.support.cards import TEST_PANS
from tradeguard.backup.errors import BackupRefused, BackupRejected, RejectReason
from tradeguard.backup.keys import VAULT_BACKUP_KEY_NAME, load_or_create_backup_keys
from tradeguard.backup.service import (
    MAIN,
    VAULT,
    CreatedBackup,
    DatabaseLocation,
    create_backup,
    manifest_path,
    open_data_key,
    restore_backup,
    verify_backup,
)
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.providers import LocalFileKek
from tradeguard.ledger.tree.note import NoteSigner
from tradeguard.vault.domain import VaultRole
from tradeguard.vault.store import CardVaultStore, VaultCaller

APP = VaultCaller(VaultRole.APP, "user:alice")
PAYMENT = VaultCaller(VaultRole.PAYMENT, "service:payments")
PANS = list(TEST_PANS)[:8]
SMALL_CHUNKS = 4096


def vault_signer(tmp_path: Path) -> NoteSigner:
    return load_or_create_backup_keys(tmp_path / "vault-backup-keys", VAULT_BACKUP_KEY_NAME).active


def vault_kek(tmp_path: Path) -> LocalFileKek:
    # The key file the `store` fixture was opened with.
    return LocalFileKek.load_or_create(tmp_path / "vault-keys" / "master.key")


async def vault_location(database: VaultDatabase, engine: AsyncEngine) -> DatabaseLocation:
    if database.schema is None:
        return DatabaseLocation(database.url)
    return await location_of(engine)


@pytest.fixture
async def cards(store: CardVaultStore) -> dict[str, str]:
    stored = {}
    for pan in PANS:
        card = await store.tokenize(APP, pan=pan, expiry_month=12, expiry_year=2031)
        stored[card.token] = pan
    return stored


@pytest.fixture
async def made(
    store: CardVaultStore,
    cards: dict[str, str],
    vault_database: VaultDatabase,
    vault_engine: AsyncEngine,
    clock: FrozenClock,
    tmp_path: Path,
) -> CreatedBackup:
    return await create_backup(
        source=await vault_location(vault_database, vault_engine),
        out=tmp_path / "vault.tgbk",
        management=store.keys,
        sessions=store.sessions,
        signer=vault_signer(tmp_path),
        clock=clock,
        chunk_bytes=SMALL_CHUNKS,
        kind=VAULT,
    )


class TestVaultRoundTrip:
    @pytest.mark.spec("ENC-1", "PCI-2")
    async def test_the_restored_vault_equals_the_source_and_detokenizes_with_the_vault_key(
        self,
        made: CreatedBackup,
        cards: dict[str, str],
        vault_engine: AsyncEngine,
        db_backend: str,
        clock: FrozenClock,
        tmp_path: Path,
    ) -> None:
        manifest = made.manifest
        assert manifest.keys.data_class == "card_vault"
        assert manifest.keys.kek_id == vault_kek(tmp_path).kek_id
        assert manifest.schema_revision is not None
        assert manifest.schema_revision.startswith("v")  # the vault's own chain
        assert made.signed_by.name == VAULT_BACKUP_KEY_NAME
        assert manifest.chunk_count >= 1
        trusted = [made.signed_by]
        verified = await verify_backup(
            data=made.data, trusted=trusted, provider=vault_kek(tmp_path), kind=VAULT
        )
        assert verified.complete

        source = await table_rows(vault_engine)
        assert len(source["vault_card"]) == len(PANS)
        async with restore_target(db_backend, tmp_path, manifest.pg_schema) as (target, restored):
            await restore_backup(
                data=made.data,
                trusted=trusted,
                provider=vault_kek(tmp_path),
                target=target,
                kind=VAULT,
            )
            assert await table_rows(restored) == source
            again = CardVaultStore.open_with(
                engine=restored, provider=vault_kek(tmp_path), clock=clock, ids=IdGenerator(clock)
            )
            await again.start()
            try:
                revealed = {t: (await again.detokenize(PAYMENT, t)).pan for t in cards}
            finally:
                await again.close()
            assert revealed == cards

    @pytest.mark.spec("ENC-1")
    async def test_the_backup_files_hold_no_card_number_in_clear(
        self, made: CreatedBackup, cards: dict[str, str]
    ) -> None:
        blobs = made.data.read_bytes() + made.manifest_file.read_bytes()
        for pan in cards.values():
            assert pan.encode() not in blobs
            assert pan[-8:].encode() not in blobs

    async def test_restore_refuses_a_target_that_is_not_fresh(
        self, made: CreatedBackup, db_backend: str, tmp_path: Path
    ) -> None:
        schema = made.manifest.pg_schema
        async with restore_target(db_backend, tmp_path, schema) as (target, eng):
            async with eng.begin() as conn:
                if schema is None:
                    await conn.execute(text("CREATE TABLE squatter (id INTEGER)"))
                else:  # a backup of one schema: a target already holding that schema
                    await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            with pytest.raises(BackupRefused):
                await restore_backup(
                    data=made.data,
                    trusted=[made.signed_by],
                    provider=vault_kek(tmp_path),
                    target=target,
                    kind=VAULT,
                )


class TestTampered:
    @pytest.mark.spec("ENC-1")
    @pytest.mark.parametrize("where", ["middle", "last_byte"])
    async def test_a_tampered_vault_backup_fails_verify_and_restores_nothing(
        self, made: CreatedBackup, db_backend: str, tmp_path: Path, where: str
    ) -> None:
        blob = bytearray(made.data.read_bytes())
        at = len(blob) // 2 if where == "middle" else len(blob) - 1
        blob[at] ^= 0x01
        made.data.write_bytes(bytes(blob))
        trusted = [made.signed_by]
        with pytest.raises(BackupRejected) as rejected:
            await verify_backup(
                data=made.data, trusted=trusted, provider=vault_kek(tmp_path), kind=VAULT
            )
        assert rejected.value.reason in {
            RejectReason.HASH_MISMATCH,
            RejectReason.CHUNK_NOT_AUTHENTIC,
        }
        with pytest.raises(BackupRejected):
            await verify_backup(data=made.data, trusted=trusted, provider=None, kind=VAULT)
        async with restore_target(db_backend, tmp_path, made.manifest.pg_schema) as (target, eng):
            with pytest.raises(BackupRejected):
                await restore_backup(
                    data=made.data,
                    trusted=trusted,
                    provider=vault_kek(tmp_path),
                    target=target,
                    kind=VAULT,
                )
            assert await table_rows(eng) == {}

    async def test_an_edited_manifest_fails_its_signature(
        self, made: CreatedBackup, tmp_path: Path
    ) -> None:
        manifest = manifest_path(made.data)
        manifest.write_text(manifest.read_text().replace('"card_vault"', '"backup"'))
        with pytest.raises(BackupRejected) as rejected:
            await verify_backup(
                data=made.data, trusted=[made.signed_by], provider=vault_kek(tmp_path), kind=VAULT
            )
        assert rejected.value.reason is RejectReason.SIGNATURE_INVALID


class TestKeySeparation:
    @pytest.mark.spec("ENC-1", "PCI-2")
    async def test_the_platform_master_key_does_not_open_a_vault_backup(
        self, made: CreatedBackup, tmp_path: Path
    ) -> None:
        platform = LocalFileKek.load_or_create(tmp_path / "platform-keys" / "master.key")
        trusted = [made.signed_by]  # even with the vault's public signing key
        # As a vault backup, under the platform's key: the KEK it names is not given.
        with pytest.raises(BackupRejected) as rejected:
            await verify_backup(data=made.data, trusted=trusted, provider=platform, kind=VAULT)
        assert rejected.value.reason is RejectReason.DATA_KEY_UNAVAILABLE
        assert platform.kek_id not in rejected.value.detail.split("given")[0]
        # Through the platform's command: refused as another database's backup.
        with pytest.raises(BackupRejected) as rejected:
            await verify_backup(data=made.data, trusted=trusted, provider=platform, kind=MAIN)
        assert rejected.value.reason is RejectReason.WRONG_DATABASE
        assert "tradeguard vault backup" in rejected.value.detail
        # The key opened directly: no way in either.
        with pytest.raises(BackupRejected):
            await open_data_key([platform], made.manifest, VAULT)
        with pytest.raises(BackupRejected):
            await open_data_key([platform], made.manifest, MAIN)

    @pytest.mark.spec("ENC-1", "PCI-2")
    async def test_the_vault_master_key_does_not_open_a_platform_backup(
        self,
        made: CreatedBackup,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        tmp_path: Path,
    ) -> None:
        identity = await start(settings, sessions, clock)
        platform = await create_backup(
            source=await location_of(engine),
            out=tmp_path / "platform.tgbk",
            management=identity.key_management,
            sessions=sessions,
            signer=backup_signer(settings),
            clock=clock,
        )
        own = identity.key_management.keyring.provider
        trusted = [platform.signed_by]
        assert (await verify_backup(data=platform.data, trusted=trusted, provider=own)).complete
        with pytest.raises(BackupRejected) as rejected:
            await verify_backup(data=platform.data, trusted=trusted, provider=vault_kek(tmp_path))
        assert rejected.value.reason is RejectReason.DATA_KEY_UNAVAILABLE
        with pytest.raises(BackupRejected) as rejected:
            await verify_backup(
                data=platform.data, trusted=trusted, provider=vault_kek(tmp_path), kind=VAULT
            )
        assert rejected.value.reason is RejectReason.WRONG_DATABASE
        assert "`tradeguard backup`" in rejected.value.detail
        # Each signing key vouches for its own kind only.
        with pytest.raises(BackupRejected) as rejected:
            await verify_backup(
                data=platform.data, trusted=[made.signed_by], provider=own, kind=MAIN
            )
        assert rejected.value.reason is RejectReason.SIGNATURE_INVALID
