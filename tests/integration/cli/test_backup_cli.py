"""`tradeguard backup` on a real data directory, SQLite and PostgreSQL (the whole database):
create, verify and restore end to end with every operation in a ledger; a tampered backup
fails verify on one line with exit 1; signature-only verification with the public key says
what it could not check; restore refuses a target that is not fresh."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from tests.conftest import POSTGRES_URL
from tests.integration.cli.test_keys_cli import seed
from tests.support.backup import table_rows
from tests.support.moto_kms import KmsPeer, required_kms_peer, use_peer_credentials
from tradeguard.cli.main import app
from tradeguard.crypto.legacy import master_key_id
from tradeguard.crypto.providers import LocalFileKek, create_master_key_file, read_master_key
from tradeguard.db.engine import async_url, create_engine

runner = CliRunner()


async def _admin(statement: str) -> None:
    admin = create_async_engine(async_url(POSTGRES_URL), isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


class Databases:
    """Fresh PostgreSQL databases for one test, dropped afterwards."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def new(self) -> str:
        base = make_url(POSTGRES_URL)
        name = f"{base.database}_c{secrets.token_hex(4)}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return base.set(database=name).render_as_string(hide_password=False)

    def drop(self) -> None:
        for name in self.names:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def databases(db_backend: str) -> Iterator[Databases]:
    made = Databases()
    yield made
    made.drop()


@pytest.fixture
def data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_backend: str, databases: Databases
) -> Path:
    if db_backend == "postgres":
        monkeypatch.setenv("TRADEGUARD_DATABASE_URL", databases.new())
    else:
        monkeypatch.delenv("TRADEGUARD_DATABASE_URL", raising=False)
    directory = tmp_path / "var"
    result = runner.invoke(app, ["init", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output
    assert "backup vkey      tradeguard-backup+" in result.output
    return directory


@pytest.fixture(scope="module")
def kms_peer() -> Iterator[KmsPeer]:
    with required_kms_peer() as peer:
        yield peer


def target_for(db_backend: str, tmp_path: Path, databases: Databases) -> str:
    if db_backend == "postgres":
        return databases.new()
    return str(tmp_path / f"restored-{secrets.token_hex(3)}.db")


def url_of(target: str) -> str:
    return target if "://" in target else f"sqlite:///{target}"


def event_types(url: str) -> list[str]:
    async def read() -> list[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT body FROM audit_event ORDER BY pk"))
                return [json.loads(bytes(row[0]))["type"] for row in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def event_types_or_none(url: str) -> list[str] | None:
    """None when the database has no ledger table at all (nothing was restored)."""

    async def read() -> bool:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return bool(
                    await conn.scalar(text("SELECT to_regclass('audit_event') IS NOT NULL"))
                )
        finally:
            await engine.dispose()

    return event_types(url) if asyncio.run(read()) else None


def source_url(data_dir: Path, db_backend: str) -> str:
    return (
        os.environ["TRADEGUARD_DATABASE_URL"]
        if db_backend == "postgres"
        else f"sqlite:///{data_dir / 'tradeguard.db'}"
    )


def create(data_dir: Path, out: Path) -> None:
    result = runner.invoke(
        app, ["backup", "create", "--data-dir", str(data_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.exists()
    assert (out.parent / (out.name + ".manifest")).exists()


class TestBackupCommands:
    @pytest.mark.spec("ENC-1")
    def test_create_verify_restore_each_recorded_in_a_ledger(
        self, data_dir: Path, db_backend: str, tmp_path: Path, databases: Databases
    ) -> None:
        backup = tmp_path / "nightly.tgbk"
        create(data_dir, backup)
        assert backup.stat().st_mode & 0o077 == 0
        result = runner.invoke(app, ["backup", "verify", "--data-dir", str(data_dir), str(backup)])
        assert result.exit_code == 0, result.output
        assert "every chunk authenticates" in result.output
        assert "unchecked" not in result.output
        assert "recorded in the ledger" in result.output

        target = target_for(db_backend, tmp_path, databases)
        result = runner.invoke(
            app, ["backup", "restore", "--data-dir", str(data_dir), str(backup), "--to", target]
        )
        assert result.exit_code == 0, result.output
        assert "recorded in the restored database's ledger" in result.output

        source_events = event_types(source_url(data_dir, db_backend))
        assert "crypto:backup:created" in source_events
        assert "crypto:backup:verified" in source_events
        assert "crypto:key:created" in source_events  # the backup class's first key
        restored_events = event_types(url_of(target))
        # The restored ledger is the source's as of the backup, plus the restore itself.
        assert restored_events.count("crypto:backup:restored") == 1
        assert "crypto:backup:created" not in restored_events
        assert restored_events[:-1] == [
            t for t in source_events if t not in {"crypto:backup:created", "crypto:backup:verified"}
        ]

        # A second restore into the same (now full) target is refused on one line.
        result = runner.invoke(
            app, ["backup", "restore", "--data-dir", str(data_dir), str(backup), "--to", target]
        )
        assert result.exit_code == 1
        assert "error:" in result.output
        assert "exists" in result.output or "not empty" in result.output
        assert "Traceback" not in result.output

    def test_a_tampered_backup_fails_verify_on_one_line_and_the_failure_is_recorded(
        self, data_dir: Path, db_backend: str, tmp_path: Path, databases: Databases
    ) -> None:
        backup = tmp_path / "b.tgbk"
        create(data_dir, backup)
        blob = bytearray(backup.read_bytes())
        blob[len(blob) // 2] ^= 0x04
        backup.write_bytes(bytes(blob))
        result = runner.invoke(app, ["backup", "verify", "--data-dir", str(data_dir), str(backup)])
        assert result.exit_code == 1
        assert "backup rejected [CHUNK_NOT_AUTHENTIC]" in result.output
        assert "Traceback" not in result.output
        assert "crypto:backup:rejected" in event_types(source_url(data_dir, db_backend))
        # Restore verifies first, and refuses.
        target = target_for(db_backend, tmp_path, databases)
        result = runner.invoke(
            app, ["backup", "restore", "--data-dir", str(data_dir), str(backup), "--to", target]
        )
        assert result.exit_code == 1
        assert "nothing restored" in result.output
        if db_backend == "sqlite":
            assert not Path(target).exists()
        else:
            assert event_types_or_none(target) is None

    def test_with_only_the_public_key_verify_checks_the_signature_and_names_what_it_could_not(
        self, data_dir: Path, db_backend: str, tmp_path: Path
    ) -> None:
        backup = tmp_path / "b.tgbk"
        create(data_dir, backup)
        result = runner.invoke(app, ["backup", "public-key", "--data-dir", str(data_dir)])
        assert result.exit_code == 0
        public = tmp_path / "backup.vkey"
        public.write_text(result.output)
        elsewhere = tmp_path / "auditor"  # no master key, no database
        result = runner.invoke(
            app,
            [
                "backup",
                "verify",
                "--data-dir",
                str(elsewhere),
                "--public-key",
                str(public),
                str(backup),
            ],
        )
        assert result.exit_code == 0, result.output
        assert "ok         manifest signature (Ed25519)" in result.output
        assert "ok         file SHA-256" in result.output
        assert "unchecked  every chunk authenticates" in result.output
        assert "partly verified" in result.output
        # Recorded where a database is configured (TRADEGUARD_DATABASE_URL), else said so.
        assert ("not recorded" in result.output) is (db_backend == "sqlite")
        # A manifest whose text was edited fails there too.
        manifest = tmp_path / "b.tgbk.manifest"
        manifest.write_text(manifest.read_text().replace('"chunk_count":1', '"chunk_count":2'))
        result = runner.invoke(
            app,
            [
                "backup",
                "verify",
                "--data-dir",
                str(elsewhere),
                "--public-key",
                str(public),
                str(backup),
            ],
        )
        assert result.exit_code == 1
        assert "backup rejected [SIGNATURE_INVALID]" in result.output

    def test_a_restore_elsewhere_without_the_master_key_is_refused_plainly(
        self, data_dir: Path, tmp_path: Path
    ) -> None:
        backup = tmp_path / "b.tgbk"
        create(data_dir, backup)
        result = runner.invoke(
            app,
            [
                "backup",
                "restore",
                "--data-dir",
                str(tmp_path / "empty"),
                str(backup),
                "--to",
                str(tmp_path / "r.db"),
            ],
        )
        assert result.exit_code == 2
        assert "no master key" in result.output or "no backup signing key" in result.output

    @pytest.mark.parametrize(
        "schema", ["public; select 1", 'public"', "pub*", "a,b", "1abc", "x" * 64, ""]
    )
    def test_a_schema_name_that_is_not_a_plain_identifier_is_refused(
        self, data_dir: Path, tmp_path: Path, schema: str
    ) -> None:
        out = tmp_path / "b.tgbk"
        result = runner.invoke(
            app,
            [
                "backup",
                "create",
                "--data-dir",
                str(data_dir),
                "--out",
                str(out),
                "--pg-schema",
                schema,
            ],
        )
        assert result.exit_code == 2, result.output
        assert "must be a plain identifier" in result.output
        assert "Traceback" not in result.output
        assert not out.exists()
        assert list(tmp_path.glob("*.tgbk*")) == []

    @pytest.mark.parametrize("command", ["create", "verify", "restore", "public-key"])
    def test_each_command_explains_itself(self, command: str, db_backend: str) -> None:
        result = runner.invoke(app, ["backup", command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output


# -- restore after a master-key rotation: the KEK the manifest names ---------------------------


def rows_of(url: str) -> dict[str, list[tuple[object, ...]]]:
    async def read() -> dict[str, list[tuple[object, ...]]]:
        engine = create_engine(url)
        try:
            return await table_rows(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def assert_restored(source: dict[str, list[tuple[object, ...]]], target: str) -> None:
    """Every table of the restored database equals the source at backup time; the ledger
    too, plus the restore's own event (and its place in the chain)."""
    restored = rows_of(url_of(target))
    assert set(restored) == set(source)
    for name, rows in source.items():
        if not name.startswith("audit_"):
            assert restored[name] == rows, name
    types = event_types(url_of(target))
    assert types[-1] == "crypto:backup:restored"
    # The source's ledger holds the backup's own event too, appended after the dump.
    assert len(restored["audit_event"]) == len(source["audit_event"])


def nothing_restored(db_backend: str, target: str) -> bool:
    if db_backend == "sqlite":
        return not Path(target).exists()
    return event_types_or_none(target) is None


def restore(data_dir: Path, backup: Path, target: str, *extra: str) -> Result:
    return runner.invoke(
        app,
        ["backup", "restore", "--data-dir", str(data_dir), str(backup), "--to", target, *extra],
    )


def kek_of(backup: Path) -> str:
    note = (backup.parent / (backup.name + ".manifest")).read_text()
    return str(json.loads(note.split("\n", 1)[0])["keys"]["kek_id"])


def public_key_file(data_dir: Path, tmp_path: Path) -> Path:
    result = runner.invoke(app, ["backup", "public-key", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    path = tmp_path / "backup.vkey"
    path.write_text(result.output)
    return path


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return " ".join(result.output.split())


class TestRestoreAfterMasterKeyRotation:
    @pytest.mark.spec("ENC-1")
    def test_an_older_backup_restores_with_the_old_master_key_and_only_with_it(
        self,
        data_dir: Path,
        db_backend: str,
        tmp_path: Path,
        databases: Databases,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_KEY_ACTIVATION_DELAY_SECONDS", "0")
        asyncio.run(seed(data_dir, 5))
        backup = tmp_path / "before-rotation.tgbk"
        create(data_dir, backup)
        source = rows_of(source_url(data_dir, db_backend))
        keys = data_dir / "keys"
        old_master = (keys / "master.key").read_bytes()
        old_kek = kek_of(backup)
        assert old_kek.startswith("local:")

        result = runner.invoke(app, ["keys", "rotate-master", "--data-dir", str(data_dir)])
        assert result.exit_code == 0, result.output
        assert (keys / "master.key").read_bytes() != old_master
        # rotate-master kept the old key beside the new one: verify finds it by the kek_id.
        result = runner.invoke(app, ["backup", "verify", "--data-dir", str(data_dir), str(backup)])
        assert result.exit_code == 0, result.output
        assert "every chunk authenticates" in result.output

        # The operator took the old key offline: the restore names the KEK it needs.
        (retired,) = keys.glob("master.key.retired-*")
        offline = tmp_path / "offline" / "old-master.key"
        offline.parent.mkdir(mode=0o700)
        retired.rename(offline)
        target = target_for(db_backend, tmp_path, databases)
        line = one_line_error(restore(data_dir, backup, target))
        assert (
            f"[DATA_KEY_UNAVAILABLE]: the backup's keys are wrapped under the key-encrypting key {old_kek}"
            in line
        )
        assert "--master-key" in line
        assert "nothing restored" in line
        assert nothing_restored(db_backend, target)

        # A wrong key file: the same refusal, nothing restored, no key material shown.
        wrong = tmp_path / "offline" / "wrong.key"
        create_master_key_file(wrong, os.urandom(32), None)
        result = restore(data_dir, backup, target, "--master-key", str(wrong))
        line = one_line_error(result)
        assert old_kek in line
        assert "local:" + master_key_id(read_master_key(wrong)).hex() in line
        for secret in (old_master, (keys / "master.key").read_bytes(), wrong.read_bytes()):
            assert secret.hex() not in result.output
        assert nothing_restored(db_backend, target)

        # The old key file given: restored, equal to the source at backup time.
        result = restore(data_dir, backup, target, "--master-key", str(offline))
        assert result.exit_code == 0, result.output
        assert "recorded in the restored database's ledger" in result.output
        assert_restored(source, target)

    def test_a_master_key_file_that_does_not_read_is_a_usage_error(
        self, data_dir: Path, db_backend: str, tmp_path: Path, databases: Databases
    ) -> None:
        backup = tmp_path / "b.tgbk"
        create(data_dir, backup)
        loose = tmp_path / "loose.key"
        loose.write_bytes(os.urandom(32))
        loose.chmod(0o644)
        target = target_for(db_backend, tmp_path, databases)
        for path, message in (
            (loose, "readable or writable by others"),
            (tmp_path / "missing.key", "no master key file"),
        ):
            result = restore(data_dir, backup, target, "--master-key", str(path))
            assert result.exit_code == 2, result.output
            shown = " ".join(result.output.split())
            assert shown.startswith("error: --master-key: ")
            assert message in shown
            assert str(path) in shown
            assert nothing_restored(db_backend, target)

    def test_a_manifest_naming_another_kek_fails_verify_and_restores_nothing(
        self, data_dir: Path, db_backend: str, tmp_path: Path, databases: Databases
    ) -> None:
        backup = tmp_path / "b.tgbk"
        create(data_dir, backup)
        kek = kek_of(backup)
        other = LocalFileKek(os.urandom(32)).kek_id
        manifest = tmp_path / "b.tgbk.manifest"
        manifest.write_text(manifest.read_text().replace(kek, other))
        assert kek_of(backup) == other
        result = runner.invoke(app, ["backup", "verify", "--data-dir", str(data_dir), str(backup)])
        assert "backup rejected [SIGNATURE_INVALID]" in one_line_error(result)
        target = target_for(db_backend, tmp_path, databases)
        line = one_line_error(restore(data_dir, backup, target))
        assert "[SIGNATURE_INVALID]" in line
        assert "nothing restored" in line
        assert nothing_restored(db_backend, target)


class TestRestoreAfterAMoveToKms:
    def test_backups_from_before_and_after_the_move_restore_with_the_kek_each_names(
        self,
        data_dir: Path,
        db_backend: str,
        tmp_path: Path,
        databases: Databases,
        kms_peer: KmsPeer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        use_peer_credentials(monkeypatch, tmp_path)
        monkeypatch.setenv("TRADEGUARD_KEY_ACTIVATION_DELAY_SECONDS", "0")
        asyncio.run(seed(data_dir, 3))
        before = tmp_path / "local.tgbk"
        create(data_dir, before)
        before_rows = rows_of(source_url(data_dir, db_backend))
        arn = kms_peer.create_key()
        result = runner.invoke(
            app,
            [
                "keys",
                "rotate-master",
                "--to",
                "aws-kms",
                "--key-id",
                arn,
                "--region",
                kms_peer.region,
                "--endpoint-url",
                kms_peer.endpoint_url,
                "--data-dir",
                str(data_dir),
            ],
        )
        assert result.exit_code == 0, result.output
        monkeypatch.setenv("TRADEGUARD_KEK_PROVIDER", "aws-kms")
        monkeypatch.setenv("TRADEGUARD_AWS_KMS_KEY_ID", arn)
        monkeypatch.setenv("TRADEGUARD_AWS_KMS_REGION", kms_peer.region)
        monkeypatch.setenv("TRADEGUARD_AWS_KMS_ENDPOINT_URL", kms_peer.endpoint_url)
        after = tmp_path / "kms.tgbk"
        create(data_dir, after)
        after_rows = rows_of(source_url(data_dir, db_backend))
        assert kek_of(after) == "aws-kms:" + arn
        # The local master key goes offline, as it may once the KMS holds every key.
        offline = tmp_path / "offline-master.key"
        (data_dir / "keys" / "master.key").rename(offline)

        # The older backup: its local master key is needed, and named.
        target = target_for(db_backend, tmp_path, databases)
        line = one_line_error(restore(data_dir, before, target))
        assert kek_of(before) in line
        assert "given: aws-kms:" not in line  # the KMS key is not tried for a local backup
        assert nothing_restored(db_backend, target)
        result = restore(data_dir, before, target, "--master-key", str(offline))
        assert result.exit_code == 0, result.output
        assert_restored(before_rows, target)

        # The newer one, on a host with no data directory and no KMS setting but the AWS
        # endpoint and credentials: the KMS key is the one its manifest names.
        public = public_key_file(data_dir, tmp_path)
        for name in ("TRADEGUARD_KEK_PROVIDER", "TRADEGUARD_AWS_KMS_KEY_ID"):
            monkeypatch.delenv(name)
        elsewhere = tmp_path / "restore-host"
        second = target_for(db_backend, tmp_path, databases)
        result = restore(elsewhere, after, second, "--public-key", str(public))
        assert result.exit_code == 0, result.output
        assert_restored(after_rows, second)

        # The KMS key disabled: one line naming it, nothing restored.
        kms_peer.client().disable_key(KeyId=arn.rsplit("/", 1)[1])
        third = target_for(db_backend, tmp_path, databases)
        result = restore(elsewhere, after, third, "--public-key", str(public))
        line = one_line_error(result)
        assert (
            f"wrapped under the key-encrypting key aws-kms:{arn}, which cannot be reached" in line
        )
        assert nothing_restored(db_backend, third)
