"""The `tradeguard` CLI: help, bad arguments, init, db, audit verify (on the SQLite default)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.ledger import tamper_event_body
from tradeguard.cli.main import app
from tradeguard.db.engine import create_engine

runner = CliRunner()

COMMANDS = [
    [],
    ["init"],
    ["serve"],
    ["db"],
    ["db", "upgrade"],
    ["db", "status"],
    ["audit"],
    ["audit", "verify"],
    ["users"],
    ["users", "create"],
    ["keys"],
    ["keys", "rotate-jwt"],
    ["dev"],
    ["dev", "mailbox"],
]


def tamper(data_dir: Path, seq: int) -> None:
    async def run() -> None:
        engine = create_engine(f"sqlite:///{data_dir / 'tradeguard.db'}")
        await tamper_event_body(engine, seq=seq, new_body=b'{"forged":true}')
        await engine.dispose()

    asyncio.run(run())


class TestHelpAndUsage:
    @pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
    def test_every_command_has_help(self, command: list[str]) -> None:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output

    def test_version_is_printed(self) -> None:
        result = runner.invoke(app, ["--version"])
        assert result.exit_code == 0
        assert result.output.startswith("tradeguard ")

    @pytest.mark.parametrize(
        "argv",
        [
            ["serve", "--port", "0"],
            ["serve", "--port", "https"],
            ["init", "--bogus"],
            ["frobnicate"],
        ],
    )
    def test_bad_arguments_exit_non_zero(self, argv: list[str]) -> None:
        assert runner.invoke(app, argv).exit_code == 2

    def test_invalid_environment_setting_is_named(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_DATABASE_URL", "mysql://db/x")
        result = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
        assert result.exit_code == 2
        assert "TRADEGUARD_DATABASE_URL: must be a sqlite:/// or postgresql:// URL" in result.output

    def test_production_refuses_demo_and_dev_certificate(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_ENV", "production")
        result = runner.invoke(app, ["serve", "--demo", "--data-dir", str(tmp_path)])
        assert result.exit_code == 2
        assert "TRADEGUARD_TLS_CERT_FILE" in result.output
        assert not (tmp_path / "tradeguard.db").exists()


class TestInitAndAudit:
    @pytest.mark.spec("AUD-2")
    def test_init_is_idempotent_and_the_ledger_verifies(self, tmp_path: Path) -> None:
        data = tmp_path / "var"
        first = runner.invoke(app, ["init", "--data-dir", str(data)])
        second = runner.invoke(app, ["init", "--data-dir", str(data)])
        verify = runner.invoke(app, ["audit", "verify", "--json", "--data-dir", str(data)])
        assert first.exit_code == 0, first.output
        assert "new ->" in first.output
        assert second.exit_code == 0
        assert "dev certificate" not in second.output
        assert (data / "tls" / "dev-cert.pem").exists()
        assert (data / "tls" / "dev-key.pem").stat().st_mode & 0o077 == 0
        report = json.loads(verify.output)
        assert report["ok"] is True
        assert report["verified"] == 1

    @pytest.mark.spec("AUD-2", "ENC-3")
    def test_audit_verify_names_the_first_tampered_sequence(self, tmp_path: Path) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        tamper(tmp_path, seq=1)
        result = runner.invoke(app, ["audit", "verify", "--data-dir", str(tmp_path)])
        assert result.exit_code == 1
        assert "first bad sequence 1" in result.output

    def test_verify_without_a_database_fails_and_creates_nothing(self, tmp_path: Path) -> None:
        target = tmp_path / "missing"
        result = runner.invoke(app, ["audit", "verify", "--data-dir", str(target)])
        assert result.exit_code == 2
        assert "tradeguard init" in result.output
        assert not target.exists()

    def test_db_upgrade_then_status_reports_head(self, tmp_path: Path) -> None:
        upgraded = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
        again = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
        status = runner.invoke(app, ["db", "status", "--data-dir", str(tmp_path)])
        assert upgraded.exit_code == 0
        assert "migrated new ->" in upgraded.output
        assert "already at" in again.output
        assert status.exit_code == 0


class TestUsersAndKeys:
    @pytest.mark.spec("RBAC-1")
    def test_operator_creates_an_admin_with_a_prompted_password(self, tmp_path: Path) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        password = "quiet meadow lantern 7931"
        result = runner.invoke(
            app,
            [
                "users",
                "create",
                "ada",
                "ada@example.com",
                "--role",
                "ADMIN",
                "--data-dir",
                str(tmp_path),
            ],
            input=f"{password}\n{password}\n",
        )
        assert result.exit_code == 0, result.output
        assert "created ADMIN ada" in result.output
        assert password not in result.output.split("Repeat")[-1].split("created")[-1]
        verify = runner.invoke(app, ["audit", "verify", "--json", "--data-dir", str(tmp_path)])
        assert json.loads(verify.output)["ok"] is True

    def test_weak_password_and_duplicate_user_fail_with_a_clear_message(
        self, tmp_path: Path
    ) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        weak = runner.invoke(
            app,
            ["users", "create", "bob", "bob@example.com", "--data-dir", str(tmp_path)],
            input="password\npassword\n",
        )
        good = "quiet meadow lantern 7931"
        args = ["users", "create", "bob", "bob@example.com", "--data-dir", str(tmp_path)]
        first = runner.invoke(app, args, input=f"{good}\n{good}\n")
        again = runner.invoke(app, args, input=f"{good}\n{good}\n")
        bad_role = runner.invoke(app, [*args, "--role", "ROOT"], input=f"{good}\n{good}\n")
        assert weak.exit_code == 1
        assert "error:" in weak.output
        assert first.exit_code == 0
        assert again.exit_code == 1
        assert "already registered" in again.output
        assert bad_role.exit_code == 2

    @pytest.mark.spec("SESS-1")
    def test_rotating_the_jwt_key_keeps_the_old_one_for_verification(self, tmp_path: Path) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        first = runner.invoke(app, ["keys", "rotate-jwt", "--data-dir", str(tmp_path)])
        second = runner.invoke(app, ["keys", "rotate-jwt", "--data-dir", str(tmp_path)])
        assert first.exit_code == second.exit_code == 0
        retired = sorted((tmp_path / "keys" / "jwt").glob("retired-*.pem"))
        assert len(retired) == 2
        assert all(p.stat().st_mode & 0o077 == 0 for p in retired)

    def test_rotation_without_a_data_dir_fails(self, tmp_path: Path) -> None:
        result = runner.invoke(app, ["keys", "rotate-jwt", "--data-dir", str(tmp_path / "none")])
        assert result.exit_code == 2
        assert not (tmp_path / "none").exists()
