"""`tradeguard users` administration from the command line, against a real data directory:
each command acts as the operating-system user who ran it (its uid, whatever $USER says), a
factor reset needs two different admins who each prove who they are with a console code from
their security-key session, and
bad input fails in one line with exit 2."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.support.console import ConsoleKeys
from tradeguard.access.domain import Role, permissions_for
from tradeguard.backoffice.common import Actor
from tradeguard.backoffice.container import build_backoffice
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.identity.password_hashing import Argon2Parameters
from tradeguard.trading.container import build_trading

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


PASSWORD = "correct horse battery staple 42"
# The operator a command acts as: the operating-system user of this process.
OPERATOR = pwd.getpwuid(os.geteuid()).pw_name


AUTO = "<a fresh console code>"
KEYS: dict[Path, ConsoleKeys] = {}


def run(
    data_dir: Path, *args: str, secret: str | None = AUTO, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run a command; one acting `--as` an admin gives a console code on standard input: by
    default a fresh one, issued over the API to their passkey session."""
    extra, given = [], None
    if "--as" in args and secret is not None:
        if secret == AUTO:
            name = args[args.index("--as") + 1]
            keys = KEYS.get(data_dir)
            secret = keys.code(name) if keys and name in keys.passkeys else "no-key-no-code"
        extra, given = ["--code-stdin"], secret + "\n"
    result = runner.invoke(app, [*args, *extra, "--data-dir", str(data_dir)], input=given, env=env)
    return result.exit_code, result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0

    async def users() -> None:
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
            for name, role in (
                ("tina", Role.TRADER),
                ("ada", Role.ADMIN),
                ("bob", Role.ADMIN),
                ("cleo", Role.ADMIN),
            ):
                await identity.accounts.create_user(
                    session,
                    username=name,
                    email=f"{name}@example.com",
                    password=PASSWORD,
                    role=role,
                    email_verified=True,
                )
        await engine.dispose()

    asyncio.run(users())
    keys = ConsoleKeys(directory)
    keys.enrol("ada", "bob", "cleo")
    KEYS[directory] = keys
    # ada and bob administer users at their standing (default) level; cleo is read-only.
    code, out = run(directory, "access", "level", "cleo", "read-only", "--reason", "on leave")
    assert code == 0, out
    return directory


def query(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        return list(db.execute(sql))


def user_id(data_dir: Path, username: str) -> str:
    with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        [(found,)] = db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchall()
    return str(found)


def audit(data_dir: Path, event_type: str) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        rows = db.execute(
            "SELECT body FROM audit_event WHERE event_type = ? ORDER BY pk", (event_type,)
        ).fetchall()
    return [json.loads(body) for (body,) in rows]


def pending_reset(data_dir: Path, requester: str, customer: str) -> str:
    """A factor reset of `customer` asked for by the admin `requester` through the service,
    as over the API."""

    async def make() -> str:
        settings = Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        clock = SystemClock()
        ids = IdGenerator(clock)
        sessions = session_factory(engine)
        try:
            identity = await start_identity(settings, clock=clock, ids=ids, sessions=sessions)
            trading = build_trading(
                settings, clock=clock, ids=ids, sessions=sessions, with_venue=False
            )
            services = build_backoffice(identity, trading.accounts)
            actor = Actor.staff(
                user_id=user_id(data_dir, requester),
                role=Role.ADMIN,
                permissions=frozenset(permissions_for(Role.ADMIN)),
            )
            async with services.unit_of_work() as session:
                view = await services.users.request_factor_reset(
                    session, user_id=user_id(data_dir, customer), reason=REASON, actor=actor
                )
        finally:
            await engine.dispose()
        return view.id

    return asyncio.run(make())


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
        # Nor does staff ever become a customer (H2): the operator locks to off-board.
        code, out = run(data_dir, "users", "set-role", "bob", "trader", "--reason", REASON)
        assert code == 1, out
        assert "cannot become a customer account" in out
        assert query(data_dir, "SELECT role FROM users WHERE username = 'bob'") == [("ADMIN",)]
        assert audit(data_dir, "identity:user:role_changed") == []
        code, out = run(data_dir, "users", "sign-out", "tina", "--reason", REASON)
        assert code == 0, out
        rows = query(
            data_dir,
            "SELECT actor, actor_role, action FROM backoffice_access_log ORDER BY created_ns",
        )
        assert rows == [
            (f"operator:{OPERATOR}", "OPERATOR", "account_locked"),
            (f"operator:{OPERATOR}", "OPERATOR", "account_unlocked"),
            (f"operator:{OPERATOR}", "OPERATOR", "signed_out"),
        ]

    @pytest.mark.spec("RBAC-1", "ACCT-1")
    def test_a_factor_reset_needs_two_different_verified_admins(self, data_dir: Path) -> None:
        code, out = run(
            data_dir, "users", "reset-factors", "tina", "--reason", REASON, "--as", "ada"
        )
        assert code == 0, out
        request_id = out.split()[1].rstrip(":")
        code, out = run(data_dir, "users", "resets")
        assert request_id in out
        assert "pending" in out
        code, out = run(data_dir, "users", "approve-reset", request_id, "--as", "ada")
        assert code == 1
        assert "different admin must approve" in out
        code, out = run(data_dir, "users", "approve-reset", request_id, "--as", "bob")
        assert code == 0, out
        assert f"approved {request_id}" in out
        code, out = run(data_dir, "users", "approve-reset", request_id, "--as", "bob")
        assert code == 1
        assert "already decided" in out
        decided = query(
            data_dir, "SELECT requested_by, decided_by, status FROM backoffice_factor_resets"
        )
        ada, bob = user_id(data_dir, "ada"), user_id(data_dir, "bob")
        assert decided == [(f"staff:{ada}", f"staff:{bob}", "approved")]
        logged = query(
            data_dir,
            "SELECT actor, actor_role, action FROM backoffice_access_log ORDER BY created_ns",
        )
        assert logged == [
            (f"staff:{ada}", "ADMIN", "factor_reset_requested"),
            (f"staff:{bob}", "ADMIN", "factors_reset"),
        ]
        [approved] = audit(data_dir, "backoffice:factor_reset:approved")
        assert approved["actor"] == {"kind": "staff", "id": bob}
        assert {k: approved["data"][k] for k in ("via", "operator", "staff_verified_by")} == {
            "via": "cli",
            "operator": OPERATOR,
            "staff_verified_by": "hardware_key_session",
        }

    @pytest.mark.spec("RBAC-1", "ACCT-1")
    def test_one_person_cannot_be_both_eyes_by_changing_user(self, data_dir: Path) -> None:
        """The attack: ask for the reset, then approve it "as someone else" with `USER=...`."""
        request_id = pending_reset(data_dir, "ada", "tina")
        pavel = {"USER": "pavel", "LOGNAME": "pavel", "LNAME": "pavel"}

        as_operator = run(data_dir, "users", "approve-reset", request_id, env=pavel)
        as_bob_unproved = run(
            data_dir, "users", "approve-reset", request_id, "--as", "bob", secret=None, env=pavel
        )
        as_bob_guessed = run(
            data_dir, "users", "approve-reset", request_id, "--as", "bob", secret=PASSWORD
        )
        without_authority = run(data_dir, "users", "approve-reset", request_id, "--as", "cleo")

        assert as_operator[0] == 2  # --as is required: no four-eyes decision by an OS account
        assert "--as" in as_operator[1]
        assert as_bob_unproved[0] != 0
        assert as_bob_guessed[0] == 1
        assert "cannot act as 'bob'" in as_bob_guessed[1]
        assert without_authority[0] == 1
        assert "admin:users" in without_authority[1]
        assert query(data_dir, "SELECT status FROM backoffice_factor_resets") == [("pending",)]
        assert audit(data_dir, "backoffice:factor_reset:approved") == []

    def test_asking_for_a_reset_needs_a_verified_admin_too(self, data_dir: Path) -> None:
        without_as = run(data_dir, "users", "reset-factors", "tina", "--reason", REASON)
        guessed = run(
            data_dir, "users", "reset-factors", "tina", "--reason", REASON, "--as", "ada",
            secret=PASSWORD,
        )  # fmt: skip

        assert without_as[0] == 2
        assert guessed[0] == 1
        assert query(data_dir, "SELECT count(*) FROM backoffice_factor_resets") == [(0,)]

    @pytest.mark.parametrize(
        "args",
        [
            ["users", "lock", "tina", "--reason", "short"],
            ["users", "lock", "tina", "--reason", "<b></b><i></i><u></u>"],
            ["users", "set-role", "tina", "root", "--reason", REASON],
            ["users", "list", "--query", "t"],
            ["users", "approve-reset", "not-a-request", "--note", "tiny", "--as", "bob"],
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
        code, out = run(
            data_dir,
            "users",
            "approve-reset",
            "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b",
            "--as",
            "bob",
        )
        assert code == 1
        assert "no factor-reset request" in out


class TestConsoleDenials:
    @pytest.mark.spec("IAC-4")
    def test_a_read_only_admin_asking_for_a_reset_leaves_a_denied_check(
        self, data_dir: Path
    ) -> None:
        """M3a: refused at the console for lack of admin:users, as over the API: a denied
        `access:permission:checked` event, committed although the command fails."""
        refused = run(
            data_dir, "users", "reset-factors", "tina", "--reason", REASON, "--as", "cleo"
        )

        assert refused[0] == 1
        assert "admin:users" in refused[1]
        denied = [
            e for e in audit(data_dir, "access:permission:checked") if e["data"].get("via") == "cli"
        ]
        assert [(e["actor"], e["data"]["permission"], e["data"]["allowed"]) for e in denied] == [
            ({"kind": "user", "id": user_id(data_dir, "cleo")}, "admin:users", False)
        ]
        assert denied[0]["data"]["route"] == "cli: users reset-factors"
        assert query(data_dir, "SELECT count(*) FROM backoffice_factor_resets") == [(0,)]
