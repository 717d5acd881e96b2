"""`tradeguard trading`: reference data, accounts, kill switches and reconciliation from the
command line, against a real data directory; bad input fails in one line."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tradeguard.access.domain import Role
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.identity.password_hashing import Argon2Parameters

runner = CliRunner()
UNKNOWN_ORDER = "00000000-0000-7000-8000-000000000000"

TRADING_COMMANDS = [
    ["trading"],
    ["trading", "instruments"],
    ["trading", "instruments", "list"],
    ["trading", "instruments", "add"],
    ["trading", "instruments", "update"],
    ["trading", "restricted", "add"],
    ["trading", "restricted", "remove"],
    ["trading", "accounts", "list"],
    ["trading", "accounts", "open"],
    ["trading", "accounts", "adjust"],
    ["trading", "accounts", "status"],
    ["trading", "orders", "list"],
    ["trading", "orders", "cancel"],
    ["trading", "halt"],
    ["trading", "resume"],
    ["trading", "halts"],
    ["trading", "reconcile"],
    ["trading", "settle"],
    ["trading", "stock-loan"],
]


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0

    async def trader() -> None:
        settings = Settings(data_dir=directory, _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        clock = SystemClock()
        identity = await start_identity(
            settings,
            clock=clock,
            ids=IdGenerator(clock),
            sessions=session_factory(engine),
            argon2=Argon2Parameters(time_cost=1, memory_cost_kib=1024, parallelism=1),
        )
        async with unit_of_work(identity.sessions) as session:
            await identity.accounts.create_user(
                session,
                username="tina",
                email="tina@example.com",
                password="correct horse battery staple 42",
                role=Role.TRADER,
                email_verified=True,
            )
        await engine.dispose()

    asyncio.run(trader())
    return directory


def ledger(data_dir: Path, event_type: str) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        rows = db.execute(
            "SELECT body FROM audit_event WHERE event_type = ? ORDER BY pk", (event_type,)
        ).fetchall()
    return [json.loads(body) for (body,) in rows]


class TestHelp:
    @pytest.mark.parametrize("command", TRADING_COMMANDS, ids=" ".join)
    def test_every_trading_command_has_help(self, command: list[str]) -> None:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output


class TestTradingCommands:
    def test_an_operator_lists_halts_and_resumes_and_the_books_reconcile(
        self, data_dir: Path
    ) -> None:
        code, out = run(
            data_dir,
            "trading",
            "instruments",
            "add",
            "ACME",
            "--name",
            "Acme",
            "--price",
            "12.50",
            "--etb",
        )
        assert code == 0, out
        code, out = run(data_dir, "trading", "instruments", "list", "--json")
        assert json.loads(out)[0]["symbol"] == "ACME"
        code, out = run(data_dir, "trading", "accounts", "open", "tina", "--type", "margin")
        assert code == 0, out
        account_id = out.split()[1]
        code, out = run(
            data_dir,
            "trading",
            "accounts",
            "adjust",
            account_id,
            "2500.00",
            "--reason",
            "opening deposit",
        )
        assert code == 0, out
        assert run(data_dir, "trading", "restricted", "add", "ACME", "--reason", "MNPI")[0] == 0
        assert (
            run(data_dir, "trading", "restricted", "remove", "ACME", "--reason", "cleared")[0] == 0
        )
        code, out = run(data_dir, "trading", "halt", "--symbol", "ACME", "--reason", "news pending")
        assert code == 0, out
        assert "halted symbol ACME" in out
        code, out = run(data_dir, "trading", "halt", "--symbol", "ACME", "--reason", "again")
        assert code == 1
        assert "already in force" in out
        code, out = run(data_dir, "trading", "halts")
        assert "news pending" in out
        assert (
            run(data_dir, "trading", "resume", "--symbol", "ACME", "--reason", "news out")[0] == 0
        )
        code, out = run(data_dir, "trading", "reconcile", "--json")
        assert code == 0, out
        assert json.loads(out)["ok"] is True

    def test_reconcile_names_a_tampered_balance_and_exits_1(self, data_dir: Path) -> None:
        run(data_dir, "trading", "instruments", "add", "ACME", "--name", "Acme", "--price", "12.50")
        _, out = run(data_dir, "trading", "accounts", "open", "tina")
        account_id = out.split()[1]
        run(data_dir, "trading", "accounts", "adjust", account_id, "100.00", "--reason", "deposit")

        async def tamper() -> None:
            engine = create_engine(f"sqlite:///{data_dir / 'tradeguard.db'}")
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE book_balances SET amount_micros = 1000000000000"))
            await engine.dispose()

        asyncio.run(tamper())
        code, out = run(data_dir, "trading", "reconcile")
        assert code == 1
        assert f"acct:{account_id}:cash" in out
        assert "balance 1000000 but its entries sum to 100" in out

    @pytest.mark.spec("IAC-4")
    def test_what_the_operator_reads_or_changes_shows_in_the_owners_access_log(
        self, data_dir: Path
    ) -> None:
        _, out = run(data_dir, "trading", "accounts", "open", "tina")
        account_id, number = out.split()[1], out.split()[2].strip("(,")
        assert "****" in number  # masked: prefix and last four only
        steps = [
            ["trading", "accounts", "adjust", account_id, "100.00", "--reason", "deposit"],
            [
                "trading",
                "accounts",
                "status",
                account_id,
                "--trading-state",
                "REDUCING",
                "--reason",
                "margin call",
            ],
            ["trading", "halt", "--account", account_id, "--reason", "suspected takeover"],
            ["trading", "resume", "--account", account_id, "--reason", "customer verified"],
            ["trading", "orders", "list", account_id],
            ["trading", "accounts", "list"],
        ]
        for argv in steps:
            code, out = run(data_dir, *argv)
            assert code == 0, out
        # A refused change writes nothing.
        assert run(data_dir, "trading", "orders", "cancel", account_id, UNKNOWN_ORDER)[0] == 1
        with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
            (tina,) = db.execute("SELECT id FROM users WHERE username = 'tina'").fetchone()
            rows = db.execute(
                "SELECT customer_id, actor, actor_role, action, reason"
                " FROM backoffice_access_log ORDER BY created_ns"
            ).fetchall()
        assert [row[3] for row in rows] == [
            "trading_account_opened",
            "cash_adjusted",
            "trading_account_status_changed",
            "trading_account_halted",
            "trading_account_resumed",
            "trading_account_viewed",
            "trading_accounts_listed",
        ]
        assert {row[0] for row in rows} == {tina}
        assert {row[2] for row in rows} == {"OPERATOR"}
        assert all(str(row[1]).startswith("operator:") for row in rows)
        assert [row[4] for row in rows][1:5] == [
            "deposit",
            "margin call",
            "suspected takeover",
            "customer verified",
        ]
        # Attack (M3b): the operator's reads were in the access log but not in the ledger.
        # Each is a ledger event naming the operator and the customers read.
        viewed = ledger(data_dir, "trading:account:viewed")
        listed_events = ledger(data_dir, "trading:account:listed")
        assert [(e["actor"]["kind"], e["subject"]) for e in viewed] == [
            ("operator", {"kind": "account", "id": account_id})
        ]
        assert viewed[0]["data"]["customers"] == [tina]
        assert [e["data"] for e in listed_events] == [
            {"user_id": None, "accounts": 1, "customers": [tina]}
        ]
        assert listed_events[0]["actor"] == viewed[0]["actor"]
        assert str(viewed[0]["actor"]["id"]) == str(rows[0][1]).removeprefix("operator:")
        _, listed = run(data_dir, "trading", "accounts", "list")
        with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
            (full,) = db.execute("SELECT number FROM trading_accounts").fetchone()
        assert full not in listed
        assert len(ledger(data_dir, "trading:account:listed")) == 2
        # A refused read (no such account) is no ledger event.
        assert run(data_dir, "trading", "orders", "list", UNKNOWN_ORDER)[0] == 1
        assert len(ledger(data_dir, "trading:account:viewed")) == 1

    @pytest.mark.parametrize(
        ("argv", "expected"),
        [
            (["trading", "halt", "--reason", "why"], "exactly one of"),
            (["trading", "halt", "--market", "--symbol", "X", "--reason", "why"], "exactly one of"),
            (["trading", "accounts", "adjust", "nope", "ten", "--reason", "why"], "decimal number"),
            (["trading", "accounts", "adjust", "nope", "10", "--reason", "why"], "no such account"),
            (["trading", "accounts", "open", "ghost"], "no user"),
            (["trading", "instruments", "add", "x y", "--name", "n", "--price", "1"], "symbol"),
            (["trading", "resume", "--market", "--reason", "why"], "nothing to resume"),
            (["trading", "accounts", "status", "nope", "--reason", "why"], "--status"),
            (["trading", "halt", "--market", "--reason", "  "], "reason of at least 3"),
            (
                [
                    "trading",
                    "instruments",
                    "add",
                    "ZZ",
                    "--name",
                    "n",
                    "--price",
                    "10",
                    "--tick",
                    "0.003",
                ],
                "not a multiple of the tick",
            ),
        ],
    )
    def test_bad_input_fails_in_one_clear_line(
        self, data_dir: Path, argv: list[str], expected: str
    ) -> None:
        code, out = run(data_dir, *argv)
        assert code in (1, 2)
        assert expected in out
        assert "Traceback" not in out
