"""`tradeguard vault certs list | revoke | crl` and `vault serve --metrics-address` at the
command line (PCI-3, PCI-1), with the vault database on SQLite or PostgreSQL: a revocation
is signed into the CA's list and recorded in the vault's access log; bad input (a serial
that is not hex, one the CA never issued, the server's, a second revocation, an unknown
reason, no CA) is one line and exit 2, and changes nothing."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.integration.cli.test_vault_keys_cli import (
    data_dir,
    settings_of,
    vault,
    vault_query,
    vault_url,
)
from tradeguard.cli.main import app
from tradeguard.vault.certs import VaultPki, format_serial, load_crl, x509_serial
from tradeguard.vault.domain import VaultRole

__all__ = ["data_dir", "vault_url"]  # fixtures, defined with the vault key commands

runner = CliRunner()


def pki_of(directory: Path) -> VaultPki:
    return VaultPki(settings_of(directory).vault_pki_dir)


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def revocations(directory: Path) -> list[dict[str, object]]:
    return [
        {"log_role": row[0], "by": row[1], **json.loads(str(row[2]))}
        for row in vault_query(
            directory,
            "SELECT role, on_behalf_of, detail FROM vault_access_log "
            "WHERE operation = 'vault:certificate:revoked' ORDER BY occurred_ns",
        )
    ]


@pytest.fixture
def issued(data_dir: Path) -> Path:
    result = vault("certs", data_dir=data_dir)
    assert result.exit_code == 0, result.output
    assert "crl.pem" in result.output
    return data_dir


class TestCertsCli:
    @pytest.mark.spec("PCI-3")
    def test_revoke_signs_the_list_records_it_and_list_shows_it(self, issued: Path) -> None:
        pki = pki_of(issued)
        payment = format_serial(x509_serial(pki.client_cert(VaultRole.PAYMENT)))
        app_serial = format_serial(x509_serial(pki.client_cert(VaultRole.APP)))
        listed = vault("certs", "list", data_dir=issued)
        assert listed.exit_code == 0, listed.output
        assert payment in listed.output
        assert "revoked" not in listed.output

        # Colons, lower case: as other tools print serials.
        given = ":".join(payment[i : i + 2] for i in range(0, len(payment), 2)).lower()
        result = vault("certs", "revoke", given, "--reason", "key-compromise", data_dir=issued)
        assert result.exit_code == 0, result.output
        assert f"revoked {payment}" in result.output
        assert {entry.serial_number for entry in load_crl(pki)} == {
            x509_serial(pki.client_cert(VaultRole.PAYMENT))
        }
        [record] = revocations(issued)
        assert record["log_role"] == "operator"
        assert record["role"] == "payment"
        assert str(record["by"]).startswith("operator:")
        assert (record["serial"], record["reason"], record["kind"]) == (
            payment,
            "key-compromise",
            "client",
        )
        listed = vault("certs", "list", data_dir=issued)
        assert listed.exit_code == 0, listed.output
        line = next(line for line in listed.output.splitlines() if payment in line)
        assert "revoked" in line
        assert "key-compromise" in line
        other = next(line for line in listed.output.splitlines() if app_serial in line)
        assert "revoked" not in other

        # Re-issuing: the old serial stays listed (revoked), the new one is current.
        assert vault("certs", data_dir=issued).exit_code == 0
        listed = vault("certs", "list", data_dir=issued).output
        assert payment in listed
        assert format_serial(x509_serial(pki.client_cert(VaultRole.PAYMENT))) in listed
        assert {entry.serial_number for entry in load_crl(pki)} == {int(payment, 16)}

    @pytest.mark.parametrize(
        ("serial", "reason", "message"),
        [
            ("not-hex!", "superseded", "hexadecimal"),
            ("ABCDEF0123", "superseded", "was issued by this vault CA"),
            ("SERVER", "superseded", "the server certificate"),
            ("PAYMENT", "because", "unknown reason"),
        ],
    )
    def test_bad_input_is_one_line_exit_2_and_changes_nothing(
        self, issued: Path, serial: str, reason: str, message: str
    ) -> None:
        pki = pki_of(issued)
        if serial == "SERVER":
            serial = format_serial(x509_serial(pki.server_cert))
        elif serial == "PAYMENT":
            serial = format_serial(x509_serial(pki.client_cert(VaultRole.PAYMENT)))
        before = pki.crl.read_bytes()
        result = vault("certs", "revoke", serial, "--reason", reason, data_dir=issued)
        assert result.exit_code == 2, result.output
        assert message in one_line(result.output)
        assert pki.crl.read_bytes() == before
        assert revocations(issued) == []

    def test_a_second_revocation_and_a_missing_reason_are_refused(self, issued: Path) -> None:
        pki = pki_of(issued)
        serial = format_serial(x509_serial(pki.client_cert(VaultRole.APP)))
        assert (
            vault("certs", "revoke", serial, "--reason", "superseded", data_dir=issued).exit_code
            == 0
        )
        again = vault("certs", "revoke", serial, "--reason", "superseded", data_dir=issued)
        assert again.exit_code == 2
        assert "already revoked" in one_line(again.output)
        missing = vault("certs", "revoke", serial, data_dir=issued)
        assert missing.exit_code == 2
        assert "--reason" in missing.output
        assert len(revocations(issued)) == 1

    def test_crl_signs_the_list_again_keeping_its_entries(self, issued: Path) -> None:
        pki = pki_of(issued)
        serial = x509_serial(pki.client_cert(VaultRole.APP))
        assert (
            vault(
                "certs", "revoke", format_serial(serial), "--reason", "superseded", data_dir=issued
            ).exit_code
            == 0
        )
        before = load_crl(pki)
        result = vault("certs", "crl", data_dir=issued)
        assert result.exit_code == 0, result.output
        after = load_crl(pki)
        assert {e.serial_number for e in after} == {serial}
        assert after.last_update_utc >= before.last_update_utc

    def test_without_a_ca_the_commands_say_so(self, data_dir: Path) -> None:
        for args in (("list",), ("revoke", "AB", "--reason", "superseded"), ("crl",)):
            result = vault("certs", *args, data_dir=data_dir)
            assert result.exit_code == 2, result.output
            assert "no vault CA" in one_line(result.output)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class TestServeMetricsAddress:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--metrics-address", "10.0.0.5:9465"], "not a loopback address"),
            (["--metrics-address", "vault.internal:9465"], "give an IP address and a port"),
            (
                ["--metrics-address", "8.8.8.8:9465", "--metrics-allow-remote"],
                "not a loopback or private address",
            ),
        ],
    )
    def test_a_bad_metrics_address_is_refused_before_serving(
        self, issued: Path, args: list[str], message: str
    ) -> None:
        result = runner.invoke(app, ["vault", "serve", "--data-dir", str(issued), *args])
        assert result.exit_code == 2, result.output
        assert message in one_line(result.output)
        assert not (issued / "vault.sock").exists()

    def test_a_metrics_port_in_use_is_refused(self, issued: Path) -> None:
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
                    str(issued),
                    "--metrics-address",
                    f"127.0.0.1:{port}",
                ],
            )
        finally:
            taken.close()
        assert result.exit_code == 2, result.output
        assert "already in use" in one_line(result.output)
