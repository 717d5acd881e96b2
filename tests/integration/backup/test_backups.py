"""Backups on SQLite and PostgreSQL: a round trip restores every table row for row, the
files hold no cleartext, every kind of tampering fails verify, restore refuses anything but a
fresh target, and a backup taken while the platform writes is consistent."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.backup import (
    Seeded,
    backup_signer,
    location_of,
    read_outbox,
    restore_target,
    seed,
    start,
    table_rows,
    write_pair,
)
from tests.support.ledger import settle
from tradeguard.backup.errors import BackupRefused, BackupRejected, RejectReason
from tradeguard.backup.format import HEADER_BYTES, LENGTH
from tradeguard.backup.keys import BACKUP_KEY_NAME
from tradeguard.backup.service import (
    CreatedBackup,
    DatabaseLocation,
    create_backup,
    manifest_path,
    restore_backup,
    verify_backup,
)
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.crypto.providers import LocalFileKek
from tradeguard.crypto.tasks import rotate_master_key
from tradeguard.db.engine import session_factory
from tradeguard.ledger.domain import Party
from tradeguard.ledger.tree.keys import load_or_create_log_keys
from tradeguard.ledger.tree.note import NoteSigner
from tradeguard.ledger.verify import verify_chain

SMALL_CHUNKS = 4096  # many chunks from a small database, so chunk tampering has targets


async def backup_of(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    seeded: Seeded,
    clock: FrozenClock,
    out: Path,
    chunk_bytes: int = SMALL_CHUNKS,
) -> CreatedBackup:
    return await create_backup(
        source=await location_of(engine),
        out=out,
        management=seeded.identity.key_management,
        sessions=sessions,
        signer=backup_signer(settings),
        clock=clock,
        chunk_bytes=chunk_bytes,
    )


@pytest.fixture
async def seeded(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> Seeded:
    return await seed(settings, sessions, engine, clock)


@pytest.fixture
async def made(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    seeded: Seeded,
    tmp_path: Path,
) -> CreatedBackup:
    return await backup_of(settings, engine, sessions, seeded, clock, tmp_path / "b.tgbk")


def provider_of(seeded: Seeded) -> LocalFileKek:
    provider = seeded.identity.key_management.keyring.provider
    assert isinstance(provider, LocalFileKek)
    return provider


class TestRoundTrip:
    @pytest.mark.spec("ENC-1")
    async def test_the_restored_database_equals_the_source_table_by_table_row_by_row(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        seeded: Seeded,
        made: CreatedBackup,
        db_backend: str,
        tmp_path: Path,
    ) -> None:
        manifest = made.manifest
        assert manifest.created_at.startswith("2026-01-01T00:00:00")  # the injected clock
        assert manifest.backend == ("sqlite" if db_backend == "sqlite" else "postgresql")
        assert manifest.schema_revision is not None
        assert manifest.chunk_count > 1
        assert (manifest.keys.data_class, manifest.keys.version) == ("backup", 1)
        assert made.signed_by.name == BACKUP_KEY_NAME
        # Its own key, not the ledger's checkpoint key.
        ledger_key = load_or_create_log_keys(settings.ledger_keys_dir, settings.ledger_origin)
        assert made.signed_by.public_key != ledger_key.active.key.public_key

        trusted = [made.signed_by]
        verified = await verify_backup(
            data=made.data, trusted=trusted, provider=provider_of(seeded)
        )
        assert verified.complete

        source = await table_rows(engine)
        assert len(source["users"]) == 3
        assert len(source["notify_outbox"]) == 20
        async with restore_target(db_backend, tmp_path, manifest.pg_schema) as (target, restored):
            await restore_backup(
                data=made.data, trusted=trusted, provider=provider_of(seeded), target=target
            )
            assert await table_rows(restored) == source
            # The restored database works: its chain verifies and its encrypted columns open
            # with the same master key.
            assert (await verify_chain(restored)).ok
            again = await start(settings, session_factory(restored), clock)
            assert await read_outbox(restored, again) == seeded.outbox

    @pytest.mark.spec("ENC-1")
    async def test_the_backup_files_hold_no_cleartext_of_personal_data_or_secrets(
        self,
        settings: Settings,
        seeded: Seeded,
        made: CreatedBackup,
        db_backend: str,
        tmp_path: Path,
    ) -> None:
        files = made.data.read_bytes() + made.manifest_file.read_bytes()
        master = (settings.keys_dir / "master.key").read_bytes()
        assert len(seeded.cleartext) > 60
        for value in seeded.cleartext:
            assert value.encode() not in files, value
        assert master not in files
        # The scan means something: the restored contents do hold the values in clear.
        async with restore_target(db_backend, tmp_path, made.manifest.pg_schema) as (
            target,
            restored,
        ):
            await restore_backup(
                data=made.data,
                trusted=[made.signed_by],
                provider=provider_of(seeded),
                target=target,
            )
            async with restored.connect() as conn:
                emails = set((await conn.execute(text("SELECT email FROM users"))).scalars())
        assert {v for v in seeded.cleartext if v.endswith("@example.org")} <= emails


def chunk_spans(blob: bytes) -> list[tuple[int, int]]:
    spans, at = [], HEADER_BYTES
    while at < len(blob):
        (length,) = LENGTH.unpack_from(blob, at)
        spans.append((at, at + LENGTH.size + length))
        at += LENGTH.size + length
    return spans


class TestTampering:
    async def test_each_tampered_backup_fails_verify_with_its_reason(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        seeded: Seeded,
        made: CreatedBackup,
        tmp_path: Path,
    ) -> None:
        # Another backup under the same file name (in another directory): its manifest's
        # signed name matches, so what refuses it is the backup id.
        (tmp_path / "other").mkdir()
        other = await backup_of(
            settings, engine, sessions, seeded, clock, tmp_path / "other" / made.data.name
        )
        blob = made.data.read_bytes()
        note = made.manifest_file.read_text()
        spans = chunk_spans(blob)
        assert len(spans) > 4
        (a0, a1), (b0, b1) = spans[1], spans[2]
        middle = (spans[2][0] + spans[2][1]) // 2
        flipped = bytearray(blob)
        flipped[middle] ^= 0x01
        edited = note.replace(
            f'"plaintext_bytes":{made.manifest.plaintext_bytes}',
            f'"plaintext_bytes":{made.manifest.plaintext_bytes + 1}',
        )
        assert edited != note
        intruder = NoteSigner(BACKUP_KEY_NAME, ed25519.Ed25519PrivateKey.generate())
        resigned = made.manifest.sign(intruder)  # same contents, someone else's signature
        swapped_signature = note.split("\n\n")[0] + "\n\n" + other.note.split("\n\n")[1]
        cases: dict[str, tuple[bytes, str, set[RejectReason], set[RejectReason]]] = {
            # name: (file, manifest, reasons with the key, reasons without it)
            "one byte flipped": (
                bytes(flipped),
                note,
                {RejectReason.CHUNK_NOT_AUTHENTIC},
                {RejectReason.HASH_MISMATCH},
            ),
            "a chunk dropped": (
                blob[:a0] + blob[a1:],
                note,
                {RejectReason.CHUNK_NOT_AUTHENTIC},
                {RejectReason.TRUNCATED, RejectReason.MALFORMED_CHUNK},
            ),
            "two chunks swapped": (
                blob[:a0] + blob[b0:b1] + blob[a0:a1] + blob[b1:],
                note,
                {RejectReason.CHUNK_NOT_AUTHENTIC},
                {RejectReason.HASH_MISMATCH},
            ),
            "cut after a chunk": (
                blob[: spans[-1][0]],
                note,
                {RejectReason.TRUNCATED},
                {RejectReason.TRUNCATED},
            ),
            "bytes appended": (
                blob + b"\x00" * 8,
                note,
                {RejectReason.TRAILING_DATA},
                {RejectReason.TRAILING_DATA},
            ),
            "manifest edited": (
                blob,
                edited,
                {RejectReason.SIGNATURE_INVALID},
                {RejectReason.SIGNATURE_INVALID},
            ),
            "manifest signed by another key": (
                blob,
                resigned,
                {RejectReason.SIGNATURE_INVALID},
                {RejectReason.SIGNATURE_INVALID},
            ),
            "signature taken from another manifest": (
                blob,
                swapped_signature,
                {RejectReason.SIGNATURE_INVALID},
                {RejectReason.SIGNATURE_INVALID},
            ),
            "manifest of another backup": (
                blob,
                other.note,
                {RejectReason.PAIR_MISMATCH},
                {RejectReason.PAIR_MISMATCH},
            ),
        }
        trusted = [made.signed_by]
        for number, (name, (data, manifest, keyed, keyless)) in enumerate(cases.items()):
            # The signed file name kept, so each case reaches the check it is about.
            (tmp_path / f"t{number}").mkdir()
            path = tmp_path / f"t{number}" / made.data.name
            path.write_bytes(data)
            manifest_path(path).write_text(manifest)
            with pytest.raises(BackupRejected) as with_key:
                await verify_backup(data=path, trusted=trusted, provider=provider_of(seeded))
            assert with_key.value.reason in keyed, name
            with pytest.raises(BackupRejected) as without_key:
                await verify_backup(data=path, trusted=trusted, provider=None)
            assert without_key.value.reason in keyless, name
        # The untouched pair still verifies.
        await verify_backup(data=made.data, trusted=trusted, provider=provider_of(seeded))


class TestSignedFileName:
    async def test_a_pair_copied_under_another_name_fails_verify_and_restore(
        self, seeded: Seeded, made: CreatedBackup, db_backend: str, tmp_path: Path
    ) -> None:
        # b.tgbk + b.tgbk.manifest copied to nightly.tgbk + nightly.tgbk.manifest: every byte
        # is sound, but the manifest was signed for b.tgbk.
        renamed = tmp_path / "nightly.tgbk"
        renamed.write_bytes(made.data.read_bytes())
        manifest_path(renamed).write_text(made.note)
        trusted = [made.signed_by]
        for provider in (provider_of(seeded), None):
            with pytest.raises(BackupRejected) as caught:
                await verify_backup(data=renamed, trusted=trusted, provider=provider)
            assert caught.value.reason is RejectReason.FILE_NAME_MISMATCH
            assert "'b.tgbk'" in caught.value.detail
        async with restore_target(db_backend, tmp_path, made.manifest.pg_schema) as (
            target,
            restored,
        ):
            with pytest.raises(BackupRejected) as caught:
                await restore_backup(
                    data=renamed, trusted=trusted, provider=provider_of(seeded), target=target
                )
            assert caught.value.reason is RejectReason.FILE_NAME_MISMATCH
            if db_backend == "sqlite":
                assert not target.sqlite_path.exists()
            else:
                async with restored.connect() as conn:
                    assert not await conn.scalar(
                        text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"),
                        {"s": made.manifest.pg_schema},
                    )
        # Under its signed name, in another directory, the same pair verifies.
        (tmp_path / "moved").mkdir()
        moved = tmp_path / "moved" / made.data.name
        moved.write_bytes(made.data.read_bytes())
        manifest_path(moved).write_text(made.note)
        await verify_backup(data=moved, trusted=trusted, provider=provider_of(seeded))


class TestRestoreRefusals:
    async def test_restore_refuses_a_target_that_is_not_fresh_and_changes_nothing(
        self, seeded: Seeded, made: CreatedBackup, db_backend: str, tmp_path: Path
    ) -> None:
        trusted = [made.signed_by]
        provider = provider_of(seeded)
        async with restore_target(db_backend, tmp_path, made.manifest.pg_schema) as (
            target,
            restored,
        ):
            if db_backend == "sqlite":
                target.sqlite_path.write_bytes(b"precious")
            else:
                schema = made.manifest.pg_schema
                async with restored.begin() as conn:
                    await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                    await conn.execute(text(f'CREATE TABLE "{schema}".precious (x int)'))
            with pytest.raises(BackupRefused, match=r"already has a schema|exists"):
                await restore_backup(
                    data=made.data, trusted=trusted, provider=provider, target=target
                )
            if db_backend == "sqlite":
                assert target.sqlite_path.read_bytes() == b"precious"
                # Left-over companion files of a database count as a database too.
                target.sqlite_path.unlink()
                Path(str(target.sqlite_path) + "-wal").write_bytes(b"")  # noqa: ASYNC240
                with pytest.raises(BackupRefused, match="-wal exists"):
                    await restore_backup(
                        data=made.data, trusted=trusted, provider=provider, target=target
                    )
            else:
                async with restored.connect() as conn:
                    tables = await conn.scalar(
                        text(
                            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
                            "('pg_catalog', 'information_schema')"
                        )
                    )
                assert tables == 1

    async def test_a_tampered_backup_is_refused_before_anything_is_restored(
        self, seeded: Seeded, made: CreatedBackup, db_backend: str, tmp_path: Path
    ) -> None:
        blob = bytearray(made.data.read_bytes())
        _, last_end = chunk_spans(bytes(blob))[-1]
        blob[last_end - 1] ^= 0x80  # the very last byte: the rest of the stream is sound
        made.data.write_bytes(bytes(blob))
        async with restore_target(db_backend, tmp_path, made.manifest.pg_schema) as (
            target,
            restored,
        ):
            with pytest.raises(BackupRejected):
                await restore_backup(
                    data=made.data,
                    trusted=[made.signed_by],
                    provider=provider_of(seeded),
                    target=target,
                )
            if db_backend == "sqlite":
                assert not target.sqlite_path.exists()
                assert list(target.sqlite_path.parent.glob(".restored*")) == []
            else:
                async with restored.connect() as conn:
                    assert not await conn.scalar(
                        text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"),
                        {"s": made.manifest.pg_schema},
                    )

    async def test_another_master_key_cannot_open_the_backup(
        self, made: CreatedBackup, db_backend: str, tmp_path: Path
    ) -> None:
        stranger = LocalFileKek.load_or_create(tmp_path / "other" / "master.key")
        with pytest.raises(BackupRejected) as caught:
            await verify_backup(data=made.data, trusted=[made.signed_by], provider=stranger)
        assert caught.value.reason is RejectReason.DATA_KEY_UNAVAILABLE
        assert "master key the backup was made with" in caught.value.detail


class TestRestoreAfterMasterKeyRotation:
    @pytest.mark.spec("ENC-1")
    async def test_the_kek_the_manifest_names_is_chosen_among_those_given(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        seeded: Seeded,
        made: CreatedBackup,
        db_backend: str,
        tmp_path: Path,
    ) -> None:
        source = await table_rows(engine)
        management = seeded.identity.key_management
        old = provider_of(seeded)
        new = LocalFileKek(os.urandom(32))
        run = await rotate_master_key(management, sessions, new, actor=Party("operator", "test"))
        assert run.finished
        async with sessions() as session:
            assert set(await management.kek_counts(session)) == {new.kek_id}
        trusted = [made.signed_by]
        async with restore_target(db_backend, tmp_path, made.manifest.pg_schema) as (
            target,
            restored,
        ):
            # The installation's current KEK alone: refused by name, nothing restored.
            with pytest.raises(BackupRejected) as caught:
                await restore_backup(data=made.data, trusted=trusted, provider=new, target=target)
            assert caught.value.reason is RejectReason.DATA_KEY_UNAVAILABLE
            assert caught.value.detail.startswith(
                f"the backup's keys are wrapped under the key-encrypting key {old.kek_id}, "
                f"which was not given (given: {new.kek_id})"
            )
            assert await is_empty(db_backend, target, restored)
            # With the old one among others, that one opens it, whatever the order.
            await restore_backup(
                data=made.data, trusted=trusted, provider=new, also=[new, old], target=target
            )
            assert await table_rows(restored) == source

    async def test_a_manifest_naming_another_kek_fails_verify(
        self, seeded: Seeded, made: CreatedBackup
    ) -> None:
        old = provider_of(seeded)
        other = LocalFileKek(os.urandom(32))
        manifest = manifest_path(made.data)
        manifest.write_text(manifest.read_text().replace(old.kek_id, other.kek_id))
        for keks in ([old], [other], [old, other], []):
            with pytest.raises(BackupRejected) as caught:
                await verify_backup(
                    data=made.data, trusted=[made.signed_by], provider=None, also=keks
                )
            assert caught.value.reason is RejectReason.SIGNATURE_INVALID


async def is_empty(db_backend: str, target: DatabaseLocation, restored: AsyncEngine) -> bool:
    if db_backend == "sqlite":
        return not target.sqlite_path.exists()
    async with restored.connect() as conn:
        tables = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
                "('pg_catalog', 'information_schema')"
            )
        )
    return tables == 0


class TestConsistency:
    async def test_a_backup_taken_while_the_platform_writes_is_consistent(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        seeded: Seeded,
        db_backend: str,
        tmp_path: Path,
    ) -> None:
        identity = seeded.identity
        written: list[int] = []
        stop = asyncio.Event()

        async def writer() -> None:
            n = 1000
            while not stop.is_set():
                await write_pair(identity, n)
                written.append(n)
                n += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(writer())
        while len(written) < 5:  # noqa: ASYNC110 - waiting for the writer to get going
            await asyncio.sleep(0.01)
        before = len(written)
        made = await backup_of(settings, engine, sessions, seeded, clock, tmp_path / "live.tgbk")
        during = len(written) - before
        stop.set()
        await task
        assert during > 0, "no write committed while the backup ran"

        async with restore_target(db_backend, tmp_path, made.manifest.pg_schema) as (
            target,
            restored,
        ):
            await restore_backup(
                data=made.data,
                trusted=[made.signed_by],
                provider=provider_of(seeded),
                target=target,
            )
            await settle(restored)
            # Each unit of work wrote an outbox message and an event about it: in the backup,
            # both or neither, never half of one.
            async with restored.connect() as conn:
                events = [
                    row[0] for row in await conn.execute(text("SELECT body FROM audit_event"))
                ]
            paired = {
                json.loads(bytes(body))["data"]["message"]
                for body in events
                if json.loads(bytes(body))["type"] == "test:backup:pair"
            }
            again = await start(settings, session_factory(restored), clock)
            outbox = await read_outbox(restored, again)
            assert set(outbox) == paired
            assert len(outbox) >= 20 + before
            assert (await verify_chain(restored)).ok
