"""`tradeguard access`: the catalogue, grants, break-glass, levels and the review from the
command line, against a real data directory; the service holds the CLI to the API's rules
(RBAC-5) and refusals exit non-zero in one line."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import pwd
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.cases import Cases
from tests.support.console import ConsoleKeys
from tradeguard.access.common import Actor
from tradeguard.access.container import build_access
from tradeguard.access.domain import CATALOGUE, Role
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.identity.password_hashing import Argon2Parameters

runner = CliRunner()

ACCESS_COMMANDS = [
    ["access"],
    ["access", "catalogue"],
    ["access", "request"],
    ["access", "approve"],
    ["access", "refuse"],
    ["access", "withdraw"],
    ["access", "revoke"],
    ["access", "list"],
    ["access", "expire"],
    ["access", "level"],
    ["access", "review"],
    ["access", "break-glass"],
    ["access", "break-glass", "take"],
    ["access", "break-glass", "list"],
    ["access", "break-glass", "close"],
]
STAFF = {"ada": Role.ADMIN, "bob": Role.ADMIN, "cora": Role.COMPLIANCE, "sam": Role.SUPPORT}


PASSWORD = "correct horse battery staple 42"


AUTO = "<a fresh console code>"
KEYS: dict[Path, ConsoleKeys] = {}


def run(
    data_dir: Path, *args: str, secret: str | None = AUTO, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run a command; one acting `--as` a staff member gives a console code on standard input
    (`--code-stdin`), as a script would: by default a fresh one, issued over the API to a
    session signed in with that member's attested passkey."""
    extra, given = [], None
    if "--as" in args and secret is not None:
        if secret == AUTO:
            name = args[args.index("--as") + 1]
            keys = KEYS.get(data_dir)
            secret = keys.code(name) if keys and name in keys.passkeys else "no-key-no-code"
        extra, given = ["--code-stdin"], secret + "\n"
    result = runner.invoke(app, [*args, *extra, "--data-dir", str(data_dir)], input=given, env=env)
    return result.exit_code, result.output


def events(data_dir: Path, prefix: str) -> list[dict[str, object]]:
    with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        rows = db.execute(
            "SELECT body FROM audit_event WHERE event_type LIKE ? ORDER BY pk", (prefix + "%",)
        ).fetchall()
    return [json.loads(body) for (body,) in rows]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0

    async def people() -> None:
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
            for name, role in {**STAFF, "tina": Role.TRADER}.items():
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
    keys = ConsoleKeys(directory)
    keys.enrol(*STAFF)
    KEYS[directory] = keys
    code, output = run(
        directory, "access", "level", "ada", "operator", "--reason", "least privilege"
    )
    assert code == 0, output
    return directory


def user_id(data_dir: Path, username: str) -> str:
    with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        [(found,)] = db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchall()
    return str(found)


def request_id_from(output: str) -> str:
    return output.split()[2].rstrip(":")


class TestHelp:
    @pytest.mark.parametrize("command", ACCESS_COMMANDS, ids=" ".join)
    def test_every_command_has_help(self, command: list[str]) -> None:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output


class TestCatalogue:
    @pytest.mark.spec("IAC-2")
    def test_the_catalogue_prints_as_a_table_and_as_json(self) -> None:
        table = runner.invoke(app, ["access", "catalogue"])
        assert table.exit_code == 0
        assert "admin:users" in table.output
        assert "read-only" in table.output
        document = json.loads(runner.invoke(app, ["access", "catalogue", "--json"]).output)
        assert [p["permission"] for p in document["permissions"]] == [p.value for p in CATALOGUE]
        assert [lv["level"] for lv in document["levels"]] == [
            "read-only",
            "operator",
            "engineer",
            "admin",
        ]


BAD_REQUESTS: list[tuple[list[str], int, str]] = [
    (["admin:everything", "--minutes", "5"], 2, "unknown permission"),
    (["admin:config", "--minutes", "0"], 2, "above zero"),
    (["admin:config", "--minutes", "-3"], 2, "above zero"),
    (["admin:config", "--minutes", "121"], 2, "at most 120 minutes"),
    (["superuser"], 2, "unknown permission"),
    (["compliance:audit"], 1, "outside the ADMIN role"),
    (["account:view"], 1, "already hold"),
]


class TestGrantsFromTheCommandLine:
    @pytest.mark.spec("IAC-1")
    def test_request_approve_list_and_revoke_are_audited_as_the_named_staff_member(
        self, data_dir: Path
    ) -> None:
        code, output = run(
            data_dir, "access", "request", "admin:config", "--as", "ada",
            "--reason", "INC-1: restricted list", "--minutes", "20",
        )  # fmt: skip
        assert code == 0, output
        grant_id = request_id_from(output)
        code, output = run(
            data_dir, "access", "approve", grant_id, "--as", "bob", "--note", "looks right"
        )
        assert code == 0, output
        assert "approved request" in output
        code, output = run(data_dir, "access", "list", "--mine", "--as", "ada", "--json")
        [mine] = json.loads(output)
        assert (mine["status"], mine["decided_by_username"], mine["minutes"]) == (
            "approved",
            "bob",
            20,
        )
        code, output = run(data_dir, "access", "revoke", grant_id, "--reason", "incident over")
        assert code == 0, output
        code, output = run(data_dir, "access", "list", "--status", "revoked", "--json")
        assert [g["id"] for g in json.loads(output)] == [grant_id]
        kinds = [
            (e["type"], e["actor"]["kind"], e["data"]["via"])
            for e in events(data_dir, "access:grant:")
        ]
        assert kinds == [
            ("access:grant:requested", "staff", "cli"),
            ("access:grant:approved", "staff", "cli"),
            ("access:grant:revoked", "operator", "cli"),
        ]

    @pytest.mark.spec("IAC-1", "RBAC-5")
    def test_self_approval_support_and_traders_are_refused_by_the_service(
        self, data_dir: Path
    ) -> None:
        code, output = run(
            data_dir, "access", "request", "admin:users", "--as", "ada", "--reason", "user admin"
        )
        grant_id = request_id_from(output)
        refusals = {
            "ada": "your own request",  # the requester
            "sam": "access:approve",  # support has no such permission at any level
            "cora": "access:approve",  # neither has compliance
        }
        for who, message in refusals.items():
            code, output = run(data_dir, "access", "approve", grant_id, "--as", who)
            assert code == 1, (who, output)
            assert message in output
        code, output = run(data_dir, "access", "approve", grant_id, "--as", "tina")
        assert code == 1
        assert "cannot act as 'tina'" in output
        code, output = run(data_dir, "access", "list", "--pending", "--as", "bob", "--json")
        assert [(g["id"], g["status"]) for g in json.loads(output)] == [(grant_id, "pending")]
        denied = events(data_dir, "access:approval:denied")
        assert [e["data"]["why"] for e in denied] == [
            "self_approval",
            "no_authority",
            "no_authority",
        ]

    def test_bad_requests_exit_non_zero_and_change_nothing(self, data_dir: Path) -> None:
        cases = Cases()
        for args, code, message in BAD_REQUESTS:
            got, output = run(
                data_dir, "access", "request", *args, "--as", "ada", "--reason", "testing"
            )
            grants = events(data_dir, "access:grant:")
            with cases.case(" ".join(args)):
                assert got == code, output
                assert message in output
                assert grants == []
        cases.check()

    @pytest.mark.spec("IAC-1")
    def test_a_request_can_name_its_customers_and_a_staff_id_is_refused(
        self, data_dir: Path
    ) -> None:
        tina, bob = user_id(data_dir, "tina"), user_id(data_dir, "bob")
        code, output = run(
            data_dir, "access", "request", "admin:config", "--as", "ada",
            "--reason", "INC-2", "--customer", bob,
        )  # fmt: skip
        assert code == 2, output
        assert "existing customer" in output
        assert events(data_dir, "access:grant:") == []
        code, output = run(
            data_dir, "access", "request", "admin:config", "--as", "ada",
            "--reason", "INC-2", "--customer", tina, "--customer", tina,
        )  # fmt: skip
        assert code == 0, output
        assert f"only for customers {tina}" in output
        code, output = run(data_dir, "access", "list", "--mine", "--as", "ada", "--json")
        assert [g["customers"] for g in json.loads(output)] == [[tina]]
        [requested] = events(data_dir, "access:grant:requested")
        assert requested["data"]["customers"] == [tina]  # type: ignore[index]

    def test_an_empty_reason_and_a_missing_actor_are_usage_errors(self, data_dir: Path) -> None:
        code, output = run(
            data_dir, "access", "request", "admin:config", "--as", "ada", "--reason", " "
        )
        assert code == 2
        assert "reason" in output
        code, output = run(data_dir, "access", "request", "admin:config", "--reason", "no actor")
        assert code == 2
        assert "--as" in output
        code, output = run(data_dir, "access", "review", "--format", "xml")
        assert code == 2
        code, output = run(data_dir, "access", "review", "--code-stdin")
        assert code == 2
        assert "named with --as" in output


class TestBreakGlassAndReview:
    @pytest.mark.spec("IAC-1", "IAC-4")
    def test_break_glass_opens_a_review_item_someone_else_closes(self, data_dir: Path) -> None:
        code, output = run(
            data_dir, "access", "break-glass", "take", "admin", "--as", "ada",
            "--reason", "halt stuck", "--minutes", "15",
        )  # fmt: skip
        assert code == 0, output
        review_id = output.split()[-1]
        code, output = run(data_dir, "access", "break-glass", "list", "--json")
        [item] = json.loads(output)
        assert (item["id"], item["open"], item["grant"]["username"]) == (review_id, True, "ada")
        code, output = run(
            data_dir, "access", "break-glass", "close", review_id, "--as", "ada", "--note", "fine"
        )
        assert code == 1
        assert "cannot close" in output
        code, output = run(
            data_dir, "access", "break-glass", "close", review_id, "--as", "cora", "--note", "seen"
        )
        assert code == 0, output
        code, output = run(data_dir, "access", "break-glass", "list", "--json")
        assert json.loads(output) == []
        taken = events(data_dir, "access:breakglass:taken")
        assert taken[0]["data"]["review_id"] == review_id

    @pytest.mark.spec("IAC-4")
    def test_the_review_prints_csv_and_json_with_every_staff_member(self, data_dir: Path) -> None:
        code, output = run(data_dir, "access", "review", "--format", "csv", "--unused-days", "1")
        assert code == 0, output
        rows = list(csv.DictReader(io.StringIO(output)))
        assert {r["username"] for r in rows} == set(STAFF)
        assert {r["level"] for r in rows if r["username"] == "ada"} == {"operator"}
        code, output = run(data_dir, "access", "review", "--as", "sam")
        assert code == 1
        assert "access:review" in output
        code, output = run(data_dir, "access", "review", "--as", "cora")
        assert code == 0, output
        document = json.loads(output)
        assert document["unused_days"] == 90
        assert [e["actor"]["kind"] for e in events(data_dir, "access:review:")] == [
            "operator",
            "staff",
        ]

    def test_expire_records_nothing_when_nothing_is_due(self, data_dir: Path) -> None:
        code, output = run(data_dir, "access", "expire")
        assert code == 0
        assert "recorded 0 expiries" in output


def pending_request(data_dir: Path, username: str) -> str:
    """A request for admin:users by `username`, made through the service (as over the API)."""

    async def make() -> str:
        settings = Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        clock = SystemClock()
        ids = IdGenerator(clock)
        sessions = session_factory(engine)
        identity = await start_identity(settings, clock=clock, ids=ids, sessions=sessions)
        services = build_access(
            settings,
            clock=clock,
            ids=ids,
            ledger=identity.deps.ledger,
            notifier=identity.deps.notifier,
            sessions=sessions,
        )
        try:
            change = await services.run(
                lambda session: services.grants.request(
                    session,
                    actor=Actor(user_id(data_dir, username)),
                    permission="admin:users",
                    level=None,
                    reason="user admin",
                    minutes=None,
                )
            )
        finally:
            await engine.dispose()
        return change.grant.id

    return asyncio.run(make())


class TestStaffProveWhoTheyAre:
    """A name after --as is a claim: the staff member proves it with a single-use console
    code that their own session, signed in with their security key, issued; or nothing
    happens (issue #8, F6: anyone who could run the CLI approved grants as any admin; H1: two
    staff passwords satisfied four eyes alone, and a member whose keys were reset kept full
    authority at the console)."""

    def status(self, data_dir: Path) -> list[str]:
        code, output = run(data_dir, "access", "list", "--json")
        assert code == 0, output
        return [g["status"] for g in json.loads(output)]

    @pytest.mark.spec("IAC-1", "IAC-3")
    def test_approving_as_another_admin_without_their_code_is_refused(self, data_dir: Path) -> None:
        grant_id = pending_request(data_dir, "ada")

        # The attack: name another admin and say nothing more (nothing to read at a prompt).
        claimed = run(data_dir, "access", "approve", grant_id, "--as", "bob", secret=None)
        wrong = run(data_dir, "access", "approve", grant_id, "--as", "bob", secret="guess")
        unknown = run(data_dir, "access", "approve", grant_id, "--as", "nobody")

        assert claimed[0] != 0, claimed[1]
        assert self.status(data_dir) == ["pending"]
        assert events(data_dir, "access:grant:approved") == []
        assert wrong[0] == unknown[0] == 1
        assert wrong[1] == unknown[1].replace("'nobody'", "'bob'")
        failed = events(data_dir, "identity:login:failed")
        assert [(e["data"]["via"], e["data"]["method"]) for e in failed] == [  # type: ignore[index]
            ("cli", "console_code"),
            ("cli", "console_code"),
        ]

    @pytest.mark.spec("IAC-1", "IAC-3")
    def test_a_staff_members_password_no_longer_acts_at_the_console(self, data_dir: Path) -> None:
        """H1: knowing bob's password (and ada's) was enough for four eyes at the console."""
        grant_id = pending_request(data_dir, "ada")

        by_password = run(data_dir, "access", "approve", grant_id, "--as", "bob", secret=PASSWORD)

        assert by_password[0] == 1
        assert "cannot act as 'bob'" in by_password[1]
        assert self.status(data_dir) == ["pending"]

    @pytest.mark.spec("IAC-3")
    def test_a_code_acts_once_and_only_for_the_member_it_was_issued_to(
        self, data_dir: Path
    ) -> None:
        grant_id = pending_request(data_dir, "ada")
        keys = KEYS[data_dir]
        adas = keys.code("ada")
        bobs = keys.code("bob")

        # ada's code shown for bob has leaked: refused, and burnt for ada too.
        as_bob = run(data_dir, "access", "approve", grant_id, "--as", "bob", secret=adas)
        as_ada_after = run(data_dir, "access", "list", "--mine", "--as", "ada", secret=adas)
        approved = run(data_dir, "access", "approve", grant_id, "--as", "bob", secret=bobs)
        replayed = run(data_dir, "access", "list", "--mine", "--as", "bob", secret=bobs)

        assert as_bob[0] == as_ada_after[0] == 1
        assert approved[0] == 0, approved[1]
        assert replayed[0] == 1
        assert as_bob[1] == replayed[1]
        assert self.status(data_dir) == ["approved"]

    @pytest.mark.spec("IAC-3")
    def test_staff_whose_keys_were_reset_and_customers_cannot_act(self, data_dir: Path) -> None:
        grant_id = pending_request(data_dir, "ada")
        bobs = KEYS[data_dir].code("bob")
        with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
            db.execute(
                "UPDATE mfa_factors SET revoked_ns = 1 WHERE user_id = ?",
                (user_id(data_dir, "bob"),),
            )
            db.commit()

        reset = run(data_dir, "access", "approve", grant_id, "--as", "bob", secret=bobs)
        customer = run(data_dir, "access", "list", "--mine", "--as", "tina")

        assert reset[0] == customer[0] == 1
        assert reset[1] == customer[1].replace("'tina'", "'bob'")
        assert self.status(data_dir) == ["pending"]

    @pytest.mark.spec("IAC-1", "IAC-3")
    def test_the_approval_records_that_the_approver_was_verified_by_their_key_session(
        self, data_dir: Path
    ) -> None:
        grant_id = pending_request(data_dir, "ada")

        code, output = run(data_dir, "access", "approve", grant_id, "--as", "bob")

        assert code == 0, output
        [approved] = events(data_dir, "access:grant:approved")
        assert approved["actor"] == {"kind": "staff", "id": user_id(data_dir, "bob")}
        assert approved["data"]["via"] == "cli"  # type: ignore[index]
        assert approved["data"]["staff_verified_by"] == "hardware_key_session"  # type: ignore[index]
        assert approved["data"]["operator"] == pwd.getpwuid(os.geteuid()).pw_name  # type: ignore[index]
        [verified] = events(data_dir, "identity:console:verified")
        assert verified["subject"] == {"kind": "user", "id": user_id(data_dir, "bob")}
        data = verified["data"]
        assert data["staff_verified_by"] == "hardware_key_session"  # type: ignore[index]
        [issued] = [
            e
            for e in events(data_dir, "identity:console:code_issued")
            if e["subject"] == {"kind": "user", "id": user_id(data_dir, "bob")}
        ]
        assert data["session_id"] == issued["data"]["session_id"]  # type: ignore[index]
        assert approved["data"]["staff_code_session_id"] == data["session_id"]  # type: ignore[index]

    @pytest.mark.spec("IAC-1", "IAC-4")
    def test_break_glass_cannot_be_taken_in_someone_elses_name(self, data_dir: Path) -> None:
        claimed = run(
            data_dir, "access", "break-glass", "take", "admin", "--as", "ada",
            "--reason", "not really ada", secret=None,
        )  # fmt: skip
        wrong = run(
            data_dir, "access", "break-glass", "take", "admin", "--as", "ada",
            "--reason", "not really ada", secret=PASSWORD,
        )  # fmt: skip

        assert claimed[0] != 0, claimed[1]
        assert wrong[0] == 1
        assert "cannot act as 'ada'" in wrong[1]
        assert events(data_dir, "access:breakglass:") == []
        assert self.status(data_dir) == []

    def test_guessing_codes_at_the_console_is_throttled(self, data_dir: Path) -> None:
        grant_id = pending_request(data_dir, "ada")
        strict = {"TRADEGUARD_LOGIN_MAX_FAILURES": "3"}

        guesses = [
            run(data_dir, "access", "approve", grant_id, "--as", "bob", secret=guess, env=strict)
            for guess in ("password1", "letmein", "hunter2")
        ]
        right = run(data_dir, "access", "approve", grant_id, "--as", "bob", env=strict)

        assert [code for code, _ in guesses] == [1, 1, 1]
        assert right[0] == 1
        assert "too many failed attempts to act as 'bob'" in right[1]
        assert self.status(data_dir) == ["pending"]

    def test_the_operator_is_the_processes_user_not_the_environments(self, data_dir: Path) -> None:
        impersonating = {"USER": "mallory", "LOGNAME": "mallory", "LNAME": "mallory"}

        code, output = run(
            data_dir, "access", "level", "bob", "read-only", "--reason", "audit", env=impersonating
        )

        assert code == 0, output
        me = pwd.getpwuid(os.geteuid()).pw_name
        changed = events(data_dir, "access:level:")
        assert [(e["actor"], e["data"]["operator"]) for e in changed] == [  # type: ignore[index]
            ({"kind": "operator", "id": me}, me),  # the fixture's, as this process's user
            ({"kind": "operator", "id": me}, me),
        ]

    def test_the_code_prompt_is_hidden_and_keeps_json_output_clean(self, data_dir: Path) -> None:
        pending_request(data_dir, "ada")
        secret = KEYS[data_dir].code("ada")

        result = runner.invoke(
            app,
            ["access", "list", "--mine", "--as", "ada", "--json", "--data-dir", str(data_dir)],
            input=secret + "\n",
        )

        assert result.exit_code == 0, result.output
        assert [g["status"] for g in json.loads(result.stdout)] == ["pending"]
        assert "Console code of ada" in result.stderr
        assert secret not in result.output


class TestConsoleDenialsAreRecorded:
    """M3a: a staff member named with --as and refused for lack of a permission leaves the same
    ledger event as over the API (`access:permission:checked`, allowed false), committed
    although the command fails, so the repeated-denials rule (IAC-4) sees it."""

    @pytest.mark.spec("IAC-4")
    def test_a_refused_revoke_and_review_are_denied_checks_in_the_ledger(
        self, data_dir: Path
    ) -> None:
        grant_id = pending_request(data_dir, "ada")
        sam = user_id(data_dir, "sam")

        revoke = run(data_dir, "access", "revoke", grant_id, "--as", "sam", "--reason", "mine now")
        review = run(data_dir, "access", "review", "--as", "sam")

        assert revoke[0] == review[0] == 1
        assert "access:approve" in revoke[1]
        denied = cli_checks(data_dir)
        assert [
            (e["actor"], e["data"]["permission"], e["data"]["allowed"], e["data"]["via"])  # type: ignore[index]
            for e in denied
        ] == [
            ({"kind": "user", "id": sam}, "access:approve", False, "cli"),
            ({"kind": "user", "id": sam}, "access:review", False, "cli"),
        ]
        first = denied[0]
        assert first["subject"]["kind"] == "session"  # type: ignore[index]
        assert first["data"]["route"] == "cli: access revoke"  # type: ignore[index]
        assert first["data"]["method"] == "CLI"  # type: ignore[index]
        assert first["data"]["operator"] == pwd.getpwuid(os.geteuid()).pw_name  # type: ignore[index]
        assert self_status(data_dir) == ["pending"]

    def test_the_operator_and_unproved_names_write_no_denial(self, data_dir: Path) -> None:
        refused = run(data_dir, "access", "review", "--as", "nobody")

        assert refused[0] == 1
        assert cli_checks(data_dir) == []


def cli_checks(data_dir: Path) -> list[dict[str, object]]:
    """Permission checks written by the command line (the API's own, from issuing console
    codes, say "via" nothing)."""
    found = events(data_dir, "access:permission:checked")
    return [e for e in found if e["data"].get("via") == "cli"]  # type: ignore[attr-defined]


def self_status(data_dir: Path) -> list[str]:
    code, output = run(data_dir, "access", "list", "--json")
    assert code == 0, output
    return [g["status"] for g in json.loads(output)]
