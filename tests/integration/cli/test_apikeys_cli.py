"""`tradeguard apikeys`: staff list, show and revoke customers' API keys, proved with a
console code and holding admin:users (API-1), against a real data directory."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.integration.apikeys.conftest import BOT_IP, create_key, owner, signed
from tests.support.api import running_api
from tests.support.console import ConsoleKeys
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
STAFF = {"ada": Role.ADMIN, "sam": Role.SUPPORT}


def settings_of(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None)


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


def a_key(data_dir: Path) -> dict[str, object]:
    async def go() -> dict[str, object]:
        settings = settings_of(data_dir)
        engine = create_engine(settings.main_database_url)
        try:
            clock = FrozenClock(time.time_ns())
            async with running_api(settings, engine, clock) as api, api.client() as client:
                alice = await owner(api, client)
                return await create_key(alice)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def still_works(data_dir: Path, key: dict[str, object]) -> int:
    async def go() -> int:
        settings = settings_of(data_dir)
        engine = create_engine(settings.main_database_url)
        try:
            clock = FrozenClock(time.time_ns())
            async with running_api(settings, engine, clock) as api, api.client(BOT_IP) as bot:
                response = await signed(api, bot, key, "GET", "/api/v1/accounts")
                return response.status_code
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


@pytest.mark.parametrize(
    "command", [["apikeys"], ["apikeys", "list"], ["apikeys", "show"], ["apikeys", "revoke"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


@pytest.mark.spec("API-1")
def test_an_admin_lists_shows_and_revokes_a_key_at_the_console(data_dir: Path) -> None:
    key = a_key(data_dir)
    key_id = str(key["key"]["id"])  # type: ignore[index]
    secret = str(key["secret"])
    consoles = ConsoleKeys(data_dir)
    consoles.enrol(*STAFF)

    code, output = run(data_dir, consoles, "apikeys", "list", "--as", "sam")
    assert code != 0
    assert "admin:users" in output

    code, output = run(data_dir, consoles, "apikeys", "list", "--json", "--as", "ada")
    assert code == 0, output
    [row] = json.loads(output)
    assert row["id"] == key_id
    assert row["status"] == "active"
    code, output = run(data_dir, consoles, "apikeys", "show", key_id, "--as", "ada")
    assert code == 0, output
    assert json.loads(output)["scope"] == "trade"
    assert secret not in output
    assert still_works(data_dir, key) == 200

    code, output = run(data_dir, consoles, "apikeys", "revoke", key_id, "--as", "ada")
    assert code == 0, output
    assert f"revoked {key_id}" in output
    assert still_works(data_dir, key) == 401
    with closing(sqlite3.connect(data_dir / "tradeguard.db")) as db:
        [(body,)] = db.execute(
            "SELECT body FROM audit_event WHERE event_type = 'apikeys:key:revoked'"
        ).fetchall()
    assert json.loads(body)["data"] == {"key_id": key_id, "reason": "staff"}


def test_bad_arguments_exit_with_usage(data_dir: Path) -> None:
    code, output = run(data_dir, None, "apikeys", "revoke", "tgk_id_0123456789abcdef01234567")
    assert code == 2
    assert "--as" in output
    code, output = run(data_dir, None, "apikeys", "show", "not-a-key", "--as", "ada")
    assert code == 2
