"""`tradeguard access alerts` against a real data directory: the detector run by hand finds
what staff did through the app, alerts are listed, shown and closed (audited as the operator),
and bad input fails in one line with exit 2 (refused input) or 1 (refused action)."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.integration.access.support import MONDAY_10AM, enrol_staff
from tests.support.api import running_api
from tests.support.cases import Cases
from tests.support.webauthn_authenticator import default_metadata_document
from tradeguard.access.domain import Role
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import create_engine
from tradeguard.ledger.models import AuditEventRow

runner = CliRunner()
# The operating-system user of this process (its uid), whatever $USER says.
OPERATOR = pwd.getpwuid(os.geteuid()).pw_name

COMMANDS = [
    ["access"],
    ["access", "alerts"],
    ["access", "alerts", "list"],
    ["access", "alerts", "show"],
    ["access", "alerts", "close"],
    ["access", "alerts", "scan"],
]
UNKNOWN = "0190c5a0-0000-7000-8000-000000000000"


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory where a support agent was refused six times (the default limit is 5)."""
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0

    async def arrange() -> None:
        metadata = directory / "staff-authenticators.json"
        metadata.write_text(default_metadata_document())  # trust the test key vendor (IAC-3)
        settings = Settings(  # type: ignore[call-arg]
            data_dir=directory, _env_file=None, webauthn_staff_metadata_file=metadata
        )
        engine = create_engine(settings.main_database_url)
        try:
            async with (
                running_api(settings, engine, FrozenClock(MONDAY_10AM)) as api,
                api.client("198.51.100.30") as client,
            ):
                sam = await enrol_staff(api, client, "sam", Role.SUPPORT)
                for _ in range(6):
                    assert (await sam.get("/api/v1/admin/halts")).status_code == 403
        finally:
            await engine.dispose()

    asyncio.run(arrange())
    return directory


def only_alert(data_dir: Path) -> dict[str, object]:
    code, out = run(data_dir, "access", "alerts", "list", "--json")
    assert code == 0, out
    [alert] = json.loads(out)
    return dict(alert)


class TestHelp:
    @pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
    def test_every_access_alerts_command_has_help(self, command: list[str]) -> None:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output


BAD_INPUT: list[tuple[list[str], int, str]] = [
    (["access", "alerts", "show", "not-an-id"], 2, "an alert id is a UUID"),
    (["access", "alerts", "show", UNKNOWN], 1, "no such alert"),
    (["access", "alerts", "close", UNKNOWN], 2, "--note"),
    (["access", "alerts", "close", UNKNOWN, "--note", "ok"], 2, "at least 3 characters"),
    (["access", "alerts", "close", UNKNOWN, "--note", "fine"], 1, "no such alert"),
    (["access", "alerts", "list", "--status", "bogus"], 2, "--status"),
    (["access", "alerts", "list", "--limit", "0"], 2, "--limit"),
    (["access", "alerts", "list", "--staff", "nobody"], 2, "no user with that"),
]


class TestAlertCommands:
    @pytest.mark.spec("IAC-4")
    def test_an_operator_scans_lists_shows_and_closes_an_alert(self, data_dir: Path) -> None:
        code, out = run(data_dir, "access", "alerts", "scan")
        assert code == 0, out
        assert out.strip().endswith("; 1 new alerts")
        code, out = run(data_dir, "access", "alerts", "scan")
        assert out.strip().endswith("; 0 new alerts")

        alert = only_alert(data_dir)
        assert alert["rule"] == "repeated_denials"
        assert alert["summary"] == "6 denied permission checks within 600 s (limit 5)"
        code, table = run(data_dir, "access", "alerts", "list")
        assert code == 0
        assert "repeated_denials" in table
        code, by_staff = run(data_dir, "access", "alerts", "list", "--staff", "sam", "--json")
        assert [a["id"] for a in json.loads(by_staff)] == [alert["id"]]
        code, none_closed = run(data_dir, "access", "alerts", "list", "--status", "closed")
        assert none_closed.strip() == "no alerts"
        code, shown = run(data_dir, "access", "alerts", "show", str(alert["id"]))
        assert code == 0
        assert "repeated_denials" in shown

        note = "Drill [bold]expected[/]; see [/red] runbook."
        code, out = run(data_dir, "access", "alerts", "close", str(alert["id"]), "--note", note)
        assert (code, out.strip()) == (0, f"closed {alert['id']}")
        code, out = run(data_dir, "access", "alerts", "show", str(alert["id"]), "--json")
        closed = json.loads(out)
        assert closed["status"] == "closed"
        assert closed["closed_by"] == f"operator:{OPERATOR}"
        assert closed["note"] == note
        # Free text is printed as written, never read as terminal markup.
        code, shown = run(data_dir, "access", "alerts", "show", str(alert["id"]))
        assert code == 0
        assert note in shown
        code, out = run(data_dir, "access", "alerts", "close", str(alert["id"]), "--note", "again")
        assert code == 1
        assert "already closed" in out

        async def closing_events() -> list[dict[str, object]]:
            engine = create_engine(f"sqlite:///{data_dir / 'tradeguard.db'}")
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(AuditEventRow.body).where(
                        AuditEventRow.event_type == "access:alert:closed"
                    )
                )
                bodies = [json.loads(b) for b in rows.scalars()]
            await engine.dispose()
            return bodies

        [event] = asyncio.run(closing_events())
        assert event["actor"] == {"kind": "operator", "id": OPERATOR}

    def test_bad_input_fails_in_one_clear_line(self, data_dir: Path) -> None:
        run(data_dir, "access", "alerts", "scan")
        cases = Cases()
        for argv, code, expected in BAD_INPUT:
            result, out = run(data_dir, *argv)
            status = only_alert(data_dir)["status"]
            with cases.case(" ".join(argv)):
                assert result == code, out
                assert expected in out
                assert "Traceback" not in out
                assert status == "open"
        cases.check()

    def test_no_database_is_refused_with_a_hint(self, tmp_path: Path) -> None:
        code, out = run(tmp_path / "nothing-here", "access", "alerts", "list")
        assert code == 2
        assert "no tradeguard database here" in out
