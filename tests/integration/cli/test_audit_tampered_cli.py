"""The audit commands on a ledger rewritten behind its triggers, as an outside tester did it:
an event body stored as TEXT is reported as tampering (never a traceback), and the
checkpoint signer refuses to sign over a chain that no longer verifies (AUD-2)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.support.ledger import (
    change_chain_behind_triggers,
    rewrite_behind_triggers,
    settle,
    tamper_event_body,
)
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, Clock, FrozenClock, SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger

runner = CliRunner()
EVENTS = 40


class Data:
    def __init__(self, directory: Path, database_url: str | None) -> None:
        self.directory = directory
        self.settings = Settings(data_dir=directory, database_url=database_url, _env_file=None)  # type: ignore[call-arg]

    def run(self, *args: str) -> Any:
        return runner.invoke(app, ["audit", *args, "--data-dir", str(self.directory)])

    def add_events(self, count: int, clock: Clock | None = None) -> None:
        async def append() -> None:
            engine = create_engine(self.settings.main_database_url)
            clock_ = clock or SystemClock()
            ledger = Ledger(clock=clock_, ids=IdGenerator(clock_))
            try:
                async with unit_of_work(session_factory(engine)) as session:
                    for n in range(count):
                        await ledger.append(
                            session,
                            LedgerEvent(
                                type="trading:order:placed",
                                data={"order_id": f"ord-{n}", "account_id": "acc-1", "failures": 1},
                                actor=Party("user", "trader-1"),
                                subject=Party("account", "acc-1"),
                            ),
                        )
                # Chained now, as the server's sequencer would chain them.
                await settle(engine)
            finally:
                await engine.dispose()

        asyncio.run(append())

    def size(self) -> int:
        async def read() -> int:
            engine = create_engine(self.settings.main_database_url)
            try:
                async with engine.connect() as conn:
                    found = await conn.execute(text("SELECT max(seq) FROM audit_chain"))
                    return int(found.scalar_one())
            finally:
                await engine.dispose()

        return asyncio.run(read())

    def checkpoint_sizes(self) -> list[int]:
        async def read() -> list[int]:
            engine = create_engine(self.settings.main_database_url)
            try:
                async with engine.connect() as conn:
                    rows = await conn.execute(
                        text("SELECT tree_size FROM audit_checkpoint ORDER BY tree_size")
                    )
                    return [int(size) for size in rows.scalars()]
            finally:
                await engine.dispose()

        return asyncio.run(read())

    def set_body(self, seq: int, sql_value: str) -> None:
        """Set the body of the event chained at `seq` to an SQL expression, behind the
        triggers (the retest's variants)."""

        async def rewrite() -> None:
            engine = create_engine(self.settings.main_database_url)
            try:
                await rewrite_behind_triggers(
                    engine,
                    "audit_event",
                    f"UPDATE audit_event SET body = {sql_value} WHERE pk = "  # noqa: S608
                    "(SELECT event_pk FROM audit_chain WHERE seq = :seq)",
                    {"seq": seq},
                )
            finally:
                await engine.dispose()

        asyncio.run(rewrite())

    def rewrite_body_as_text(self, seq: int) -> None:
        """The tester's statement: SQLite's replace() on a BLOB returns TEXT."""

        async def rewrite() -> None:
            engine = create_engine(self.settings.main_database_url)
            try:
                async with engine.begin() as conn:
                    await conn.execute(text("DROP TRIGGER audit_event_no_update"))
                    await conn.execute(
                        text(
                            "UPDATE audit_event SET body = replace(body, :old, :new) WHERE pk = "
                            "(SELECT event_pk FROM audit_chain WHERE seq = :seq)"
                        ),
                        {"seq": seq, "old": '"failures":1', "new": '"failures":9'},
                    )
                    kind = await conn.execute(
                        text(
                            "SELECT typeof(body) FROM audit_event WHERE pk = "
                            "(SELECT event_pk FROM audit_chain WHERE seq = :seq)"
                        ),
                        {"seq": seq},
                    )
                    assert kind.scalar_one() == "text"
            finally:
                await engine.dispose()

        asyncio.run(rewrite())

    def alter_body(self, seq: int) -> None:
        """The body rewritten as bytes (the chain and the tree left as they were)."""

        async def rewrite() -> None:
            engine = create_engine(self.settings.main_database_url)
            try:
                async with engine.connect() as conn:
                    body = (
                        await conn.execute(
                            text(
                                "SELECT e.body FROM audit_event e JOIN audit_chain c "
                                "ON c.event_pk = e.pk WHERE c.seq = :seq"
                            ),
                            {"seq": seq},
                        )
                    ).scalar_one()
                altered = bytes(body).replace(b'"failures":1', b'"failures":9')
                assert altered != bytes(body)
                await tamper_event_body(engine, seq=seq, new_body=altered)
            finally:
                await engine.dispose()

        asyncio.run(rewrite())

    def delete_chain_row(self, seq: int) -> None:
        async def rewrite() -> None:
            engine = create_engine(self.settings.main_database_url)
            try:
                await change_chain_behind_triggers(
                    engine, [("DELETE FROM audit_chain WHERE seq = :seq", {"seq": seq})]
                )
            finally:
                await engine.dispose()

        asyncio.run(rewrite())


def make_data(tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Data:
    if database_url is not None:
        monkeypatch.setenv("TRADEGUARD_DATABASE_URL", database_url)
    directory = tmp_path / "var"
    result = runner.invoke(app, ["init", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output
    data = Data(directory, database_url)
    data.add_events(EVENTS)
    return data


@pytest.fixture
def data(tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Data:
    return make_data(tmp_path, database_url, monkeypatch)


@pytest.fixture
def sqlite_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Data:
    return make_data(tmp_path, None, monkeypatch)


def one_line(output: str) -> str:
    return " ".join(output.split())


class TestABodyStoredAsText:
    """SQLite only: a bytea column on PostgreSQL cannot hold TEXT."""

    def target(self, data: Data) -> int:
        """An order event chained before the latest checkpoint (so a proof is asked for)."""
        assert data.run("checkpoint").exit_code == 0
        return data.size() - 3

    @pytest.mark.spec("AUD-2")
    def test_verify_reports_the_sequence_as_altered(self, sqlite_data: Data) -> None:
        seq = self.target(sqlite_data)
        sqlite_data.rewrite_body_as_text(seq)
        plain = sqlite_data.run("verify")
        as_json = sqlite_data.run("verify", "--json")
        assert plain.exit_code == 1, plain.output
        assert plain.exception is None or isinstance(plain.exception, SystemExit)
        assert f"TAMPERED: first bad sequence {seq} (event_altered)" in one_line(plain.output)
        assert "Traceback" not in plain.output
        report = json.loads(as_json.stdout)
        assert (report["first_bad_seq"], report["failure"]) == (seq, "event_altered")

    @pytest.mark.parametrize(
        "command",
        [
            ("export", "{out}"),
            ("prove", "inclusion", "--seq", "{seq}"),
            ("export-events", "--format", "csv", "--out", "{out}/events.csv"),
            ("export-events", "--format", "json", "--out", "{out}/events.json"),
            ("search", "--account", "acc-1"),
            ("seal",),
        ],
    )
    def test_every_reader_refuses_with_one_line_naming_the_sequence(
        self, sqlite_data: Data, tmp_path: Path, command: tuple[str, ...]
    ) -> None:
        seq = self.target(sqlite_data)
        sqlite_data.rewrite_body_as_text(seq)
        out = tmp_path / "out"
        out.mkdir()
        result = sqlite_data.run(*(a.format(out=out, seq=seq) for a in command))
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit), result.exception
        assert f"the event at seq {seq} has a body that is not stored as bytes" in one_line(
            result.output
        )


class TestBodiesNoTraceback:
    """The retest of the review: a TEXT body that is not UTF-8 (SQLite), and a body that is
    not a JSON object (both databases), still gave tracebacks."""

    @pytest.mark.parametrize(
        "command",
        [
            ("verify",),
            ("export", "{out}"),
            ("prove", "inclusion", "--seq", "{seq}"),
            ("export-events", "--format", "csv", "--out", "{out}/events.csv"),
            ("search", "--account", "acc-1"),
            ("seal",),
        ],
    )
    def test_text_that_is_not_utf8_is_one_line(
        self, sqlite_data: Data, tmp_path: Path, command: tuple[str, ...]
    ) -> None:
        assert sqlite_data.run("checkpoint").exit_code == 0
        seq = sqlite_data.size() - 3
        sqlite_data.set_body(seq, "CAST(x'7bff22' AS TEXT)")
        out = tmp_path / "out"
        out.mkdir()
        result = sqlite_data.run(*(a.format(out=out, seq=seq) for a in command))
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit), result.exception
        if command == ("verify",):
            assert f"first bad sequence {seq} (event_altered)" in one_line(result.output)

    @pytest.mark.parametrize("body", ["x''", "CAST('[]' AS BLOB)", "x'7bff22'"])
    @pytest.mark.parametrize("command", [("search", "--account", "acc-1"), ("export-events",)])
    def test_a_body_that_is_not_a_json_object_is_one_line_naming_the_sequence(
        self, sqlite_data: Data, tmp_path: Path, body: str, command: tuple[str, ...]
    ) -> None:
        assert sqlite_data.run("checkpoint").exit_code == 0
        seq = sqlite_data.size() - 3
        sqlite_data.set_body(seq, body)
        args = (*command, "--format", "json", "--out", str(tmp_path / "e.json"))
        result = sqlite_data.run(*(args if command == ("export-events",) else command))
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit), result.exception
        assert f"the event at seq {seq} has a body that is not a JSON object" in one_line(
            result.output
        )


class TestTheSignerRefusesATamperedChain:
    @pytest.mark.spec("AUD-2")
    def test_a_body_altered_after_the_last_checkpoint_is_not_signed(self, data: Data) -> None:
        assert data.run("checkpoint").exit_code == 0
        signed = data.checkpoint_sizes()
        data.add_events(5)
        seq = data.size() - 2
        data.alter_body(seq)
        result = data.run("checkpoint")
        assert data.run("verify").exit_code == 1
        assert result.exit_code == 1, result.output
        assert f"seq {seq}" in one_line(result.output)
        assert "nothing is signed" in one_line(result.output)
        assert data.checkpoint_sizes() == signed

    def test_a_body_stored_as_text_after_the_last_checkpoint_is_not_signed(
        self, sqlite_data: Data
    ) -> None:
        assert sqlite_data.run("checkpoint").exit_code == 0
        signed = sqlite_data.checkpoint_sizes()
        sqlite_data.add_events(5)
        seq = sqlite_data.size() - 1
        sqlite_data.rewrite_body_as_text(seq)
        result = sqlite_data.run("checkpoint")
        assert result.exit_code == 1, result.output
        assert f"seq {seq}" in one_line(result.output)
        assert sqlite_data.checkpoint_sizes() == signed

    def test_a_first_checkpoint_over_an_altered_body_is_not_signed(self, data: Data) -> None:
        data.alter_body(data.size() - 5)
        result = data.run("checkpoint")
        assert result.exit_code == 1, result.output
        assert data.checkpoint_sizes() == []

    def test_a_chain_row_deleted_below_the_last_checkpoint_is_left_to_audit_verify(
        self, data: Data
    ) -> None:
        # Signed history is bound by its roots; the signer checks only what it adds (a
        # whole-chain check per checkpoint would grow with the ledger: docs/audit.md).
        assert data.run("checkpoint").exit_code == 0
        signed = data.checkpoint_sizes()
        missing = signed[-1] - 10
        data.add_events(5)
        data.delete_chain_row(missing)
        result = data.run("checkpoint")
        verify = data.run("verify")
        assert result.exit_code == 0, result.output
        assert verify.exit_code == 1
        assert f"first bad sequence {missing} (missing_sequence)" in one_line(verify.output)

    def test_a_chain_row_deleted_after_the_last_checkpoint_is_not_signed_over(
        self, data: Data
    ) -> None:
        assert data.run("checkpoint").exit_code == 0
        signed = data.checkpoint_sizes()
        data.add_events(5)
        data.delete_chain_row(data.size() - 2)
        result = data.run("checkpoint")
        assert result.exit_code == 1, result.output
        assert data.checkpoint_sizes() == signed

    def test_a_sound_ledger_is_signed_again_as_it_grows(self, data: Data) -> None:
        assert data.run("checkpoint").exit_code == 0
        data.add_events(7)
        result = data.run("checkpoint")
        assert result.exit_code == 0, result.output
        assert data.checkpoint_sizes()[-1] == data.size()


class TestASealedBodyStoredAsText:
    def test_archive_verify_names_the_sequence_instead_of_a_traceback(
        self, sqlite_data: Data
    ) -> None:
        # An event two months on is the ledger's evidence that this month has closed.
        later = FrozenClock(SystemClock().now_ns() + 62 * 24 * 3600 * NS_PER_SECOND)
        sqlite_data.add_events(1, later)
        seal = runner.invoke(
            app, ["audit", "seal", "--data-dir", str(sqlite_data.directory)], obj=later
        )
        assert seal.exit_code == 0, seal.output
        assert "0 segment" not in sqlite_data.run("archive", "verify").output
        assert sqlite_data.run("archive", "verify").exit_code == 0
        seq = 5
        sqlite_data.rewrite_body_as_text(seq)
        result = sqlite_data.run("archive", "verify")
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit), result.exception
        assert f"the event at seq {seq} has a body that is not stored as bytes" in one_line(
            result.output
        )
