"""`tradeguard kyc documents`: the review queue, a review decision and a download with a
reason, by a staff member proved with a console code, against a real data directory (KYC-2)."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import pytest

from tests.integration.cli.test_funds_cli import PASSWORD, STAFF, events, run, runner, settings_of
from tests.support.api import running_api
from tests.support.console import ConsoleKeys
from tests.support.kyc_documents import upload
from tests.support.kyc_files import jpeg, td3
from tests.support.trading import signed_in_trader
from tradeguard.cli.main import app
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.identity.password_hashing import Argon2Parameters

COMMANDS = [
    ["kyc"],
    ["kyc", "documents"],
    ["kyc", "documents", "list"],
    ["kyc", "documents", "review"],
    ["kyc", "documents", "download"],
    ["kyc", "documents", "recheck"],
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An initialised data directory with the staff members of the funds CLI tests."""
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


def a_document_in_review(data_dir: Path) -> tuple[str, bytes]:
    """A customer's passport uploaded over the API with no application on file: it waits
    for a person."""

    async def go() -> tuple[str, bytes]:
        settings = settings_of(data_dir)
        engine = create_engine(settings.main_database_url)
        try:
            clock = FrozenClock(time.time_ns())
            async with running_api(settings, engine, clock) as api, api.client() as client:
                alice = await signed_in_trader(api, client, "alice")
                content = jpeg()
                response = await upload(alice, content, mrz=td3())
                assert response.json()["status"] == "review", response.text
                return str(response.json()["id"]), content
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


@pytest.mark.spec("KYC-2")
def test_staff_list_download_and_accept_a_document_at_the_console(
    data_dir: Path, tmp_path: Path
) -> None:
    document_id, content = a_document_in_review(data_dir)
    keys = ConsoleKeys(data_dir)
    keys.enrol(*STAFF)

    code, output = run(data_dir, keys, "kyc", "documents", "list", "--json", "--as", "sam")
    assert code != 0
    assert "kyc:review" in output

    code, output = run(data_dir, keys, "kyc", "documents", "list", "--json", "--as", "cora")
    assert code == 0, output
    [row] = json.loads(output)
    assert row["id"] == document_id
    assert "APPLICANT_UNKNOWN" in row["reasons"]

    target = tmp_path / "passport.jpg"
    code, output = run(
        data_dir, keys, "kyc", "documents", "download", document_id,
        "--reason", "checking the photo page", "--out", str(target), "--as", "cora",
    )  # fmt: skip
    assert code == 0, output
    assert target.read_bytes() == content
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    [downloaded] = events(data_dir, "kyc:document:downloaded")
    assert downloaded["data"]["reason"] == "checking the photo page"  # type: ignore[index]

    code, output = run(
        data_dir, keys, "kyc", "documents", "review", document_id,
        "--decision", "accept", "--reason", "photo and MRZ match", "--as", "cora",
    )  # fmt: skip
    assert code == 0, output
    assert "verified" in output
    code, output = run(data_dir, keys, "kyc", "documents", "list", "--json", "--as", "cora")
    assert json.loads(output) == []


def test_without_a_named_staff_member_nothing_is_listed(data_dir: Path) -> None:
    code, output = run(data_dir, None, "kyc", "documents", "list")
    assert code == 2
    assert "--as" in output


def test_recheck_with_nothing_pending_checks_nothing(data_dir: Path) -> None:
    code, output = run(data_dir, None, "kyc", "documents", "recheck")
    assert code == 0, output
    assert "0 of 0 pending documents checked" in output
