"""`tradeguard takeover`: reviews and freezes at the console, the lift by two staff members
who each prove who they are with a console code (four-eyes), and clear errors."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.api import running_api
from tests.support.console import ConsoleKeys
from tests.support.kyc import british_applicant, kyc_record_on_file
from tests.support.takeover import GB, SE, answer, customer, prompt_token, sign_in_from
from tests.support.trading import Trader
from tradeguard.access.domain import Role
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock, SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.identity.password_hashing import Argon2Parameters

runner = CliRunner()
PASSWORD = "correct horse battery staple 42"
STAFF = {"ada": Role.COMPLIANCE, "bob": Role.COMPLIANCE, "sam": Role.SUPPORT}
UNKNOWN = "0190c5a0-0000-7000-8000-000000000000"
KEYS: dict[Path, ConsoleKeys] = {}
COMMANDS = [
    ["takeover"],
    ["takeover", "reviews", "list"],
    ["takeover", "reviews", "show"],
    ["takeover", "reviews", "close"],
    ["takeover", "freeze", "list"],
    ["takeover", "freeze", "lift-request"],
    ["takeover", "freeze", "approve"],
    ["takeover", "sweep"],
    ["takeover", "policy"],
]


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    """Run a command; one acting `--as` a staff member gives a fresh console code on
    standard input, issued to a session signed in with that member's passkey."""
    extra, given = [], None
    if "--as" in args:
        name = args[args.index("--as") + 1]
        keys = KEYS[data_dir]
        given = (keys.code(name) if name in keys.passkeys else "no-key-no-code") + "\n"
        extra = ["--code-stdin"]
    result = runner.invoke(app, [*args, *extra, "--data-dir", str(data_dir)], input=given)
    return result.exit_code, result.output


def events(data_dir: Path, prefix: str) -> list[dict[str, object]]:
    with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        rows = db.execute(
            "SELECT body FROM audit_event WHERE event_type LIKE ? ORDER BY pk", (prefix + "%",)
        ).fetchall()
    return [json.loads(body) for (body,) in rows]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with compliance staff (ada, bob), support (sam), and a customer who
    answered "no" to a sign-in from Sweden: a review and a withdrawal freeze."""
    return arranged_data_dir(tmp_path)


def arranged_data_dir(tmp_path: Path, *, kyc_record: bool = False) -> Path:
    """The data directory above; with `kyc_record`, the customer also has a real KYC record
    on file (an approved application and a verified passport, tests/support/kyc.py)."""
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0

    async def arrange() -> None:
        settings = Settings(  # type: ignore[call-arg]
            data_dir=directory, takeover_max_speed_kmh=20_000.0, _env_file=None
        )
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
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
            async with running_api(settings, engine, FrozenClock(time.time_ns())) as api:
                alice = await customer(api, ip=GB)
                if kyc_record:
                    owner = Trader(alice.username, alice.user_id, alice.access, alice.home)
                    await kyc_record_on_file(api, owner, british_applicant())
                api.clock.advance(seconds=600)
                await sign_in_from(api, alice, SE)
                said = await answer(api, await prompt_token(api, alice), "no")
                assert said.status_code == 200, said.text
        finally:
            await engine.dispose()

    asyncio.run(arrange())
    keys = ConsoleKeys(directory)
    keys.enrol(*STAFF)
    KEYS[directory] = keys
    return directory


class TestHelp:
    @pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
    def test_every_takeover_command_has_help(self, command: list[str]) -> None:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output


class TestTakeoverCommands:
    @pytest.mark.spec("ATO-2")
    def test_staff_close_the_review_and_two_of_them_lift_the_freeze(self, data_dir: Path) -> None:
        code, output = run(data_dir, "takeover", "reviews", "list", "--status", "open", "--json")
        assert code == 0, output
        [review] = json.loads(output)
        assert review["trigger"] == "owner_denied"
        code, output = run(data_dir, "takeover", "reviews", "show", review["id"])
        assert code == 0, output
        assert "owner_denied" in output
        assert "SE" in output
        code, output = run(data_dir, "takeover", "freeze", "list", "--json")
        [freeze] = json.loads(output)

        note = ["--outcome", "false_alarm", "--note", "owner confirmed by phone"]
        code, output = run(data_dir, "takeover", "reviews", "close", review["id"], *note)
        assert code == 2, output  # who closes it must be named
        code, output = run(
            data_dir, "takeover", "reviews", "close", review["id"], *note, "--as", "sam"
        )
        assert code == 1, output  # support lacks fraud:review
        assert "fraud:review" in output
        code, output = run(
            data_dir, "takeover", "reviews", "close", review["id"], *note, "--as", "ada"
        )
        assert code == 0, output
        assert "closed: false_alarm" in output

        lift = ["takeover", "freeze", "lift-request", freeze["id"], "--reason", "false alarm"]
        code, output = run(data_dir, *lift, "--as", "ada")
        assert code == 0, output
        code, output = run(data_dir, "takeover", "freeze", "approve", freeze["id"], "--as", "ada")
        assert code == 1, output
        assert "cannot also approve" in output
        code, output = run(data_dir, "takeover", "freeze", "approve", freeze["id"], "--as", "bob")
        assert code == 0, output
        code, output = run(data_dir, "takeover", "freeze", "list", "--json")
        assert json.loads(output) == []
        [lifted] = events(data_dir, "fraud:freeze:lifted")
        assert lifted["actor"]["kind"] == "staff"  # type: ignore[index]

    def test_bad_input_exits_2_unknown_ids_exit_1_and_nothing_changes(self, data_dir: Path) -> None:
        before = events(data_dir, "fraud:")
        code, output = run(data_dir, "takeover", "reviews", "show", "not-an-id")
        assert code == 2, output
        code, output = run(data_dir, "takeover", "reviews", "show", UNKNOWN)
        assert code == 1, output
        assert "no such review" in output
        code, output = run(data_dir, "takeover", "reviews", "list", "--status", "maybe")
        assert code == 2, output
        code, output = run(data_dir, "takeover", "freeze", "approve", UNKNOWN, "--as", "nobody")
        assert code == 1, output
        assert "cannot act as" in output
        assert events(data_dir, "fraud:") == before

    def test_the_policy_table_and_a_sweep(self, data_dir: Path) -> None:
        code, output = run(data_dir, "takeover", "policy", "--json")
        assert code == 0, output
        table = json.loads(output)
        assert table["weights"]["impossible_travel"] == 70
        assert table["thresholds"]["lock"] == 120
        code, output = run(data_dir, "takeover", "sweep")
        assert code == 0, output
        assert "flagged: 0" in output
