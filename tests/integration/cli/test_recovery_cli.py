"""`tradeguard takeover recovery`: account recovery (ATO-3) at the console: help on every
command, a case opened and worked by named staff (console codes), four-eyes refusals, the
permission, and clear errors with nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.integration.cli.test_takeover_cli import arranged_data_dir, events, run
from tradeguard.cli.main import app

runner = CliRunner()
UNKNOWN = "0190c5a0-0000-7000-8000-000000000000"
COMMANDS = [
    ["takeover", "recovery"],
    *(
        ["takeover", "recovery", name]
        for name in (
            "open",
            "verify",
            "reset",
            "timeline",
            "mark",
            "reverse",
            "approve",
            "withdraw",
            "close",
            "list",
            "show",
        )
    ),
]


class TestHelp:
    @pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
    def test_every_recovery_command_has_help(self, command: list[str]) -> None:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The takeover data directory; the customer has a real KYC record on file (an approved
    application, born 12 April 1985, postcode SW1A 1AA, tax reference ending 6789, and a
    verified passport), which the commands read through the KYC container they build."""
    return arranged_data_dir(tmp_path, kyc_record=True)


class TestRecoveryCommands:
    @pytest.mark.spec("ATO-3")
    def test_staff_open_and_work_a_case_with_four_eyes(self, data_dir: Path) -> None:
        code, output = run(data_dir, "takeover", "reviews", "list", "--json")
        [review] = json.loads(output)
        code, output = run(data_dir, "takeover", "recovery", "open", "--review", review["id"])
        assert code == 2, output  # who opens it must be named
        code, output = run(
            data_dir, "takeover", "recovery", "open", "--review", review["id"], "--as", "sam"
        )
        assert code == 1, output
        assert "fraud:recover" in output
        code, output = run(
            data_dir, "takeover", "recovery", "open", "--review", review["id"], "--as", "ada"
        )
        assert code == 0, output
        case_id = output.split("opened: ")[1].split()[0]
        code, output = run(data_dir, "takeover", "recovery", "list", "--json")
        [case] = json.loads(output)
        assert (case["id"], case["status"]) == (case_id, "open")
        # Nothing consequential before identity is re-verified.
        code, output = run(
            data_dir,
            "takeover",
            "recovery",
            "reset",
            case_id,
            "--reason",
            "intruder knows it",
            "--as",
            "ada",
        )
        assert code == 1, output
        assert "re-verify" in output
        # A wrong statement: refused with the attempts left, the record never shown.
        stated = ["--birth-date", "1985-04-12", "--postal-code", "SW1A 1AA"]
        verify = ["takeover", "recovery", "verify", case_id, "--method", "kyc_record", *stated]
        code, output = run(data_dir, *verify, "--tax-id-last4", "1111", "--as", "ada")
        assert code == 1, output
        assert "attempts left against the record: 2" in output
        assert "6789" not in output
        code, output = run(data_dir, *verify, "--tax-id-last4", "6789", "--as", "ada")
        assert code == 0, output
        assert "identity verified (kyc_record)" in output
        code, output = run(
            data_dir,
            "takeover",
            "recovery",
            "reset",
            case_id,
            "--reason",
            "intruder knows it",
            "--as",
            "ada",
        )
        assert code == 0, output
        reset_id = output.split("proposed reset_credentials: ")[1].split(";")[0]
        code, output = run(data_dir, "takeover", "recovery", "approve", reset_id, "--as", "ada")
        assert code == 1, output
        assert "cannot also approve" in output
        code, output = run(data_dir, "takeover", "recovery", "approve", reset_id, "--as", "bob")
        assert code == 0, output
        assert "factors_removed" in output
        code, output = run(data_dir, "takeover", "recovery", "timeline", case_id, "--as", "ada")
        assert code == 0, output
        code, output = run(
            data_dir,
            "takeover",
            "recovery",
            "close",
            case_id,
            "--outcome",
            "not_a_takeover",
            "--reason",
            "owner travelled",
            "--as",
            "ada",
        )
        assert code == 0, output
        proposal_id = output.split("proposed close: ")[1].split(";")[0]
        code, output = run(data_dir, "takeover", "recovery", "approve", proposal_id, "--as", "ada")
        assert code == 1, output
        assert "cannot also approve" in output
        code, output = run(data_dir, "takeover", "recovery", "approve", proposal_id, "--as", "bob")
        assert code == 0, output
        code, output = run(data_dir, "takeover", "recovery", "show", case_id, "--json")
        shown = json.loads(output)
        assert (shown["status"], shown["outcome"]) == ("closed", "not_a_takeover")
        [closed] = events(data_dir, "fraud:recovery:closed")
        assert closed["actor"]["kind"] == "staff"  # type: ignore[index]

    def test_bad_input_exits_2_unknown_ids_exit_1_and_nothing_changes(self, data_dir: Path) -> None:
        before = events(data_dir, "fraud:")
        bad = [
            ["show", "not-an-id"],
            ["list", "--status", "maybe"],
            ["list", "--user", "nobody"],
            ["open", "--as", "ada"],
            ["open", "--user", UNKNOWN, "--review", UNKNOWN, "--as", "ada"],
            ["verify", UNKNOWN, "--method", "telepathy", "--as", "ada"],
            ["verify", UNKNOWN, "--method", "kyc_record", "--as", "ada"],
            [
                "verify",
                UNKNOWN,
                "--method",
                "kyc_record",
                "--birth-date",
                "12/04/1985",
                "--postal-code",
                "SW1A 1AA",
                "--tax-id-last4",
                "6789",
                "--as",
                "ada",
            ],
            ["close", UNKNOWN, "--outcome", "maybe", "--reason", "abc", "--as", "ada"],
            ["mark", UNKNOWN, "--seq", "0", "--note", "abc", "--as", "ada"],
            ["timeline", UNKNOWN, "--since", "yesterday", "--as", "ada"],
            ["reverse", UNKNOWN, "--execution", "x", "--reason", "abc", "--as", "ada"],
        ]
        for args in bad:
            code, output = run(data_dir, "takeover", "recovery", *args)
            assert code == 2, (args, output)
            assert "Traceback" not in output
        for args in (
            ["show", UNKNOWN],
            ["approve", UNKNOWN, "--as", "bob"],
            ["open", "--user", UNKNOWN, "--as", "ada"],
            ["mark", UNKNOWN, "--seq", "3", "--note", "abc", "--as", "ada"],
        ):
            code, output = run(data_dir, "takeover", "recovery", *args)
            assert code == 1, (args, output)
            assert "Traceback" not in output
        assert events(data_dir, "fraud:") == before
