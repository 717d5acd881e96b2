"""`tradeguard access`: the catalogue, grants, break-glass, levels and the review from the
command line, against a real data directory; the service holds the CLI to the API's rules
(RBAC-5) and refusals exit non-zero in one line."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradeguard.access.domain import CATALOGUE, Role
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import build_identity
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


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
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
        identity = build_identity(
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
                    password="correct horse battery staple 42",
                    role=role,
                    email_verified=True,
                )
        await engine.dispose()

    asyncio.run(people())
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
        assert code == 2
        assert "no staff member named 'tina'" in output
        code, output = run(data_dir, "access", "list", "--pending", "--as", "bob", "--json")
        assert [(g["id"], g["status"]) for g in json.loads(output)] == [(grant_id, "pending")]
        denied = events(data_dir, "access:approval:denied")
        assert [e["data"]["why"] for e in denied] == [
            "self_approval",
            "no_authority",
            "no_authority",
        ]

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["admin:everything", "--minutes", "5"], 2, "unknown permission"),
            (["admin:config", "--minutes", "0"], 2, "above zero"),
            (["admin:config", "--minutes", "-3"], 2, "above zero"),
            (["admin:config", "--minutes", "121"], 2, "at most 120 minutes"),
            (["superuser"], 2, "unknown permission"),
            (["compliance:audit"], 1, "outside the ADMIN role"),
            (["account:view"], 1, "already hold"),
        ],
    )
    def test_bad_requests_exit_non_zero_and_change_nothing(
        self, data_dir: Path, args: list[str], code: int, message: str
    ) -> None:
        got, output = run(
            data_dir, "access", "request", *args, "--as", "ada", "--reason", "testing"
        )
        assert got == code, output
        assert message in output
        assert events(data_dir, "access:grant:") == []

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
