"""`tradeguard vault serve` and `vault upgrade` refusing to start: one clear line and a
non-zero exit, never a traceback, and nothing they refuse is changed (a running vault's
socket, a key file, the main database)."""

from __future__ import annotations

import logging
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url
from typer.testing import CliRunner

from tests.conftest import POSTGRES_URL
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.crypto.providers import create_master_key_file
from tradeguard.vault.container import own_vault_url

runner = CliRunner()


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    # `vault serve` configures logging onto the runner's stderr, which is closed after the
    # command: later tests in this worker must not log into it.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    result = runner.invoke(app, ["init", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output
    return directory


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def test_a_vault_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    directory = _data_dir(tmp_path)
    key = Settings(data_dir=directory, _env_file=None).vault_master_key_file  # type: ignore[call-arg]
    create_master_key_file(key, b"k" * 32, None)
    key.chmod(0o640)
    result = runner.invoke(app, ["vault", "serve", "--data-dir", str(directory)])
    assert result.exit_code == 2
    assert "chmod 600" in _one_line(result.output)
    assert not (directory / "vault.sock").exists()


def test_a_port_in_use_is_refused(tmp_path: Path) -> None:
    directory = _data_dir(tmp_path)
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(
            app,
            [
                "vault",
                "serve",
                "--data-dir",
                str(directory),
                "--listen",
                f"https://127.0.0.1:{port}",
            ],
        )
    finally:
        taken.close()
    assert result.exit_code == 2
    assert "already in use" in _one_line(result.output)


def test_an_address_of_another_machine_is_refused(tmp_path: Path) -> None:
    directory = _data_dir(tmp_path)
    result = runner.invoke(
        app,
        ["vault", "serve", "--data-dir", str(directory), "--listen", "https://10.255.255.254:9443"],
    )
    assert result.exit_code == 2
    assert "not an address of this machine" in _one_line(result.output)


def _tables(path: Path) -> set[str]:
    database = sqlite3.connect(path)
    try:
        return {r[0] for r in database.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        database.close()


def test_a_vault_database_url_naming_the_main_sqlite_database_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _data_dir(tmp_path)
    main = directory / "tradeguard.db"
    before = _tables(main)
    # Another spelling of the same file.
    monkeypatch.setenv("TRADEGUARD_VAULT_DATABASE_URL", f"sqlite:///{directory}/./tradeguard.db")
    for command in (["vault", "upgrade"], ["vault", "serve"]):
        result = runner.invoke(app, [*command, "--data-dir", str(directory)])
        assert result.exit_code == 2, result.output
        assert "the card vault needs a database of its own" in _one_line(result.output)
    assert _tables(main) == before
    assert "vault_card" not in before


def test_a_vault_database_url_naming_the_main_postgresql_database_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same server and database under another driver spelling and user: refused before
    # any connection is made.
    main = make_url(POSTGRES_URL)
    monkeypatch.setenv("TRADEGUARD_DATABASE_URL", POSTGRES_URL)
    same = main.set(drivername="postgresql+asyncpg", username="vault", password="other")
    monkeypatch.setenv("TRADEGUARD_VAULT_DATABASE_URL", same.render_as_string(hide_password=False))
    result = runner.invoke(app, ["vault", "upgrade", "--data-dir", str(tmp_path / "var")])
    assert result.exit_code == 2, result.output
    assert "the card vault needs a database of its own" in _one_line(result.output)
    assert not (tmp_path / "var").exists()
    # Another database on the same server is the vault's own: not refused by this check.
    monkeypatch.setenv(
        "TRADEGUARD_VAULT_DATABASE_URL",
        main.set(database=f"{main.database}_vault").render_as_string(hide_password=False),
    )
    settings = Settings(data_dir=tmp_path / "var")  # type: ignore[call-arg]
    assert own_vault_url(settings) == settings.vault_url
