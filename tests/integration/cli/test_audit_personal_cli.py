"""`tradeguard audit forget` on a real data directory (SQLite): a subject's personal data in
the ledger becomes unreadable, the whole ledger still verifies, and no copy of the destroyed
key or of the personal data is left in the database files (ENC-3)."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.support.ledger import settle
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.ledger.domain import LedgerEvent, Party, PersonalData
from tradeguard.ledger.personal.keys import SubjectKeys
from tradeguard.ledger.personal.sealing import ERASED
from tradeguard.ledger.service import Ledger, events_after

runner = CliRunner()

ADA = Party("user", "0190c5a0-0000-7000-8000-00000000000a")
BOB = Party("user", "0190c5a0-0000-7000-8000-00000000000b")
PERSONAL = {
    ADA: {"email": "ada.lovelace@example.com", "ip": "198.51.100.23"},
    BOB: {"email": "bob.babbage@example.org", "ip": "203.0.113.77"},
}


def settings_of(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]


def subject_keys(settings: Settings, clock: SystemClock) -> SubjectKeys:
    keyring = LocalKeyring.load_or_create(settings.keys_dir / "master.key")
    return SubjectKeys(keyring, clock=clock, ids=IdGenerator(clock))


async def _seed(settings: Settings) -> None:
    engine = create_engine(settings.main_database_url)
    clock = SystemClock()
    ledger = Ledger(clock=clock, ids=IdGenerator(clock), subject_keys=subject_keys(settings, clock))
    try:
        async with unit_of_work(session_factory(engine)) as session:
            for who, fields in PERSONAL.items():
                await ledger.append(
                    session,
                    LedgerEvent(
                        type="identity:login:succeeded",
                        actor=who,
                        subject=who,
                        data={"method": "password"},
                        personal=PersonalData(who, fields),
                    ),
                )
        await settle(engine)
    finally:
        await engine.dispose()


async def _read(settings: Settings) -> tuple[dict[str, Any], list[bytes]]:
    """Each subject's opened personal fields, and the wrapped keys as stored."""
    engine = create_engine(settings.main_database_url)
    keys = subject_keys(settings, SystemClock())
    try:
        async with unit_of_work(session_factory(engine)) as session:
            events = await events_after(session, after_seq=0, limit=100, keys=keys)
            wrapped = (
                await session.execute(text("SELECT wrapped_key FROM audit_subject_key"))
            ).scalars()
            stored = [bytes(w) for w in wrapped if w is not None]
    finally:
        await engine.dispose()
    opened = {
        e.document["subject"]["id"]: e.document["personal"]
        for e in events
        if e.document["type"] == "identity:login:succeeded"
    }
    return opened, stored


def forgotten_events(data_dir: Path) -> int:
    """How many subjects the ledger records as forgotten (chained or not yet)."""

    async def count() -> int:
        engine = create_engine(settings_of(data_dir).main_database_url)
        try:
            async with engine.connect() as conn:
                found = await conn.execute(
                    text("SELECT count(*) FROM audit_event WHERE event_type = :t"),
                    {"t": "audit:subject:forgotten"},
                )
                return int(found.scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


def database_files(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("tradeguard.db*"))


async def while_the_server_holds_the_database(
    data_dir: Path, command: Callable[[], Any]
) -> tuple[Any, bytes]:
    """Run a command while another process has the database open (as a running server
    does, so SQLite does not checkpoint and delete the WAL when the command exits); the
    command's result and the database files' bytes as they are then."""
    engine = create_engine(settings_of(data_dir).main_database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT count(*) FROM audit_event"))
            await conn.commit()
            result = await asyncio.to_thread(command)
            return result, database_files(data_dir)
    finally:
        await engine.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0
    asyncio.run(_seed(settings_of(directory)))
    return directory


def forget(data_dir: Path, *args: str, **kwargs: Any) -> Any:
    return runner.invoke(app, ["audit", "forget", *args, "--data-dir", str(data_dir)], **kwargs)


class TestForget:
    @pytest.mark.spec("ENC-3", "AUD-2")
    def test_forgetting_erases_the_subjects_fields_and_the_ledger_still_verifies(
        self, data_dir: Path
    ) -> None:
        opened, wrapped_before = asyncio.run(_read(settings_of(data_dir)))
        assert opened == {ADA.id: PERSONAL[ADA], BOB.id: PERSONAL[BOB]}
        assert len(wrapped_before) == 2

        result, files = asyncio.run(
            while_the_server_holds_the_database(
                data_dir,
                lambda: forget(
                    data_dir, f"user:{ADA.id}", "--reason", "erasure request 42", "--yes", "--json"
                ),
            )
        )
        verify = runner.invoke(app, ["audit", "verify", "--json", "--data-dir", str(data_dir)])

        assert result.exit_code == 0, result.output
        forgotten = json.loads(result.output)
        assert forgotten["subject"] == f"user:{ADA.id}"
        assert len(forgotten["destroyed_keys"]) == 1
        report = json.loads(verify.output)
        assert (report["ok"], report["verified"], report["unsequenced"]) == (True, 4, 0)
        opened, wrapped_after = asyncio.run(_read(settings_of(data_dir)))
        assert opened[ADA.id] == {"email": ERASED, "ip": ERASED}
        assert opened[BOB.id] == PERSONAL[BOB]
        # Ada's wrapped key is gone from the database file and its WAL (which a running
        # server keeps open), not just unlinked from its row.
        [ada_wrapped] = [w for w in wrapped_before if w not in wrapped_after]
        assert ada_wrapped not in files
        assert wrapped_after[0] in files  # (the search does find what is there)

    @pytest.mark.spec("ENC-3")
    def test_no_personal_value_is_stored_in_the_database_files(self, data_dir: Path) -> None:
        files = database_files(data_dir)
        for fields in PERSONAL.values():
            for value in fields.values():
                assert value.encode() not in files

    @pytest.mark.spec("AUD-1")
    def test_the_forgetting_is_in_the_ledger_as_the_operator(self, data_dir: Path) -> None:
        result = forget(data_dir, ADA.id, "--reason", "erasure request 42", "--yes")
        assert result.exit_code == 0, result.output
        assert "1 data key destroyed" in result.output

        async def last_event() -> dict[str, Any]:
            engine = create_engine(settings_of(data_dir).main_database_url)
            try:
                async with engine.connect() as conn:
                    body = await conn.scalar(
                        text("SELECT body FROM audit_event ORDER BY pk DESC LIMIT 1")
                    )
            finally:
                await engine.dispose()
            document: dict[str, Any] = json.loads(body)
            return document

        record = asyncio.run(last_event())
        assert record["type"] == "audit:subject:forgotten"
        assert record["actor"] == {"kind": "operator", "id": getpass.getuser()[:64]}
        assert record["subject"] == {"kind": "user", "id": ADA.id}
        assert record["data"]["reason"] == "erasure request 42"


class TestRefusals:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["staff:x", "--reason", "r", "--yes"], "a subject is user:<id>"),
            (["visitors:2026-13", "--reason", "r", "--yes"], "a subject is user:<id>"),
            # A user id is a user's UUID: anything else names nobody (the tester's user:bad).
            (["user:bad", "--reason", "r", "--yes"], "a subject is user:<id>"),
            (["bad", "--reason", "r", "--yes"], "a subject is user:<id>"),
            (["user:", "--reason", "r", "--yes"], "a subject is user:<id>"),
            (["user:../../x", "--reason", "r", "--yes"], "a subject is user:<id>"),
            ([f"user:{ADA.id[:-1]}", "--reason", "r", "--yes"], "a subject is user:<id>"),
            ([f"user:{ADA.id}x", "--reason", "r", "--yes"], "a subject is user:<id>"),
            ([f"user:{{{ADA.id}}}", "--reason", "r", "--yes"], "a subject is user:<id>"),
            ([f"user:{ADA.id.replace('-', '')}", "--reason", "r", "--yes"], "a subject is"),
            ([f"user:{ADA.id}", "--reason", "   ", "--yes"], "say why"),
            ([f"user:{ADA.id}", "--reason", "r" * 501, "--yes"], "at most 500"),
            ([f"user:{ADA.id}", "--yes"], "--reason"),
        ],
    )
    def test_bad_input_is_refused_and_changes_nothing(
        self, data_dir: Path, args: list[str], message: str
    ) -> None:
        before = forgotten_events(data_dir)
        result = forget(data_dir, *args)
        assert result.exit_code == 2
        assert message in " ".join(result.output.split())
        opened, _ = asyncio.run(_read(settings_of(data_dir)))
        assert opened[ADA.id] == PERSONAL[ADA]
        assert forgotten_events(data_dir) == before

    def test_a_user_id_in_capitals_is_the_same_user(self, data_dir: Path) -> None:
        result = forget(data_dir, f"user:{ADA.id.upper()}", "--reason", "r", "--yes", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["subject"] == f"user:{ADA.id}"
        opened, _ = asyncio.run(_read(settings_of(data_dir)))
        assert opened[ADA.id] == {"email": ERASED, "ip": ERASED}

    def test_nothing_is_forgotten_unless_confirmed(self, data_dir: Path) -> None:
        declined = forget(data_dir, ADA.id, "--reason", "r", input="n\n")
        assert declined.exit_code == 2
        assert "nothing was forgotten" in declined.output
        opened, _ = asyncio.run(_read(settings_of(data_dir)))
        assert opened[ADA.id] == PERSONAL[ADA]
        confirmed = forget(data_dir, ADA.id, "--reason", "r", input="y\n")
        assert confirmed.exit_code == 0, confirmed.output

    def test_without_a_database_it_fails_and_creates_nothing(self, tmp_path: Path) -> None:
        target = tmp_path / "missing"
        result = forget(target, ADA.id, "--reason", "r", "--yes")
        assert result.exit_code == 2
        assert "tradeguard init" in result.output
        assert not target.exists()
