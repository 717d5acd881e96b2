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
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from tests.conftest import POSTGRES_URL
from tradeguard.cli.main import app
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

    @pytest.mark.parametrize("command", ["create", "verify", "restore", "public-key"])
    def test_each_command_explains_itself(self, command: str, db_backend: str) -> None:
        result = runner.invoke(app, ["backup", command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output
