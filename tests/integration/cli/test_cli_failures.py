"""Start-up failures of `tradeguard`: one line, a non-zero exit, no traceback, nothing claiming
to serve, and no secret from the configuration in the message. `serve` runs as a real process
(it must fail before it would serve); the other commands run in-process through typer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url
from typer.testing import CliRunner

from tests.conftest import POSTGRES_URL, require_service
from tradeguard.cli.main import app

runner = CliRunner()

LOOPBACK = "127.0.0.1"
DB_PASSWORD = "s3cret-db-pass"


def tradeguard(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    return subprocess.run(
        [sys.executable, "-m", "tradeguard", *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "240", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_failure(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "serving on" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def closed_port() -> int:
    """A loopback port nobody listens on (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def occupied_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield sock.getsockname()[1]


class TestServeFailures:
    def test_a_port_in_use_fails_before_anything_is_prepared(
        self, tmp_path: Path, occupied_port: int
    ) -> None:
        result = tradeguard(
            "serve", "--demo", "--port", str(occupied_port), "--data-dir", "var", cwd=tmp_path
        )
        line = assert_one_line_failure(result, 1)
        assert f"port {occupied_port} on {LOOPBACK} is already in use" in line
        assert "password:" not in result.stdout
        assert not (tmp_path / "var").exists()

    def test_an_unusable_staff_authenticator_catalogue_stops_the_start(
        self, tmp_path: Path
    ) -> None:
        broken = tmp_path / "staff.json"
        broken.write_text(
            '{"entries": [{"aaguid": "7e57ab1e-0000-4000-8000-00000000a77e", '
            '"attestationRootCertificates": ["AAAA"]}]}'
        )
        result = tradeguard(
            "serve",
            "--data-dir",
            "var",
            "--port",
            str(closed_port()),
            cwd=tmp_path,
            env={"TRADEGUARD_WEBAUTHN_STAFF_METADATA_FILE": str(broken)},
        )
        line = assert_one_line_failure(result, 2)
        assert f"staff authenticator metadata {broken}" in line
        assert "not base64 DER" in line

    def test_an_unreachable_postgresql_is_named_without_its_credentials(
        self, tmp_path: Path
    ) -> None:
        port = closed_port()
        url = f"postgresql://trader:{DB_PASSWORD}@{LOOPBACK}:{port}/tradeguard"
        result = tradeguard(
            "serve",
            "--data-dir",
            "var",
            "--port",
            str(closed_port()),
            cwd=tmp_path,
            env={"TRADEGUARD_DATABASE_URL": url},
        )
        line = assert_one_line_failure(result, 1)
        assert f"cannot reach PostgreSQL at {LOOPBACK}:{port}: connection refused" in line
        assert "TRADEGUARD_DATABASE_URL" in line
        for secret in (DB_PASSWORD, "trader"):
            assert secret not in result.stdout + result.stderr


class TestDatabaseFailures:
    def invoke(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, *command: str
    ) -> str:
        monkeypatch.setenv("TRADEGUARD_DATABASE_URL", url)
        result = runner.invoke(app, [*command, "--data-dir", str(tmp_path / "var")])
        assert result.exit_code == 1, (result.stdout, result.stderr)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert DB_PASSWORD not in result.stdout + result.stderr
        return lines[0]

    @pytest.mark.parametrize("command", [["init"], ["db", "upgrade"], ["db", "status"]])
    def test_a_refused_connection_names_host_and_port_and_what_to_check(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
    ) -> None:
        port = closed_port()
        url = f"postgresql://trader:{DB_PASSWORD}@{LOOPBACK}:{port}/tradeguard"
        line = self.invoke(monkeypatch, tmp_path, url, *command)
        assert line == (
            f"error: cannot reach PostgreSQL at {LOOPBACK}:{port}: connection refused; check "
            "that PostgreSQL is running and that TRADEGUARD_DATABASE_URL names its host and port"
        )

    def test_an_unknown_database_host_is_named(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        url = f"postgresql://trader:{DB_PASSWORD}@db.invalid:5432/tradeguard"
        line = self.invoke(monkeypatch, tmp_path, url, "init")
        assert "PostgreSQL at db.invalid:5432: the host name does not resolve" in line

    @pytest.mark.postgres
    def test_a_missing_database_and_a_refused_login_are_told_apart(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        server = make_url(POSTGRES_URL)
        try:
            socket.create_connection((server.host, server.port or 5432), timeout=2).close()
        except OSError as exc:
            require_service("PostgreSQL", exc)
        no_database = server.set(database="tradeguard_no_such_db")
        no_role = server.set(username="tradeguard_no_such_role", password=DB_PASSWORD)
        missing = self.invoke(
            monkeypatch, tmp_path, no_database.render_as_string(hide_password=False), "init"
        )
        refused = self.invoke(
            monkeypatch, tmp_path, no_role.render_as_string(hide_password=False), "init"
        )
        assert "has no database 'tradeguard_no_such_db'" in missing
        assert "refused the login; check the user and password" in refused
        assert "tradeguard_no_such_role" not in refused
