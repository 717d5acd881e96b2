"""`tradeguard kyc`: the application queue read masked, decisions and rating overrides by
staff named with --as and proved with console codes, reviews due; refusals exit non-zero in
one line (KYC-1, KYC-2)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.console import ConsoleKeys
from tests.support.kyc_applications import high_risk
from tradeguard.access.domain import Role
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.identity.password_hashing import Argon2Parameters
from tradeguard.kyc.onboarding.container import build_onboarding
from tradeguard.ledger.domain import Party
from tradeguard.trading.container import build_trading

runner = CliRunner()
PASSWORD = "correct horse battery staple 42"
STAFF = {"cora": Role.COMPLIANCE, "rex": Role.COMPLIANCE, "sam": Role.SUPPORT}
COMMANDS = [
    ["kyc"],
    ["kyc", "applications"],
    ["kyc", "applications", "list"],
    ["kyc", "applications", "show"],
    ["kyc", "applications", "approve"],
    ["kyc", "applications", "refuse"],
    ["kyc", "applications", "request-info"],
    ["kyc", "rating"],
    ["kyc", "rating", "show"],
    ["kyc", "rating", "set"],
    ["kyc", "reviews"],
    ["kyc", "reviews", "due"],
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with two staff members and a customer's submitted application."""
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0

    async def people() -> None:
        settings = Settings(data_dir=directory, _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        clock = FrozenClock(time.time_ns())
        ids = IdGenerator(clock)
        sessions = session_factory(engine)
        identity = await start_identity(
            settings,
            clock=clock,
            ids=ids,
            sessions=sessions,
            argon2=Argon2Parameters(time_cost=1, memory_cost_kib=1024, parallelism=1),
        )
        trading = build_trading(settings, clock=clock, ids=ids, sessions=sessions, with_venue=False)
        onboarding = build_onboarding(
            settings, identity=identity, accounts=trading.accounts, sessions=sessions
        )
        async with unit_of_work(identity.sessions) as session:
            for name, role in {**STAFF, "alice": Role.TRADER}.items():
                user = await identity.accounts.create_user(
                    session,
                    username=name,
                    email=f"{name}@example.com",
                    password=PASSWORD,
                    role=role,
                    email_verified=True,
                )
            who = Party("user", user.id)
            await onboarding.applications.save(
                session, user_id=user.id, sections=high_risk(), actor=who
            )
            await onboarding.applications.submit(session, user_id=user.id, actor=who)
        await engine.dispose()

    asyncio.run(people())
    return directory


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


@pytest.mark.spec("KYC-2")
def test_staff_work_the_queue_at_the_console(data_dir: Path) -> None:
    keys = ConsoleKeys(data_dir)
    keys.enrol(*STAFF)

    code, output = run(data_dir, None, "kyc", "applications", "list", "--json")
    assert code == 0, output
    [row] = json.loads(output)
    assert row["status"] == "submitted"
    assert row["rating"] == "high"
    application_id = row["id"]

    code, output = run(data_dir, None, "kyc", "applications", "show", application_id)
    assert code == 0, output
    assert "A***" in output
    assert "Alice" not in output
    assert "6780" in output
    assert "123-45-6780" not in output
    assert "EDD_MISSING" in output

    code, output = run(data_dir, None, "kyc", "rating", "show", application_id, "--json")
    assert code == 0, output
    assert "SELF_DECLARED_PEP" in {f["code"] for f in json.loads(output)["factors"]}

    # The console builds the real screening and documents (kyc/container.py): with no
    # identity document or proof of address on file, approval is blocked, clearly.
    code, output = run(
        data_dir, keys, "kyc", "applications", "approve", application_id, "--as", "cora"
    )
    assert code == 1
    assert "IDENTITY_NOT_VERIFIED" in output
    assert "ADDRESS_NOT_VERIFIED" in output
    assert "SCREENING_UNAVAILABLE" not in output
    assert "EVIDENCE_UNAVAILABLE" not in output

    code, output = run(
        data_dir,
        keys,
        "kyc",
        "rating",
        "set",
        application_id,
        "--rating",
        "medium",
        "--reason",
        "PEP role ended in 2010",
        "--as",
        "sam",
    )
    assert code != 0
    assert "kyc:review" in output
    code, output = run(
        data_dir,
        keys,
        "kyc",
        "rating",
        "set",
        application_id,
        "--rating",
        "medium",
        "--reason",
        "PEP role ended in 2010",
        "--as",
        "cora",
    )
    assert code == 0, output
    # Lowering a rating is four-eyes: proposed by one, applied by a second staff member.
    assert "still rated high: medium proposed" in output
    assert not events(data_dir, "kyc:rating:overridden")
    code, output = run(
        data_dir,
        keys,
        "kyc",
        "rating",
        "set",
        application_id,
        "--rating",
        "medium",
        "--reason",
        "PEP role ended in 2010",
        "--as",
        "rex",
    )
    assert code == 0, output
    assert "rated medium" in output
    assert events(data_dir, "kyc:rating:overridden")

    code, output = run(
        data_dir,
        keys,
        "kyc",
        "applications",
        "request-info",
        application_id,
        "--message",
        "Please add your apartment number.",
        "--as",
        "cora",
    )
    assert code == 0, output
    code, output = run(
        data_dir, None, "kyc", "applications", "list", "--status", "info_requested", "--json"
    )
    assert code == 0, output
    assert [row["id"] for row in json.loads(output)] == [application_id]

    code, output = run(data_dir, None, "kyc", "reviews", "due", "--on", "2099-01-01", "--json")
    assert code == 0, output
    assert json.loads(output) == []


def test_bad_input_exits_non_zero_in_one_line(data_dir: Path) -> None:
    code, output = run(data_dir, None, "kyc", "applications", "approve", "not-an-id")
    assert code == 2
    code, output = run(
        data_dir, None, "kyc", "applications", "approve", "0190c5a0-0000-7000-8000-000000000001"
    )
    assert code == 2
    assert "--as" in output
    code, output = run(data_dir, None, "kyc", "applications", "list", "--status", "lost")
    assert code == 2
    code, output = run(data_dir, None, "kyc", "reviews", "due", "--on", "tomorrow")
    assert code == 2
    code, output = run(
        data_dir, None, "kyc", "applications", "show", "0190c5a0-0000-7000-8000-000000000001"
    )
    assert code == 1
    assert "no such application" in output
