"""`tradeguard sanctions`: loading a list version (the same files twice change nothing; a
malformed file is refused naming file and line), an ad hoc screen, re-screening with new
hits reported, and the hits worked by staff proved with console codes; bad input exits
non-zero in one line that says what to do."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.integration.cli.test_funds_cli import PASSWORD, run, settings_of
from tests.support.console import ConsoleKeys
from tradeguard.access.domain import Role
from tradeguard.cli.main import app
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.identity.password_hashing import Argon2Parameters
from tradeguard.kyc.contracts import ScreeningSubject, SubjectKind
from tradeguard.kyc.sanctions.container import build_sanctions
from tradeguard.ledger.domain import Party

runner = CliRunner()
SAMPLE = Path("/work/shared/data/ofac/sdn-sample")
STAFF = {"cora": Role.COMPLIANCE, "sam": Role.SUPPORT}
COMMANDS = [
    ["sanctions"],
    ["sanctions", "load"],
    ["sanctions", "versions"],
    ["sanctions", "screen"],
    ["sanctions", "rescreen"],
    ["sanctions", "hits"],
    ["sanctions", "hits", "list"],
    ["sanctions", "hits", "clear"],
    ["sanctions", "hits", "confirm"],
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    if not SAMPLE.is_dir():
        pytest.skip("the OFAC sample files are not present")
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


def a_hit(data_dir: Path) -> str:
    """A customer screened now (as onboarding will): the sample's 15102 "MORENO, Daniel"."""

    async def go() -> str:
        settings = settings_of(data_dir)
        engine = create_engine(settings.main_database_url)
        try:
            clock = FrozenClock(time.time_ns())
            sessions = session_factory(engine)
            identity = await start_identity(
                settings, clock=clock, ids=IdGenerator(clock), sessions=sessions
            )
            sanctions = build_sanctions(
                settings,
                clock=clock,
                ids=IdGenerator(clock),
                ledger=identity.deps.ledger,
                keyring=identity.deps.keyring,
                sessions=sessions,
            )
            async with unit_of_work(sessions) as session:
                outcome = await sanctions.service.screen(
                    session,
                    ScreeningSubject(SubjectKind.CUSTOMER, "u-1", "Daniel Moreno", "u-1"),
                    reason="onboarding",
                    actor=Party("system", "test"),
                )
            return outcome.hits[0].hit_id
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


@pytest.mark.spec("KYC-2")
def test_load_screen_and_review_at_the_console(data_dir: Path) -> None:
    code, output = run(data_dir, None, "sanctions", "load", str(SAMPLE), "--no-progress")
    assert code == 0, output
    assert "17 entries" in output
    assert "re-screened 0 subjects" in output
    code, output = run(data_dir, None, "sanctions", "load", str(SAMPLE))
    assert code == 0, output
    assert "unchanged" in output

    # Written in Cyrillic, with the listed date of birth: the name and the date agree.
    code, output = run(
        data_dir, None, "sanctions", "screen", "Даниэль Морено", "--dob", "1972-10-12", "--json"
    )
    assert code == 0, output
    screened = json.loads(output)
    assert screened["decision"] == "block"
    assert screened["matches"][0]["entry_id"] == "15102"
    code, output = run(data_dir, None, "sanctions", "screen", "Daniel Moreno")
    assert code == 0, output
    assert "15102" in output
    assert "matched the list's name" in output

    hit_id = a_hit(data_dir)
    keys = ConsoleKeys(data_dir)
    keys.enrol(*STAFF)
    code, output = run(data_dir, keys, "sanctions", "hits", "list", "--as", "sam")
    assert code != 0
    assert "sanctions:review" in output
    code, output = run(data_dir, keys, "sanctions", "hits", "list", "--as", "cora", "--json")
    assert code == 0, output
    assert [h["id"] for h in json.loads(output)] == [hit_id]
    code, output = run(
        data_dir,
        keys,
        "sanctions",
        "hits",
        "clear",
        hit_id,
        "--reason",
        "other man",
        "--as",
        "cora",
    )
    assert code == 0, output
    assert "cleared" in output
    code, output = run(
        data_dir, keys, "sanctions", "hits", "confirm", hit_id, "--reason", "late", "--as", "cora"
    )
    assert code == 1
    assert "already cleared" in output


def test_bad_input_exits_non_zero_saying_what_to_do(data_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(SAMPLE, broken)
    (broken / "sdn.csv").write_bytes(b'1,"ONLY","individual"\r\n')
    code, output = run(data_dir, None, "sanctions", "load", str(broken))
    assert code == 2
    assert "sdn.csv line 1" in output
    code, output = run(data_dir, None, "sanctions", "versions")
    assert "no list version is loaded" in output
    code, output = run(data_dir, None, "sanctions", "load", "http://example.com/sdn/")
    assert code == 2
    assert "https" in output
    code, output = run(data_dir, None, "sanctions", "load")
    assert code == 2
    assert "TRADEGUARD_SANCTIONS_LIST_SOURCE" in output
    code, output = run(data_dir, None, "sanctions", "screen", "Daniel Moreno")
    assert code != 0
    assert "tradeguard sanctions load" in output
    run(data_dir, None, "sanctions", "load", str(SAMPLE), "--no-progress")
    code, output = run(data_dir, None, "sanctions", "screen", "Daniel", "--dob", "1970/01/01")
    assert code == 2
    assert "1970-07-10" in output
    code, output = run(data_dir, None, "sanctions", "screen", "Daniel", "--nationality", "MEX")
    assert code != 0
    assert "alpha-2" in output
    code, output = run(data_dir, None, "sanctions", "hits", "clear", "x", "--reason", "abc")
    assert code == 2
