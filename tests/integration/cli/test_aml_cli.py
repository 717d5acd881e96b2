"""`tradeguard aml`: the monitor's run, the rules, alerts and CTRs read and a case opened
and decided by staff proved with console codes; a staff member without the permission is
refused (and the denial recorded), against a real data directory."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.api import running_api
from tests.support.console import ConsoleKeys
from tests.support.funds import add_bank, customer
from tests.support.trading import funded_account
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
STAFF = {"cora": Role.COMPLIANCE, "sam": Role.SUPPORT}
COMMANDS = [
    ["aml"],
    ["aml", "run"],
    ["aml", "rules", "show"],
    ["aml", "alerts", "list"],
    ["aml", "alerts", "show"],
    ["aml", "ctr", "list"],
    ["aml", "ctr", "export"],
    ["aml", "cases", "list"],
    ["aml", "cases", "open"],
    ["aml", "cases", "assign"],
    ["aml", "cases", "note"],
    ["aml", "cases", "decide"],
    ["aml", "sar", "export"],
    ["aml", "purge"],
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


def deposits_split_across_accounts(data_dir: Path) -> None:
    """A customer deposits 6,000 into each of two accounts today: a CTR and a split."""

    async def go() -> None:
        engine = create_engine(settings_of(data_dir).main_database_url)
        try:
            clock = FrozenClock(time.time_ns())
            async with (
                running_api(settings_of(data_dir), engine, clock) as api,
                api.client() as client,
            ):
                jane = await customer(api, client, "jane", phone="+14155550123", cash="0")
                await add_bank(api, jane)
                second = await funded_account(api, jane.trader, "0")
                for n, account in enumerate((jane.account_id, second)):
                    made = await jane.post(
                        "/api/v1/funds/deposits",
                        {
                            "account_id": account,
                            "bank_account_id": jane.bank_account_id,
                            "rail": "ach",
                            "amount": "6000.00",
                            "idempotency_key": f"cli-{n}",
                        },
                    )
                    assert made.status_code == 201, made.text
        finally:
            await engine.dispose()

    asyncio.run(go())


def run(data_dir: Path, keys: ConsoleKeys | None, *args: str) -> tuple[int, str]:
    extra, given = [], None
    if "--as" in args and keys is not None:
        name = args[args.index("--as") + 1]
        extra, given = ["--code-stdin"], keys.code(name) + "\n"
    result = runner.invoke(app, [*args, *extra, "--data-dir", str(data_dir)], input=given)
    return result.exit_code, result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_staff_read_alerts_and_ctrs_and_work_a_case_at_the_console(data_dir: Path) -> None:
    deposits_split_across_accounts(data_dir)
    code, output = run(data_dir, None, "aml", "rules", "show", "--json")
    assert code == 0, output
    assert {r["rule"] for r in json.loads(output)} >= {"ctr", "structuring", "dormant_waking"}
    code, output = run(data_dir, None, "aml", "run")
    assert code == 0, output
    assert "1 new CTRs" in output

    keys = ConsoleKeys(data_dir)
    keys.enrol(*STAFF)
    code, output = run(data_dir, keys, "aml", "alerts", "list", "--json", "--as", "sam")
    assert code != 0
    assert "aml:alerts" in output
    code, output = run(data_dir, keys, "aml", "alerts", "list", "--json", "--as", "cora")
    assert code == 0, output
    (alert,) = json.loads(output)
    assert alert["rule"] == "structuring_accounts"
    assert alert["facts"]["total"] == "12000.00"
    code, output = run(data_dir, keys, "aml", "ctr", "list", "--json", "--as", "cora")
    assert code == 0, output
    assert [c["total"] for c in json.loads(output)] == ["12000.00"]

    code, output = run(data_dir, keys, "aml", "cases", "open", alert["id"], "--as", "cora")
    assert code == 0, output
    assert "SAR due" in output
    code, output = run(data_dir, keys, "aml", "cases", "list", "--json", "--as", "cora")
    (case,) = json.loads(output)
    code, output = run(
        data_dir,
        keys,
        "aml",
        "cases",
        "decide",
        case["id"],
        "--decision",
        "sar",
        "--reason",
        "split deposits",
        "--as",
        "cora",
    )
    assert code == 0, output
    assert "sar_required" in output
    code, output = run(
        data_dir, keys, "aml", "sar", "export", case["id"], "--final", "--as", "cora"
    )
    assert code != 0  # no filer settings, no KYC record: named and refused
    code, output = run(data_dir, keys, "aml", "sar", "export", case["id"], "--as", "cora")
    assert code == 0, output
    assert "draft" in output
    assert "subject.tin" in output


def test_without_a_named_staff_member_nothing_is_read(data_dir: Path) -> None:
    code, output = run(data_dir, None, "aml", "alerts", "list")
    assert code == 2
    assert "--as" in output
    code, output = run(data_dir, None, "aml", "cases", "note", "not-an-id", "--text", "x")
    assert code == 2
