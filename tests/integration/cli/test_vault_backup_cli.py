"""`tradeguard vault backup create | verify | restore` on a real data directory, the vault
database on SQLite or a PostgreSQL database of its own: a round trip recorded in the vault's
access logs, the restored vault equal to the source; a tampered backup fails verify on one
line; the platform's `backup` commands refuse a vault backup and the vault's refuse a
platform backup; bad input is one line with a non-zero exit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.conftest import POSTGRES_URL
from tests.integration.cli.test_vault_keys_cli import (
    data_dir,
    reveal,
    settings_of,
    tokenize,
    vault,
    vault_query,
    vault_url,
)
from tests.support.backup import fresh_postgres_database, table_rows
from tests.support.cards import TEST_PANS
from tradeguard.cli.main import app
from tradeguard.db.engine import create_engine

__all__ = ["data_dir", "vault_url"]  # fixtures, defined with the vault key commands

from typer.testing import CliRunner

runner = CliRunner()
PANS = list(TEST_PANS)[:5]


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    async def read() -> dict[str, list[tuple[object, ...]]]:
        engine = create_engine(url)
        try:
            return await table_rows(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def operations(data_dir: Path) -> list[str]:
    return [
        str(row[0])
        for row in vault_query(
            data_dir,
            "SELECT operation FROM vault_access_log WHERE operation LIKE 'vault:backup:%' "
            "ORDER BY occurred_ns, id",
        )
    ]


@pytest.fixture
def backup(data_dir: Path, tmp_path: Path) -> Path:
    tokenize(data_dir, PANS)
    out = tmp_path / "vault.tgbk"
    result = vault("backup", "create", "--out", str(out), data_dir=data_dir)
    assert result.exit_code == 0, result.output
    assert "card_vault" in result.output
    return out


class TestVaultBackupCli:
    @pytest.mark.spec("ENC-1")
    def test_create_verify_restore_round_trip_recorded(
        self, data_dir: Path, backup: Path, tmp_path: Path, vault_url: str | None
    ) -> None:
        verified = vault("backup", "verify", str(backup), data_dir=data_dir)
        assert verified.exit_code == 0, verified.output
        assert "data key opens" in verified.output
        assert "unchecked" not in verified.output
        source = rows(settings_of(data_dir).vault_url)
        if vault_url is None:
            target = str(tmp_path / "restored-vault.db")
            self._restore_and_compare(data_dir, backup, target, f"sqlite:///{target}", source)
        else:

            async def run() -> None:
                async with fresh_postgres_database() as url:
                    await asyncio.to_thread(
                        self._restore_and_compare, data_dir, backup, url, url, source
                    )

            asyncio.run(run())
        assert operations(data_dir) == ["vault:backup:created", "vault:backup:verified"]
        detail = json.loads(
            str(
                vault_query(
                    data_dir,
                    "SELECT detail FROM vault_access_log WHERE operation = 'vault:backup:created'",
                )[0][0]
            )
        )
        assert detail["data_class"] == "card_vault"
        for pan in PANS:
            assert pan not in json.dumps(detail)

    @staticmethod
    def _restore_and_compare(
        data_dir: Path,
        backup: Path,
        target: str,
        url: str,
        source: dict[str, list[tuple[object, ...]]],
    ) -> None:
        result = vault("backup", "restore", str(backup), "--to", target, data_dir=data_dir)
        assert result.exit_code == 0, result.output
        assert "recorded in the restored access log" in result.output
        restored = rows(url)
        # The access log as backed up: the source's, less the backup's own rows written
        # after it (created, verified); the restored one has its restore on top.
        log = restored.pop("vault_access_log")
        expected = dict(source)
        source_log = expected.pop("vault_access_log")
        assert restored == expected

        def before_backup(entries: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
            return [e for e in entries if not str(e[2]).startswith("vault:backup:")]

        assert before_backup(log) == before_backup(source_log)
        assert [str(e[2]) for e in log if str(e[2]).startswith("vault:backup:")] == [
            "vault:backup:restored"
        ]
        # The restored vault opens with the vault's key and gives the same cards back.
        tokens = {str(row[0]): "" for row in restored["vault_card"]}
        revealed = reveal(data_dir, tokens, vault_database_url=url)
        assert sorted(revealed.values()) == sorted(PANS)

    @pytest.mark.spec("ENC-1")
    def test_a_tampered_vault_backup_fails_verify_on_one_line(
        self, data_dir: Path, backup: Path, tmp_path: Path
    ) -> None:
        blob = bytearray(backup.read_bytes())
        blob[len(blob) // 2] ^= 0x01
        backup.write_bytes(bytes(blob))
        result = vault("backup", "verify", str(backup), data_dir=data_dir)
        assert result.exit_code == 1
        line = one_line(result.output)
        assert "HASH_MISMATCH" in line or "CHUNK_NOT_AUTHENTIC" in line
        target = tmp_path / "never.db"
        restored = vault("backup", "restore", str(backup), "--to", str(target), data_dir=data_dir)
        assert restored.exit_code == 1
        one_line(restored.output)  # SQLite: rejected, nothing restored; PostgreSQL: wrong kind
        assert not target.exists()
        assert "vault:backup:rejected" in operations(data_dir)

    @pytest.mark.spec("ENC-1", "PCI-2")
    def test_each_command_refuses_the_other_databases_backup(
        self, data_dir: Path, backup: Path, tmp_path: Path
    ) -> None:
        # The platform's command: the vault's signing key is not one it trusts ...
        result = runner.invoke(app, ["backup", "verify", "--data-dir", str(data_dir), str(backup)])
        assert result.exit_code == 1
        assert "SIGNATURE_INVALID" in one_line(result.output)
        # ... and given the vault's public key, the platform's keys still do not open it.
        vkey = tmp_path / "vault-backup.vkey"
        printed = vault("backup", "public-key", data_dir=data_dir)
        assert printed.exit_code == 0, printed.output
        vkey.write_text(printed.output)
        result = runner.invoke(
            app,
            [
                "backup",
                "verify",
                "--data-dir",
                str(data_dir),
                "--public-key",
                str(vkey),
                str(backup),
            ],
        )
        assert result.exit_code == 1
        assert "WRONG_DATABASE" in one_line(result.output)
        # The vault's command refuses a platform backup.
        platform = tmp_path / "platform.tgbk"
        made = runner.invoke(
            app, ["backup", "create", "--data-dir", str(data_dir), "--out", str(platform)]
        )
        assert made.exit_code == 0, made.output
        pkey = tmp_path / "platform.vkey"
        pkey.write_text(
            runner.invoke(app, ["backup", "public-key", "--data-dir", str(data_dir)]).output
        )
        result = vault("backup", "verify", str(platform), data_dir=data_dir)
        assert result.exit_code == 1
        assert "SIGNATURE_INVALID" in one_line(result.output)
        result = vault(
            "backup",
            "restore",
            str(platform),
            "--public-key",
            str(pkey),
            "--to",
            str(tmp_path / "x.db"),
            data_dir=data_dir,
        )
        assert result.exit_code == 1
        assert "WRONG_DATABASE" in one_line(result.output)

    def test_bad_input_is_one_line_and_a_non_zero_exit(
        self, data_dir: Path, backup: Path, tmp_path: Path
    ) -> None:
        missing = vault("backup", "verify", str(tmp_path / "nope.tgbk"), data_dir=data_dir)
        assert missing.exit_code == 1
        assert "no manifest" in one_line(missing.output)
        exists = vault("backup", "create", "--out", str(backup), data_dir=data_dir)
        assert exists.exit_code != 0
        assert "never overwrites" in one_line(exists.output)
        nodir = vault(
            "backup", "create", "--out", str(tmp_path / "no" / "b.tgbk"), data_dir=data_dir
        )
        assert nodir.exit_code != 0
        assert "does not exist" in one_line(nodir.output)
        taken = tmp_path / "taken.db"
        taken.write_bytes(b"")
        refused = vault("backup", "restore", str(backup), "--to", str(taken), data_dir=data_dir)
        assert refused.exit_code != 0
        one_line(refused.output)
        bad_key = vault(
            "backup",
            "verify",
            str(backup),
            "--master-key",
            str(tmp_path / "none.key"),
            data_dir=data_dir,
        )
        assert bad_key.exit_code == 2
        assert "--master-key" in one_line(bad_key.output)

    def test_no_vault_database_is_a_usage_error(self, tmp_path: Path) -> None:
        result = runner.invoke(
            app, ["vault", "backup", "create", "--data-dir", str(tmp_path / "empty")]
        )
        assert result.exit_code == 2
        assert "no vault database" in one_line(result.output)


def test_the_platform_database_is_refused_as_a_vault_restore_target(
    data_dir: Path, backup: Path
) -> None:
    main = make_url(POSTGRES_URL).render_as_string(hide_password=False)
    result = runner.invoke(
        app,
        ["vault", "backup", "restore", str(backup), "--to", main, "--data-dir", str(data_dir)],
        env={"TRADEGUARD_DATABASE_URL": main},
    )
    assert result.exit_code == 2
    assert "platform's database" in one_line(result.output)
