"""The `tradeguard` CLI: help, bad arguments, init, db, audit verify (on the SQLite default)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.ledger import settle, tamper_event_body
from tradeguard.cli.common import settings_from
from tradeguard.cli.main import app
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.password_hashing import PasswordHasher
from tradeguard.ledger.domain import LedgerEvent
from tradeguard.ledger.service import Ledger

runner = CliRunner()
# The origin and listen address as the tests set them, whatever the environment says.
ORIGIN_UNSET = {"TRADEGUARD_PUBLIC_ORIGIN": None, "TRADEGUARD_HOST": None, "TRADEGUARD_PORT": None}

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
    ["users", "invite-staff"],
    ["users", "staff-authenticators"],
    ["keys"],
    ["keys", "rotate-jwt"],
    ["dev"],
    ["dev", "mailbox"],
]


def password_hash(data_dir: Path, username: str) -> str:
    with contextlib.closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        row = db.execute("SELECT password_hash FROM users WHERE username = ?", (username,))
        return str(row.fetchone()[0])


def tamper(data_dir: Path, seq: int) -> None:
    async def run() -> None:
        engine = create_engine(f"sqlite:///{data_dir / 'tradeguard.db'}")
        await tamper_event_body(engine, seq=seq, new_body=b'{"forged":true}')
        await engine.dispose()

    asyncio.run(run())


def append_events(data_dir: Path, count: int) -> None:
    async def run() -> None:
        engine = create_engine(f"sqlite:///{data_dir / 'tradeguard.db'}")
        clock = SystemClock()
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        async with unit_of_work(session_factory(engine)) as session:
            for n in range(count):
                await ledger.append(session, LedgerEvent(type="test:cli:event", data={"n": n}))
        await settle(engine)
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

    def test_everything_in_the_data_directory_is_for_its_owner_only(self, tmp_path: Path) -> None:
        data = tmp_path / "var"
        data.mkdir(mode=0o755)
        stray = data / "notes.txt"
        stray.write_text("left by hand")
        stray.chmod(0o644)
        previous = os.umask(0o022)
        try:
            result = runner.invoke(app, ["init", "--data-dir", str(data)])
        finally:
            os.umask(previous)
        assert result.exit_code == 0, result.output
        loose = [
            f"{path.relative_to(tmp_path)} {oct(path.stat().st_mode & 0o777)}"
            for path in (data, *data.rglob("*"))
            if not path.is_symlink() and path.stat().st_mode & 0o077
        ]
        assert loose == []
        assert (data / "tradeguard.db").stat().st_mode & 0o777 == 0o600
        assert data.stat().st_mode & 0o777 == 0o700

    def test_init_makes_the_audit_log_signing_key_and_prints_its_public_key(
        self, tmp_path: Path
    ) -> None:
        data = tmp_path / "var"
        first = runner.invoke(app, ["init", "--data-dir", str(data)])
        second = runner.invoke(app, ["init", "--data-dir", str(data)])
        listed = runner.invoke(app, ["audit", "keys", "list", "--data-dir", str(data)])
        assert first.exit_code == 0, first.output
        vkey = first.output.split("audit log vkey", 1)[1].split()[0]
        assert "audit log key    created" in first.output
        assert "audit log key    created" not in second.output
        assert f"audit log vkey   {vkey}" in second.output
        assert listed.output.split() == [vkey]
        assert (data / "keys" / "ledger" / "active.pem").stat().st_mode & 0o077 == 0

    @pytest.mark.spec("AUD-2", "ENC-3")
    def test_audit_verify_names_the_first_tampered_sequence(self, tmp_path: Path) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        tamper(tmp_path, seq=1)
        result = runner.invoke(app, ["audit", "verify", "--data-dir", str(tmp_path)])
        assert result.exit_code == 1
        assert "first bad sequence 1" in result.output

    @pytest.mark.spec("AUD-2")
    def test_audit_verify_in_worker_processes_names_the_same_sequence(self, tmp_path: Path) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        append_events(tmp_path, 40)
        clean = runner.invoke(
            app, ["audit", "verify", "--workers", "3", "--data-dir", str(tmp_path)]
        )
        tamper(tmp_path, seq=28)
        tampered = runner.invoke(
            app, ["audit", "verify", "--workers", "3", "--json", "--data-dir", str(tmp_path)]
        )
        refused = runner.invoke(
            app, ["audit", "verify", "--workers", "0", "--data-dir", str(tmp_path)]
        )
        assert clean.exit_code == 0, clean.output
        assert "41 events verified" in clean.output
        assert tampered.exit_code == 1
        report = json.loads(tampered.output)
        assert (report["first_bad_seq"], report["failure"]) == (28, "event_altered")
        assert report["verified"] == 27
        assert refused.exit_code == 2

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


class TestSqliteLocation:
    @pytest.mark.parametrize("command", [["init"], ["db", "upgrade"]], ids=" ".join)
    def test_a_sqlite_file_in_a_missing_directory_is_refused(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
    ) -> None:
        missing = tmp_path / "typo" / "nested"
        monkeypatch.setenv("TRADEGUARD_DATABASE_URL", f"sqlite:///{missing / 'tg.db'}")
        result = runner.invoke(app, [*command, "--data-dir", str(tmp_path / "var")])
        assert result.exit_code == 2
        assert f"the directory {missing} of the SQLite file does not exist" in result.output
        assert not (tmp_path / "typo").exists()
        assert not (tmp_path / "var").exists()

    def test_a_missing_data_directory_is_created_for_its_own_sqlite_file(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        data = tmp_path / "fresh" / "var"
        monkeypatch.setenv("TRADEGUARD_DATABASE_URL", f"sqlite:///{data / 'tradeguard.db'}")
        result = runner.invoke(app, ["init", "--data-dir", str(data)])
        assert result.exit_code == 0, result.output
        assert (data / "tradeguard.db").is_file()

    def test_an_existing_directory_outside_the_data_dir_is_used(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        (tmp_path / "db").mkdir()
        monkeypatch.setenv("TRADEGUARD_DATABASE_URL", f"sqlite:///{tmp_path / 'db' / 'tg.db'}")
        result = runner.invoke(app, ["init", "--data-dir", str(tmp_path / "var")])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "db" / "tg.db").is_file()


class TestUsersAndKeys:
    @pytest.mark.spec("RBAC-1")
    def test_operator_creates_a_trader_with_a_prompted_password(self, tmp_path: Path) -> None:
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
                "TRADER",
                "--data-dir",
                str(tmp_path),
            ],
            input=f"{password}\n{password}\n",
        )
        assert result.exit_code == 0, result.output
        assert "created TRADER ada" in result.output
        assert password not in result.output.split("Repeat")[-1].split("created")[-1]
        verify = runner.invoke(app, ["audit", "verify", "--json", "--data-dir", str(tmp_path)])
        assert json.loads(verify.output)["ok"] is True

    @pytest.mark.spec("IAC-3")
    @pytest.mark.parametrize("role", ["ADMIN", "COMPLIANCE", "SUPPORT"])
    def test_staff_are_never_created_with_a_password_alone(self, tmp_path: Path, role: str) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        good = "quiet meadow lantern 7931"
        result = runner.invoke(
            app,
            ["users", "create", "ada", "ada@example.com", "--role", role],
            input=f"{good}\n{good}\n",
            env={"TRADEGUARD_DATA_DIR": str(tmp_path)},
        )
        assert result.exit_code == 2
        assert "enrolment token" in result.output
        assert "invite-staff" in result.output
        assert "Password" not in result.output  # refused before asking for it
        with contextlib.closing(sqlite3.connect(tmp_path / "tradeguard.db")) as db:
            assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0

    @pytest.mark.spec("IAC-3")
    def test_operator_invites_staff_with_a_one_time_token(self, tmp_path: Path) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        args = ["users", "invite-staff", "--data-dir", str(tmp_path)]
        result = runner.invoke(app, [*args, "--email", "Ada@Example.com", "--role", "admin"])
        trader = runner.invoke(app, [*args, "--email", "t@example.com", "--role", "TRADER"])
        bad_email = runner.invoke(app, [*args, "--email", "not-an-address", "--role", "ADMIN"])
        no_role = runner.invoke(app, [*args, "--email", "x@example.com"])

        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].startswith("invited ADMIN ada@example.com")
        assert "24 hours" in lines[0]
        token = lines[1].strip()
        assert len(token) >= 43
        assert "/api/v1/auth/staff-enrolment/options" in lines[2]
        with contextlib.closing(sqlite3.connect(tmp_path / "tradeguard.db")) as db:
            (stored,) = db.execute(
                "SELECT token_hash FROM auth_tickets WHERE kind = 'staff_enrolment'"
            ).fetchone()
        assert stored == hashlib.sha256(token.encode()).digest()
        assert trader.exit_code == bad_email.exit_code == no_role.exit_code == 2
        assert "not a staff role" in trader.output
        verify = runner.invoke(app, ["audit", "verify", "--json", "--data-dir", str(tmp_path)])
        assert json.loads(verify.output)["ok"] is True

    def test_the_printed_origin_is_the_one_a_server_with_these_settings_uses(
        self, tmp_path: Path
    ) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        args = ["users", "invite-staff", "--data-dir", str(tmp_path), "--role", "ADMIN"]

        default = runner.invoke(app, [*args, "--email", "a@example.com"], env=ORIGIN_UNSET)
        moved = runner.invoke(
            app,
            [*args, "--email", "b@example.com"],
            env={**ORIGIN_UNSET, "TRADEGUARD_PORT": "9443"},
        )
        configured = runner.invoke(
            app,
            [*args, "--email", "c@example.com"],
            env={**ORIGIN_UNSET, "TRADEGUARD_PUBLIC_ORIGIN": "https://[fd00::1]:8443"},
        )

        assert default.exit_code == moved.exit_code == configured.exit_code == 0
        # `make run` serves https://localhost:8443: the printed address is that server's.
        serve_default = settings_from(tmp_path).public_origin
        assert serve_default == "https://localhost:8443"
        lines = default.output.splitlines()
        assert lines[2].startswith(f"redeem at {serve_default}/api/v1/auth/staff-enrolment/")
        # Derived from this command's own port: say so, and how to match another server.
        assert "derived from TRADEGUARD_HOST and TRADEGUARD_PORT (port 8443)" in lines[3]
        assert "TRADEGUARD_PUBLIC_ORIGIN" in lines[3]
        assert "https://localhost:9443/api/v1/auth/staff-enrolment/options" in moved.output
        # A configured origin is printed as configured (an IPv6 literal is not markup), with
        # nothing to warn about.
        lines = configured.output.splitlines()
        assert lines[2].startswith("redeem at https://[fd00::1]:8443/api/v1/auth/staff-enrolment")
        assert len(lines) == 3

    def test_an_address_with_an_account_is_not_invited(self, tmp_path: Path) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        good = "quiet meadow lantern 7931"
        runner.invoke(
            app,
            ["users", "create", "bob", "bob@example.com", "--data-dir", str(tmp_path)],
            input=f"{good}\n{good}\n",
        )
        result = runner.invoke(
            app,
            [
                *("users", "invite-staff", "--email", "bob@example.com", "--role", "SUPPORT"),
                *("--data-dir", str(tmp_path)),
            ],
        )
        assert result.exit_code == 1
        assert "already has an account" in result.output

    @pytest.mark.spec("IAC-3")
    def test_the_staff_authenticator_catalogue_is_checked_and_listed(self, tmp_path: Path) -> None:
        shipped = runner.invoke(app, ["users", "staff-authenticators", "--data-dir", str(tmp_path)])
        broken = tmp_path / "broken.json"
        broken.write_text('{"entries": [{"aaguid": "not-a-guid"}]}')
        refused = runner.invoke(
            app,
            ["users", "staff-authenticators", "--file", str(broken), "--data-dir", str(tmp_path)],
        )
        missing = runner.invoke(
            app,
            [
                *("users", "staff-authenticators", "--file", str(tmp_path / "none.json")),
                *("--data-dir", str(tmp_path)),
            ],
        )

        assert shipped.exit_code == 0, shipped.output
        assert "cb69481e-8ff7-4039-93ec-0a2729a154a8  YubiKey 5 Series" in shipped.output
        assert "Google Titan Security Key v2" in shipped.output
        assert "0 refused" in shipped.output
        assert refused.exit_code == missing.exit_code == 2
        assert "not a GUID" in refused.output
        assert "cannot be read" in missing.output

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
        assert weak.exit_code == 2  # input the command refuses: usage (README)
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

    def test_a_script_creates_a_user_with_the_password_on_one_line_of_stdin(
        self, tmp_path: Path
    ) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        password = "  quiet meadow lantern 7931 "  # spaces are part of a passphrase
        args = ["users", "create", "ops", "ops@example.com", "--role", "TRADER"]
        result = runner.invoke(
            app,
            [*args, "--password-stdin", "--data-dir", str(tmp_path)],
            input=f"{password}\nnot read\n",
        )
        assert result.exit_code == 0, result.output
        assert result.output.startswith("created TRADER ops")
        assert "Password" not in result.output
        assert password.strip() not in result.output
        # Exactly the first line, spaces kept, line ending (LF or CRLF) dropped, no second
        # line read as a confirmation.
        crlf = runner.invoke(
            app,
            [
                *args[:2],
                "ops2",
                "ops2@example.com",
                "--password-stdin",
                "--data-dir",
                str(tmp_path),
            ],
            input=f"{password}\r\n",
        )
        assert crlf.exit_code == 0, crlf.output
        hasher = PasswordHasher()
        for username in ("ops", "ops2"):
            stored = password_hash(tmp_path, username)
            assert hasher.verify(stored, password)
            assert not hasher.verify(stored, password.strip())

    def test_an_empty_stdin_line_is_refused(self, tmp_path: Path) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        result = runner.invoke(
            app,
            [
                "users",
                "create",
                "ops",
                "ops@example.com",
                "--password-stdin",
                "--data-dir",
                str(tmp_path),
            ],
            input="\n",
        )
        assert result.exit_code == 1
        assert "no password on standard input" in result.output

    @pytest.mark.parametrize(
        ("username", "email", "message"),
        [
            ("x", "ok@example.com", "username must be 3-32 characters"),
            ("Bad Name!", "ok@example.com", "username must be 3-32 characters"),
            ("okname", "not-an-address", "email is not a valid address"),
        ],
    )
    def test_username_and_email_are_checked_before_the_password_is_asked_for(
        self, tmp_path: Path, username: str, email: str, message: str
    ) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        result = runner.invoke(
            app, ["users", "create", username, email, "--data-dir", str(tmp_path)], input=""
        )
        assert result.exit_code == 2
        assert message in result.output
        assert "Password" not in result.output

    def test_rotation_says_running_servers_pick_the_key_up(self, tmp_path: Path) -> None:
        runner.invoke(app, ["init", "--data-dir", str(tmp_path)])
        result = runner.invoke(app, ["keys", "rotate-jwt", "--data-dir", str(tmp_path)])
        assert result.exit_code == 0
        assert "running servers on" in result.output
        assert "no restart needed" in result.output

    def test_rotation_without_a_data_dir_fails(self, tmp_path: Path) -> None:
        result = runner.invoke(app, ["keys", "rotate-jwt", "--data-dir", str(tmp_path / "none")])
        assert result.exit_code == 2
        assert not (tmp_path / "none").exists()
