"""`tradeguard users` administration from the command line, against a real data directory:
each command acts as the operating-system user who ran it, a factor reset needs a second
operator, and bad input fails in one line with exit 2."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradeguard.access.domain import Role
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import build_identity
from tradeguard.identity.password_hashing import Argon2Parameters

runner = CliRunner()
REASON = "Customer asked by phone; identity checked with two questions"

ADMIN_COMMANDS = [
    ["users", "list"],
    ["users", "lock"],
    ["users", "unlock"],
    ["users", "set-role"],
    ["users", "sign-out"],
    ["users", "reset-factors"],
    ["users", "resets"],
    ["users", "approve-reset"],
    ["users", "refuse-reset"],
]


def run(data_dir: Path, *args: str, as_user: str = "olga") -> tuple[int, str]:
    # getpass.getuser() reads LOGNAME first: the operator the command acts as.
    result = runner.invoke(
        app, [*args, "--data-dir", str(data_dir)], env={"LOGNAME": as_user, "USER": as_user}
    )
    return result.exit_code, result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0

    async def users() -> None:
        settings = Settings(data_dir=directory, _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        clock = SystemClock()
        identity = build_identity(
            settings,
            clock=clock,
            ids=IdGenerator(clock),
            sessions=session_factory(engine),
            argon2=Argon2Parameters(time_cost=1, memory_cost_kib=1024, parallelism=1),
        )
        async with unit_of_work(identity.sessions) as session:
            for name, role in (("tina", Role.TRADER), ("ada", Role.ADMIN)):
                await identity.accounts.create_user(
                    session,
                    username=name,
                    email=f"{name}@example.com",
                    password="correct horse battery staple 42",
                    role=role,
                    email_verified=True,
                )
        await engine.dispose()

    asyncio.run(users())
    return directory


def query(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(data_dir / "tradeguard.db") as db:
        return list(db.execute(sql))


class TestHelp:
    @pytest.mark.parametrize("command", ADMIN_COMMANDS, ids=" ".join)
    def test_every_admin_command_has_help(self, command: list[str]) -> None:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output


class TestAdministration:
    @pytest.mark.spec("RBAC-1")
    def test_an_operator_locks_unlocks_changes_role_and_signs_out(self, data_dir: Path) -> None:
        code, out = run(data_dir, "users", "lock", "tina", "--reason", REASON)
        assert code == 0, out
        assert "locked tina" in out
        code, out = run(data_dir, "users", "list", "--locked", "--json")
        assert [u["username"] for u in json.loads(out)] == ["tina"]
        assert json.loads(out)[0]["email"] == "t***@e***.com"
        code, out = run(data_dir, "users", "lock", "tina@example.com", "--reason", REASON)
        assert code == 1
        assert "already locked" in out
        code, out = run(data_dir, "users", "unlock", "tina", "--reason", REASON)
        assert code == 0, out
        assert "staff_lock" in out
        # A customer never becomes staff (IAC-3): staff begin with an enrolment token.
        code, out = run(data_dir, "users", "set-role", "tina", "support", "--reason", REASON)
        assert code == 1, out
        assert "invite-staff" in out
        code, out = run(data_dir, "users", "sign-out", "tina", "--reason", REASON)
        assert code == 0, out
        rows = query(
            data_dir,
            "SELECT actor, actor_role, action FROM backoffice_access_log ORDER BY created_ns",
        )
        assert rows == [
            ("operator:olga", "OPERATOR", "account_locked"),
            ("operator:olga", "OPERATOR", "account_unlocked"),
            ("operator:olga", "OPERATOR", "signed_out"),
        ]

    @pytest.mark.spec("RBAC-1", "ACCT-1")
    def test_a_factor_reset_needs_a_second_operator(self, data_dir: Path) -> None:
        code, out = run(data_dir, "users", "reset-factors", "tina", "--reason", REASON)
        assert code == 0, out
        request_id = out.split()[1].rstrip(":")
        code, out = run(data_dir, "users", "resets")
        assert request_id in out
        assert "pending" in out
        code, out = run(data_dir, "users", "approve-reset", request_id)
        assert code == 1
        assert "different admin must approve" in out
        code, out = run(data_dir, "users", "approve-reset", request_id, as_user="pavel")
        assert code == 0, out
        assert f"approved {request_id}" in out
        code, out = run(data_dir, "users", "approve-reset", request_id, as_user="quinn")
        assert code == 1
        assert "already decided" in out
        decided = query(
            data_dir, "SELECT requested_by, decided_by, status FROM backoffice_factor_resets"
        )
        assert decided == [("operator:olga", "operator:pavel", "approved")]

    @pytest.mark.parametrize(
        "args",
        [
            ["users", "lock", "tina", "--reason", "short"],
            ["users", "lock", "tina", "--reason", "<b></b><i></i><u></u>"],
            ["users", "set-role", "tina", "root", "--reason", REASON],
            ["users", "list", "--query", "t"],
            ["users", "approve-reset", "not-a-request", "--note", "tiny"],
        ],
        ids=["short-reason", "markup-reason", "unknown-role", "short-query", "short-note"],
    )
    def test_refused_input_exits_2_and_changes_nothing(
        self, data_dir: Path, args: list[str]
    ) -> None:
        code, out = run(data_dir, *args)
        assert code == 2, out
        assert query(data_dir, "SELECT count(*) FROM backoffice_access_log") == [(0,)]
        assert query(data_dir, "SELECT status FROM users WHERE username = 'tina'") == [("active",)]

    def test_an_unknown_user_or_request_fails_in_one_line(self, data_dir: Path) -> None:
        code, out = run(data_dir, "users", "lock", "nobody", "--reason", REASON)
        assert code == 1
        assert out.startswith("error: no such user")
        code, out = run(data_dir, "users", "approve-reset", "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b")
        assert code == 1
        assert "no factor-reset request" in out
