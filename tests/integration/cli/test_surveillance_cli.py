"""`tradeguard surveillance` against a real data directory: the stream run once finds what
traders did through the trading core, alerts are listed and shown, owner links are kept
(audited as the operator), the evaluation runs on a generated market; bad input fails in
one line with exit 2 (refused input) or 1 (refused action) and changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    Market,
    customer,
    order,
    trade_a_market,
)
from tests.support.api import Api, login, running_api
from tests.support.trading import add_instrument, street_order
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.orders import Side
from tradeguard.db.engine import create_engine
from tradeguard.ledger.models import AuditEventRow

runner = CliRunner()
OPERATOR = pwd.getpwuid(os.geteuid()).pw_name
UNKNOWN = "0190c5a0-0000-7000-8000-000000000000"
T = TypeVar("T")

COMMANDS = [
    ["surveillance"],
    ["surveillance", "run"],
    ["surveillance", "alerts"],
    ["surveillance", "links"],
    ["surveillance", "link"],
    ["surveillance", "unlink"],
    ["surveillance", "derive-links"],
    ["surveillance", "dismiss-link"],
    ["surveillance", "evaluate"],
    ["surveillance", "verify"],
    ["surveillance", "dismiss-alert"],
    ["surveillance", "escalate-alert"],
    ["surveillance", "reopen-alert"],
]


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.output


def arranged(tmp_path: Path, arrange: Callable[[Api], Awaitable[T]]) -> tuple[Path, T]:
    """A new data directory, and what `arrange` did in it through the running app."""
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0
    found: list[T] = []

    async def run_app() -> None:
        settings = Settings(data_dir=directory, _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        try:
            async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as api:
                found.append(await arrange(api))
        finally:
            await engine.dispose()

    asyncio.run(run_app())
    return directory, found[0]


@pytest.fixture
def traded(tmp_path: Path) -> tuple[Path, Market]:
    """A data directory where a morning of ACME was traded (a wash trader, a spoofer)."""
    return arranged(tmp_path, trade_a_market)


def ledger_events(data_dir: Path, event_type: str) -> list[dict[str, object]]:
    async def read() -> list[dict[str, object]]:
        engine = create_engine(f"sqlite:///{data_dir / 'tradeguard.db'}")
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEventRow.body).where(AuditEventRow.event_type == event_type)
            )
            bodies = [json.loads(b) for b in rows.scalars()]
        await engine.dispose()
        return bodies

    return asyncio.run(read())


class TestHelp:
    @pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
    def test_every_surveillance_command_has_help(self, command: list[str]) -> None:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output


class TestStreamAndAlerts:
    @pytest.mark.spec("MAN-5")
    def test_an_operator_runs_the_stream_once_and_reads_the_alerts(
        self, traded: tuple[Path, Market]
    ) -> None:
        data_dir, market = traded
        code, out = run(data_dir, "surveillance", "run", "--once")
        assert code == 0, out
        assert "2 new alerts" in out
        code, out = run(data_dir, "surveillance", "run", "--once")
        assert (code, "0 new alerts" in out) == (0, True)
        code, out = run(data_dir, "surveillance", "alerts", "--json")
        alerts = json.loads(out)
        assert {a["alert_type"] for a in alerts} == {"WASH_TRADE", "SPOOFING"}
        code, table = run(data_dir, "surveillance", "alerts")
        assert code == 0
        assert "WASH_TRADE" in table
        assert "SPOOFING" in table
        code, out = run(data_dir, "surveillance", "alerts", "--type", "spoofing", "--json")
        [spoof] = json.loads(out)
        assert spoof["owner"] == market.sam.user_id
        code, out = run(
            data_dir, "surveillance", "alerts", "--account", market.mia.accounts[0], "--json"
        )
        assert json.loads(out) == []
        code, shown = run(data_dir, "surveillance", "alerts", spoof["id"])
        assert code == 0
        assert market.spoof_order in shown
        # The trades behind it, one line each: the spoof bid and the sale into the street.
        assert re.search(r"buy\s+5000 @ 49\.97\s+filled 0\s+cancelled", shown), shown
        assert re.search(r"sell 300 @ 49\.98 .*counterparty street", shown), shown
        code, out = run(data_dir, "surveillance", "alerts", spoof["id"], "--json")
        assert json.loads(out)["evidence"]["cancelled_quantity"] == 5000

    def test_an_unknown_alert_exits_1_and_malformed_input_exits_2(
        self, traded: tuple[Path, Market]
    ) -> None:
        data_dir, _ = traded
        code, out = run(data_dir, "surveillance", "alerts", UNKNOWN)
        assert code == 1
        assert "no such alert" in out
        for args in (
            ["alerts", "not-an-id"],
            ["alerts", "--type", "INSIDER_TRADING"],  # not a model
            ["alerts", "--symbol", "bad symbol"],
            ["alerts", "--account", "123"],
            ["alerts", "--limit", "0"],
            ["alerts", UNKNOWN, "--symbol", "ACME"],
        ):
            code, out = run(data_dir, "surveillance", *args)
            assert code == 2, (args, out)
            assert "Traceback" not in out

    def test_commands_refuse_a_directory_without_a_database(self, tmp_path: Path) -> None:
        code, out = run(tmp_path / "empty", "surveillance", "alerts")
        assert code == 2
        assert "tradeguard init" in out


class TestLinks:
    @pytest.mark.spec("MAN-1")
    def test_linking_two_owners_accounts_makes_their_crosses_wash_trades(
        self, tmp_path: Path
    ) -> None:
        directory = tmp_path / "var"
        assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0
        found: list[Market] = []

        async def arrange() -> None:
            settings = Settings(data_dir=directory, _env_file=None)  # type: ignore[call-arg]
            engine = create_engine(settings.main_database_url)
            try:
                async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as api:
                    found.append(await trade_a_market(api))
            finally:
                await engine.dispose()

        asyncio.run(arrange())
        market = found[0]
        # Mia and Sam turn out to be one household: link one account of each.
        code, out = run(
            directory,
            "surveillance",
            "link",
            market.mia.accounts[0],
            market.sam.accounts[0],
            "--reason",
            "same household (KYC review 2026-01-05)",
        )
        assert code == 0, out
        link_id = out.strip().split()[-1]
        code, out = run(directory, "surveillance", "links", "--json")
        [link] = json.loads(out)
        assert link["id"] == link_id
        assert link["created_by"] == f"operator:{OPERATOR}"
        code, out = run(
            directory,
            "surveillance",
            "link",
            market.sam.accounts[0],
            market.mia.accounts[0],
            "--reason",
            "again",
        )
        assert code == 1
        assert "already linked" in out
        [added] = ledger_events(directory, "surveillance:link:added")
        assert added["actor"] == {"kind": "operator", "id": OPERATOR}
        assert added["data"]["reason"] == "same household (KYC review 2026-01-05)"
        code, out = run(directory, "surveillance", "unlink", link_id, "--reason", "KYC corrected")
        assert code == 0, out
        [removed] = ledger_events(directory, "surveillance:link:removed")
        assert removed["data"]["reason"] == "KYC corrected"
        code, out = run(directory, "surveillance", "links")
        assert out.strip() == "no links"

    def test_bad_links_are_refused_and_change_nothing(self, traded: tuple[Path, Market]) -> None:
        data_dir, market = traded
        sam = market.sam.accounts[0]
        cases = [
            (["link", sam, sam, "--reason", "same person"], 2, "name two accounts"),
            (["link", sam, UNKNOWN, "--reason", "same person"], 2, "both accounts must exist"),
            (["link", sam, "nope", "--reason", "same person"], 2, "UUID"),
            (["link", sam, market.mia.accounts[0], "--reason", "x"], 2, "at least 3"),
            (
                ["link", sam, market.mia.accounts[0], "--reason", "evil \x1b[2J"],
                2,
                "printable",
            ),
            (["unlink", UNKNOWN, "--reason", "no such"], 1, "no such link"),
            (
                ["link", *market.ursula.accounts, "--reason", "same person"],
                2,
                "already share an owner",
            ),
        ]
        for args, expected, message in cases:
            code, out = run(data_dir, "surveillance", *args)
            assert code == expected, (args, out)
            assert message in out, (args, out)
        code, out = run(data_dir, "surveillance", "links", "--json")
        assert json.loads(out) == []
        assert ledger_events(data_dir, "surveillance:link:added") == []


TABLET = {"platform": "iPadOS", "screen": "1024x768", "language": "en-GB"}


@pytest.fixture
def shared_tablet(tmp_path: Path) -> tuple[Path, list[str]]:
    """A data directory where two customers who traded signed in on one tablet (only
    traders are linked), and two more have an account each (to link by hand); returns the
    directory and those two accounts."""

    async def arrange(api: Api) -> list[str]:
        await add_instrument(api, "ACME", "50.00")
        await street_order(api, "ACME", Side.SELL, 50_000, "50.02")
        for name, ip in (("ursula", "198.51.100.10"), ("victor", "192.0.2.44")):
            who = await customer(api, name)
            await order(api, who, who.accounts[0], "buy", 100, "50.02")
            async with api.client(ip) as client:
                await login(client, name, device=TABLET)
        return [(await customer(api, name)).accounts[0] for name in ("mallory", "mel")]

    return arranged(tmp_path, arrange)


class TestDerivedLinks:
    def test_an_operator_derives_lists_and_dismisses_a_shared_device_link(
        self, shared_tablet: tuple[Path, list[str]]
    ) -> None:
        data_dir, _ = shared_tablet
        code, out = run(data_dir, "surveillance", "derive-links")
        assert code == 0, out
        # (The sign-ins were in January, outside the network lookback of the system clock's
        # last 30 days; devices are judged whenever they were used.)
        assert out.startswith("1 new owner links from 0 sign-ins"), out
        assert out.strip().endswith("and 1 shared devices")
        code, out = run(data_dir, "surveillance", "links", "--kind", "device", "--json")
        [link] = json.loads(out)
        assert (link["kind"], link["status"]) == ("device", "active")
        assert link["created_by"] == "system:surveillance"
        assert link["evidence"]["users_on_device"] == 2
        code, table = run(data_dir, "surveillance", "links")
        assert code == 0
        assert f"{link['id']}  device" in table
        assert link["evidence"]["device_key"] in table
        assert "198.51.100" not in table
        code, out = run(
            data_dir, "surveillance", "dismiss-link", link["id"], "--reason", "a family tablet"
        )
        assert (code, out.strip()) == (0, f"dismissed: {link['id']}")
        [event] = ledger_events(data_dir, "surveillance:link:dismissed")
        assert event["actor"] == {"kind": "operator", "id": OPERATOR}
        # Dismissed stays dismissed: the stream's run derives nothing new.
        code, out = run(data_dir, "surveillance", "run", "--once")
        assert code == 0, out
        assert "0 new owner links" in out
        code, out = run(data_dir, "surveillance", "links", "--status", "dismissed", "--json")
        assert [row["id"] for row in json.loads(out)] == [link["id"]]

    def test_bad_dismissals_fail_in_one_line_and_change_nothing(
        self, shared_tablet: tuple[Path, list[str]]
    ) -> None:
        data_dir, (first, second) = shared_tablet
        assert run(data_dir, "surveillance", "derive-links")[0] == 0
        code, out = run(data_dir, "surveillance", "link", first, second, "--reason", "one person")
        manual = out.strip().split()[-1]
        code, out = run(data_dir, "surveillance", "links", "--kind", "device", "--json")
        [derived] = json.loads(out)
        cases = [
            (["dismiss-link", UNKNOWN, "--reason", "no such"], 1, "no such link"),
            (["dismiss-link", "nope", "--reason", "no such"], 2, "UUID"),
            (["dismiss-link", derived["id"], "--reason", "x"], 2, "at least 3"),
            (["dismiss-link", derived["id"]], 2, "--reason"),
            (["dismiss-link", manual, "--reason", "wrong person"], 1, "removed (unlink)"),
            (["unlink", derived["id"], "--reason", "wrong person"], 1, "dismissed, not removed"),
            (["links", "--kind", "telepathy"], 2, "telepathy"),
        ]
        for args, expected, message in cases:
            code, out = run(data_dir, "surveillance", *args)
            assert code == expected, (args, out)
            assert message in out, (args, out)
            assert "Traceback" not in out
        assert ledger_events(data_dir, "surveillance:link:dismissed") == []
        code, out = run(data_dir, "surveillance", "links", "--json")
        assert {row["status"] for row in json.loads(out)} == {"active"}


class TestEvaluate:
    @pytest.mark.spec("MAN-1", "MAN-2")
    def test_the_evaluation_reports_precision_recall_and_latency_per_detector(self) -> None:
        result = runner.invoke(
            app,
            [
                "surveillance",
                "evaluate",
                "--seed",
                "7",
                "--accounts",
                "30",
                "--days",
                "1",
                "--episodes",
                "3",
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["seed"] == 7
        for detector in ("MAN-1", "MAN-2"):
            row = report["detectors"][detector]
            assert row["episodes"] >= 1
            assert row["recall"] is not None
            assert 0 <= row["recall"] <= 1
            assert set(row["detection_delay_seconds"]) == {"p50", "p95", "max"}
        assert "NEAR_MISS_SWING_TRADE" in report["near_misses"]
        text = runner.invoke(
            app,
            [
                "surveillance",
                "evaluate",
                "--seed",
                "7",
                "--accounts",
                "30",
                "--days",
                "1",
                "--episodes",
                "3",
            ],
        )
        assert text.exit_code == 0
        assert "MAN-1" in text.output
        assert "precision" in text.output

    @pytest.mark.spec("PRE-3")
    def test_the_evaluation_reports_momentum_ignition_in_a_row_of_its_own(self) -> None:
        args = ["surveillance", "evaluate", "--seed", "1", "--accounts", "60", "--episodes", "4"]
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        row = report["detectors"]["PRE-3/MI"]
        assert row["episodes"] == 4
        assert row["recall"] == 1.0
        assert row["precision"] == 1.0
        assert set(row["alert_types"]) == {"MOMENTUM_IGNITION"}
        for kind in ("NEAR_MISS_WORKING_ORDER", "NEAR_MISS_STOP_LOSS"):
            assert report["near_misses"][kind]["flagged"] == 0
        text = runner.invoke(app, args)
        assert text.exit_code == 0
        assert re.search(r"^PRE-3/MI\s+4\s+4\s+1\.000", text.output, re.MULTILINE), text.output
        assert "NEAR_MISS_NEWS_BUYER_HOLDS" in text.output

    @pytest.mark.parametrize(
        "args",
        [["--accounts", "5"], ["--days", "0"], ["--episodes", "0"], ["--seed", "x"]],
    )
    def test_bad_evaluation_input_exits_2(self, args: list[str]) -> None:
        result = runner.invoke(app, ["surveillance", "evaluate", *args])
        assert result.exit_code == 2


class TestAlertStatusAndVerify:
    @pytest.mark.spec("MAN-5")
    def test_an_operator_dismisses_an_alert_and_verify_finds_a_row_edited_with_sql(
        self, traded: tuple[Path, Market]
    ) -> None:
        data_dir, _ = traded
        assert run(data_dir, "surveillance", "run", "--once")[0] == 0
        [spoof] = json.loads(
            run(data_dir, "surveillance", "alerts", "--type", "spoofing", "--json")[1]
        )
        code, out = run(data_dir, "surveillance", "dismiss-alert", spoof["id"])
        assert code == 2  # --reason is required
        code, out = run(
            data_dir, "surveillance", "dismiss-alert", spoof["id"], "--reason", "re-quoting"
        )
        assert (code, out.strip()) == (0, f"{spoof['id']}: dismissed"), out
        code, out = run(data_dir, "surveillance", "escalate-alert", spoof["id"], "--reason", "why")
        assert code == 1
        assert "dismissed" in out
        code, out = run(data_dir, "surveillance", "alerts", "--status", "dismissed", "--json")
        assert [a["id"] for a in json.loads(out)] == [spoof["id"]]
        [event] = ledger_events(data_dir, "surveillance:alert:dismissed")
        assert event["actor"] == {"kind": "operator", "id": OPERATOR}
        code, out = run(data_dir, "surveillance", "verify")
        assert (code, "ok: every row agrees" in out) == (0, True), out

        async def tamper() -> None:
            engine = create_engine(f"sqlite:///{data_dir / 'tradeguard.db'}")
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE surveillance_alerts SET status = 'new' WHERE id = :id"),
                    {"id": spoof["id"]},
                )
            await engine.dispose()

        asyncio.run(tamper())
        code, out = run(data_dir, "surveillance", "verify")
        assert code == 1
        assert f"MISMATCH surveillance_alerts {spoof['id']}: status is 'new'" in out
        code, out = run(data_dir, "surveillance", "verify", "--json")
        assert json.loads(out)["mismatches"][0]["derived"] == "dismissed"
