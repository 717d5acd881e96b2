"""`tradeguard vault serve` refusing to start: one clear line and a non-zero exit, never a
traceback, and nothing it refuses is changed (a running vault's socket, a key file)."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.crypto.providers import create_master_key_file

runner = CliRunner()


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
            ["vault", "serve", "--data-dir", str(directory), "--listen", f"https://127.0.0.1:{port}"],
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
