"""`tradeguard audit search` and `tradeguard audit export-events` against a real data directory,
on SQLite and on a PostgreSQL database of its own: the same results as the API's rules, files
written whole or not at all, clear one-line errors, and every search audited as the operator."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tradeguard.cli.common import os_operator
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, read_only, session_factory, unit_of_work
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.search.results import CSV_COLUMNS
from tradeguard.ledger.service import Ledger

runner = CliRunner()
ACCOUNT = "acc-cli-1"
FORMULA = "@SUM(1+1)*cmd|'/c'!A0"


@pytest.fixture
def data_dir(tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Path:
    if database_url is not None:
        monkeypatch.setenv("TRADEGUARD_DATABASE_URL", database_url)
    directory = tmp_path / "var"
    result = runner.invoke(app, ["init", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output

    async def seed() -> None:
        settings = Settings(data_dir=directory, database_url=database_url, _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        clock = SystemClock()
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        try:
            async with unit_of_work(session_factory(engine)) as session:
                for n in range(5):
                    account = ACCOUNT if n != 3 else "acc-cli-2"
                    await ledger.append(
                        session,
                        LedgerEvent(
                            type="trading:order:placed",
                            actor=Party("user", FORMULA if n == 2 else "trader-1"),
                            subject=Party("account", account),
                            data={"order_id": f"ord-{n}", "account_id": account, "n": n},
                        ),
                    )
        finally:
            await engine.dispose()

    asyncio.run(seed())  # not chained yet: the commands chain what has committed first
    return directory


def run(data_dir: Path, *args: str) -> Any:
    return runner.invoke(app, ["audit", *args, "--data-dir", str(data_dir)])


def audited(data_dir: Path, database_url: str | None, event_type: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        url = database_url or f"sqlite:///{data_dir / 'tradeguard.db'}"
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                await read_only(conn)
                rows = await conn.execute(
                    text("SELECT body FROM audit_event WHERE event_type = :t ORDER BY pk"),
                    {"t": event_type},
                )
                return [json.loads(bytes(body)) for (body,) in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


class TestHelp:
    @pytest.mark.parametrize("command", ["search", "export-events"])
    def test_each_command_explains_itself(self, command: str) -> None:
        result = runner.invoke(app, ["audit", command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output
        assert "--account" in result.output


# Each refused `audit search` command line, and how its one line on stderr starts.
BAD_SEARCHES: list[tuple[list[str], str]] = [
    (["--type", "trading"], "error: type: give an event type"),
    (["--from", "2026-01-02T00:00:00"], "error: from: give nanoseconds"),
    (["--from", "3", "--to", "2"], "error: from: from must not be after to"),
    (["--account", "a b"], "error: account_id: give an id"),
    (["--cursor", "garbage"], "error: cursor: give the next_cursor"),
]


class TestSearch:
    @pytest.mark.spec("AUD-4")
    def test_a_search_pages_with_the_cursor_and_is_audited_as_the_operator(
        self, data_dir: Path, database_url: str | None
    ) -> None:
        first = run(data_dir, "search", "--account", ACCOUNT, "--limit", "3", "--json")
        assert first.exit_code == 0, first.output
        page = json.loads(first.stdout)
        second = run(
            data_dir,
            "search",
            "--account",
            ACCOUNT,
            "--limit",
            "3",
            "--json",
            "--cursor",
            page["next_cursor"],
        )
        assert second.exit_code == 0, second.output
        rest = json.loads(second.stdout)
        orders = [i["document"]["data"]["order_id"] for i in page["items"] + rest["items"]]
        assert orders == ["ord-4", "ord-2", "ord-1", "ord-0"]
        assert rest["next_cursor"] is None
        table = run(data_dir, "search", "--account", ACCOUNT, "--oldest", "--limit", "2")
        assert table.exit_code == 0, table.output
        assert "trading:" in table.stdout  # folded to the terminal width, never cut short
        assert "more: repeat with --cursor" in table.stderr
        searches = audited(data_dir, database_url, "audit:events:searched")
        assert len(searches) == 3
        assert searches[0]["actor"] == {"kind": "operator", "id": os_operator()}
        assert searches[0]["data"]["filters"] == {"account_id": ACCOUNT}
        assert searches[0]["data"]["via"] == "cli"
        assert [s["data"]["continued"] for s in searches] == [False, True, False]

    def test_the_operator_is_the_effective_user_not_the_environment(
        self, data_dir: Path, database_url: str | None
    ) -> None:
        result = runner.invoke(
            app,
            ["audit", "search", "--json", "--data-dir", str(data_dir)],
            env={
                "USER": "mallory",
                "LOGNAME": "mallory",
                "LNAME": "mallory",
                "USERNAME": "mallory",
            },
        )
        assert result.exit_code == 0, result.output
        searches = audited(data_dir, database_url, "audit:events:searched")
        assert [s["actor"]["id"] for s in searches] == [os_operator()]
        assert os_operator() != "mallory"

    def test_bad_input_exits_2_in_one_line_and_records_nothing(
        self, data_dir: Path, database_url: str | None
    ) -> None:
        failures: list[str] = []
        for args, message in BAD_SEARCHES:
            case = " ".join(args)
            result = run(data_dir, "search", *args)
            if result.exit_code != 2:
                failures.append(f"{case}: exited {result.exit_code}: {result.output}")
            lines = result.stderr.strip().splitlines()
            if not lines or not lines[0].startswith(message):
                failures.append(f"{case}: stderr does not start {message!r}: {result.stderr!r}")
            if audited(data_dir, database_url, "audit:events:searched") != []:
                failures.append(f"{case}: a search was recorded")
        assert not failures, "\n".join(failures)

    def test_without_a_database_it_says_how_to_make_one(self, tmp_path: Path) -> None:
        result = runner.invoke(app, ["audit", "search", "--data-dir", str(tmp_path / "none")])
        assert result.exit_code == 2
        assert "no tradeguard database here" in result.stderr
        assert not (tmp_path / "none" / "tradeguard.db").exists()


def read_csv(path: Path) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


class TestExport:
    @pytest.mark.spec("AUD-4")
    def test_csv_and_json_exports_hold_every_match_and_are_audited(
        self, data_dir: Path, database_url: str | None, tmp_path: Path
    ) -> None:
        out_csv, out_json = tmp_path / "account.csv", tmp_path / "account.json"
        as_csv = run(data_dir, "export-events", "--account", ACCOUNT, "--out", str(out_csv))
        as_json = run(
            data_dir,
            "export-events",
            "--account",
            ACCOUNT,
            "--format",
            "json",
            "--newest",
            "--out",
            str(out_json),
        )
        assert as_csv.exit_code == 0, as_csv.output
        assert as_json.exit_code == 0, as_json.output
        assert "exported 4 events" in as_csv.stdout
        rows = read_csv(out_csv)
        assert [json.loads(r["document"])["data"]["n"] for r in rows] == [0, 1, 2, 4]
        assert rows[2]["actor_id"] == "'" + FORMULA
        items = json.loads(out_json.read_text(encoding="utf-8"))
        assert [i["document"]["data"]["n"] for i in items] == [4, 2, 1, 0]
        assert [i["seq"] for i in items] == [int(r["seq"]) for r in reversed(rows)]
        exports = audited(data_dir, database_url, "audit:events:exported")
        assert [(e["data"]["format"], e["data"]["events"]) for e in exports] == [
            ("csv", 4),
            ("json", 4),
        ]
        assert exports[0]["data"]["via"] == "cli"
        assert not list(tmp_path.glob(".*.part"))

    def test_an_existing_file_is_kept_unless_forced(
        self, data_dir: Path, database_url: str | None, tmp_path: Path
    ) -> None:
        out = tmp_path / "kept.csv"
        out.write_text("precious\n")
        refused = run(data_dir, "export-events", "--out", str(out))
        assert refused.exit_code == 2
        assert "exists" in refused.stderr
        assert out.read_text() == "precious\n"
        assert audited(data_dir, database_url, "audit:events:exported") == []
        forced = run(data_dir, "export-events", "--out", str(out), "--force", "--order", "ord-3")
        assert forced.exit_code == 0, forced.output
        assert [json.loads(r["document"])["data"]["n"] for r in read_csv(out)] == [3]

    def test_a_place_that_cannot_be_written_is_one_line_and_records_nothing(
        self, data_dir: Path, database_url: str | None
    ) -> None:
        result = run(data_dir, "export-events", "--out", "/proc/tradeguard-test.csv")
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert (
            result.stderr.strip()
            .splitlines()[0]
            .startswith("error: cannot write /proc/tradeguard-test.csv")
        )
        assert audited(data_dir, database_url, "audit:events:exported") == []

    def test_a_bad_filter_writes_no_file(self, data_dir: Path, tmp_path: Path) -> None:
        out = tmp_path / "never.csv"
        result = run(data_dir, "export-events", "--out", str(out), "--to", "soon")
        assert result.exit_code == 2
        assert result.stderr.startswith("error: to: ")
        assert not out.exists()
        assert list(tmp_path.iterdir()) == [data_dir]
