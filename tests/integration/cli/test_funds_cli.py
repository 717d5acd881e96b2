"""`tradeguard funds`: the worker's pass, the review queue worked by two different staff
members proved with console codes (WDL-3, four-eyes), and the sandbox statement, against a
real data directory; refusals exit non-zero in one line."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.api import running_api
from tests.support.console import ConsoleKeys
from tests.support.funds import add_bank, confirm, customer, funds_of
from tests.support.funds import request_withdrawal as ask
from tradeguard.access.domain import Role
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.identity.password_hashing import Argon2Parameters

runner = CliRunner()
PASSWORD = "correct horse battery staple 42"
STAFF = {"cora": Role.COMPLIANCE, "dave": Role.COMPLIANCE, "sam": Role.SUPPORT}
COMMANDS = [
    ["funds"],
    ["funds", "process"],
    ["funds", "review"],
    ["funds", "review", "list"],
    ["funds", "review", "approve"],
    ["funds", "review", "refuse"],
    ["funds", "sandbox"],
    ["funds", "sandbox", "statement"],
]


def settings_of(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0

    async def people() -> None:
        settings = settings_of(directory)
        engine = create_engine(settings.main_database_url)
        clock = FrozenClock(time.time_ns())
        identity = await start_identity(
            settings,
            clock=clock,
            ids=IdGenerator(clock),
            sessions=session_factory(engine),
            argon2=Argon2Parameters(time_cost=1, memory_cost_kib=1024, parallelism=1),
        )
        async with unit_of_work(identity.sessions) as session:
            for name, role in STAFF.items():
                await identity.accounts.create_user(
                    session,
                    username=name,
                    email=f"{name}@example.com",
                    password=PASSWORD,
                    role=role,
                    email_verified=True,
                )
        await engine.dispose()

    asyncio.run(people())
    return directory


def a_withdrawal_in_review(data_dir: Path) -> tuple[str, str]:
    """A customer's 20,000 withdrawal, confirmed with both codes, held for review; made over
    the API now (with the holds set to zero for it), so the CLI's wall clock sees it as it is."""

    async def go() -> tuple[str, str]:
        settings = Settings(  # type: ignore[call-arg]
            data_dir=data_dir,
            funds_new_account_cooling_hours=0,
            funds_security_change_cooling_hours=0,
            funds_new_destination_hold_hours=0,
            _env_file=None,
        )
        engine = create_engine(settings.main_database_url)
        try:
            clock = FrozenClock(time.time_ns())
            async with running_api(settings, engine, clock) as api, api.client() as client:
                alice = await customer(api, client, "alice", phone="+14155550107")
                bank_id = await add_bank(api, alice)
                asked = (await ask(alice, "20000.00")).json()
                held = await confirm(api, alice, asked["id"])
                assert held.json()["status"] == "in_review", held.text
                first, second = funds_of(api).processor.statement(bank_id)
                return asked["id"], f"{first:.2f} and {second:.2f}"
        finally:
            await engine.dispose()

    return asyncio.run(go())


def run(data_dir: Path, keys: ConsoleKeys | None, *args: str) -> tuple[int, str]:
    extra, given = [], None
    if "--as" in args and keys is not None:
        name = args[args.index("--as") + 1]
        extra, given = ["--code-stdin"], keys.code(name) + "\n"
    result = runner.invoke(app, [*args, *extra, "--data-dir", str(data_dir)], input=given)
    return result.exit_code, result.output


def events(data_dir: Path, prefix: str) -> list[dict[str, object]]:
    with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        rows = db.execute(
            "SELECT body FROM audit_event WHERE event_type LIKE ? ORDER BY pk", (prefix + "%",)
        ).fetchall()
    return [json.loads(body) for (body,) in rows]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


@pytest.mark.spec("WDL-3")
def test_two_staff_members_approve_at_the_console(data_dir: Path) -> None:
    withdrawal_id, _ = a_withdrawal_in_review(data_dir)
    keys = ConsoleKeys(data_dir)
    keys.enrol(*STAFF)

    code, output = run(data_dir, None, "funds", "review", "list", "--json")
    assert code == 0, output
    [row] = json.loads(output)
    assert row["id"] == withdrawal_id
    assert row["amount"] == "20000.00"

    code, output = run(data_dir, keys, "funds", "review", "approve", withdrawal_id, "--as", "sam")
    assert code != 0
    assert "funds:review" in output
    denied = events(data_dir, "access:permission:checked")
    assert any(e["data"].get("route") == "cli: funds review-approve" for e in denied)  # type: ignore[union-attr]

    code, output = run(data_dir, keys, "funds", "review", "approve", withdrawal_id, "--as", "cora")
    assert code == 0, output
    assert "approved once" in output
    code, output = run(data_dir, keys, "funds", "review", "approve", withdrawal_id, "--as", "cora")
    assert code != 0
    assert "four-eyes" in output
    code, output = run(data_dir, keys, "funds", "review", "approve", withdrawal_id, "--as", "dave")
    assert code == 0, output
    assert "sent to the bank" in output
    approvals = events(data_dir, "funds:withdrawal:approved")
    assert [e["data"]["approval"] for e in approvals] == ["first", "second"]  # type: ignore[index]

    code, output = run(data_dir, None, "funds", "process")
    assert code == 0, output
    assert re.search(r"booked \d+ deposits and \d+ withdrawals", output)


def test_without_a_named_staff_member_nothing_is_approved(data_dir: Path) -> None:
    withdrawal_id, _ = a_withdrawal_in_review(data_dir)
    code, output = run(data_dir, None, "funds", "review", "approve", withdrawal_id)
    assert code == 2
    assert "--as" in output
    code, output = run(data_dir, None, "funds", "review", "refuse", "not-an-id", "--reason", "no")
    assert code == 2
    assert "id" in output


def test_the_sandbox_statement_shows_the_micro_deposits(data_dir: Path) -> None:
    _, amounts = a_withdrawal_in_review(data_dir)
    with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        [(bank_id,)] = db.execute("SELECT id FROM funds_bank_accounts").fetchall()
    code, output = run(data_dir, None, "funds", "sandbox", "statement", bank_id)
    assert code == 0, output
    assert amounts in output
    code, output = run(
        data_dir, None, "funds", "sandbox", "statement", "0190c5a0-0000-7000-8000-000000000001"
    )
    assert code == 1
    assert "no bank account" in output
