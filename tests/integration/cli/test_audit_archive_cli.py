"""`tradeguard audit seal | purge | archive list | verify | show` against a real data directory,
on SQLite and on a PostgreSQL database of its own: segments read back byte for byte, any
tampering with a file named, files never replaced, nothing younger than seven years or
unsealed ever purged, and a purge that is itself a chained ledger event after which the
ledger still verifies (AUD-2, ENC-3)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from typer.testing import CliRunner

from tests.support.ledger import tamper_event_body
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.db.engine import create_engine, read_only, session_factory, unit_of_work
from tradeguard.ledger.archive.format import open_manifest, open_segment
from tradeguard.ledger.archive.keys import KeyringSegmentKeys
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.tree.keys import load_log_keys
from tradeguard.ledger.tree.note import NoteSigner

runner = CliRunner()
# Seeded events are recorded in January, February and March 2030 (after `init`'s own
# events, recorded now), so each month closes a segment of its own.
MONTHS = {1: 4, 2: 3, 3: 2}


def at(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, 12, tzinfo=UTC).timestamp()) * NS_PER_SECOND


def clock_at(year: int, month: int, day: int) -> FrozenClock:
    return FrozenClock(at(year, month, day))


class Data:
    """A data directory with its database, and helpers to look inside."""

    def __init__(self, directory: Path, database_url: str | None) -> None:
        self.directory = directory
        self.settings = Settings(data_dir=directory, database_url=database_url, _env_file=None)  # type: ignore[call-arg]
        self.archive = self.settings.ledger_archive_path

    def run(self, *args: str, clock: FrozenClock | None = None, stdin: str | None = None) -> Any:
        return runner.invoke(
            app,
            ["audit", *args, "--data-dir", str(self.directory)],
            obj=clock,
            input=stdin,
        )

    def query(self, sql: str, **params: Any) -> list[Any]:
        async def read() -> list[Any]:
            engine = create_engine(self.settings.main_database_url)
            try:
                async with engine.connect() as conn:
                    await read_only(conn)
                    return list((await conn.execute(text(sql), params)).all())
            finally:
                await engine.dispose()

        return asyncio.run(read())

    def execute(self, sql: str, **params: Any) -> None:
        async def write() -> None:
            engine = create_engine(self.settings.main_database_url)
            try:
                async with engine.begin() as conn:
                    await conn.execute(text(sql), params)
            finally:
                await engine.dispose()

        asyncio.run(write())

    def events(self) -> dict[int, tuple[str, bytes]]:
        rows = self.query(
            "SELECT c.seq, e.event_id, e.body FROM audit_chain c "
            "JOIN audit_event e ON e.pk = c.event_pk ORDER BY c.seq"
        )
        return {int(seq): (event_id, bytes(body)) for seq, event_id, body in rows}

    def rows(self) -> list[tuple[str, bytes]]:
        """Every stored event (chained or not yet): what a refused command must not change."""
        return [
            (event_id, bytes(body))
            for event_id, body in self.query("SELECT event_id, body FROM audit_event ORDER BY pk")
        ]

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.archive.iterdir())}

    def segments(self) -> list[str]:
        return sorted(p.name[: -len(".segment")] for p in self.archive.glob("*.segment"))


@pytest.fixture
def data(tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Data:
    if database_url is not None:
        monkeypatch.setenv("TRADEGUARD_DATABASE_URL", database_url)
    directory = tmp_path / "var"
    result = runner.invoke(app, ["init", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output
    found = Data(directory, database_url)

    async def seed() -> None:
        engine = create_engine(found.settings.main_database_url)
        clock = clock_at(2030, 1, 15)
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        try:
            for month, count in MONTHS.items():
                clock.advance(ns=at(2030, month, 15) - clock.now_ns())
                async with unit_of_work(session_factory(engine)) as session:
                    for n in range(count):
                        await ledger.append(
                            session,
                            LedgerEvent(
                                type="trading:order:placed",
                                actor=Party("user", "trader-1"),
                                subject=Party("account", "acc-1"),
                                data={"order_id": f"ord-{month}-{n}", "account_id": "acc-1"},
                            ),
                        )
                        clock.advance(seconds=60)
        finally:
            await engine.dispose()

    asyncio.run(seed())
    return found


def append_event(data: Data, clock: FrozenClock) -> None:
    """An event recorded at the clock's time (committed, chained by the next command)."""

    async def append() -> None:
        engine = create_engine(data.settings.main_database_url)
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        try:
            async with unit_of_work(session_factory(engine)) as session:
                await ledger.append(
                    session,
                    LedgerEvent(
                        type="trading:order:placed",
                        actor=Party("user", "trader-1"),
                        subject=Party("account", "acc-1"),
                        data={"order_id": f"ord-{clock.now_ns()}", "account_id": "acc-1"},
                    ),
                )
        finally:
            await engine.dispose()

    asyncio.run(append())


def aged(data: Data, clock: FrozenClock) -> FrozenClock:
    """What a ledger that kept running until the clock's time holds: an event recorded then.
    A purge needs the ledger's own evidence that the retention has passed."""
    append_event(data, clock)
    return clock


def sealed(data: Data, clock: FrozenClock | None = None) -> Any:
    result = data.run("seal", "--json", clock=clock or clock_at(2030, 4, 2))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


class TestHelp:
    @pytest.mark.parametrize(
        "command",
        [
            ["seal"],
            ["purge"],
            ["archive"],
            ["archive", "list"],
            ["archive", "verify"],
            ["archive", "show"],
        ],
    )
    def test_each_command_explains_itself(self, command: list[str]) -> None:
        result = runner.invoke(app, ["audit", *command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.output


class TestSeal:
    @pytest.mark.spec("AUD-2")
    def test_sealed_segments_verify_and_read_back_equal_to_the_database_byte_for_byte(
        self, data: Data
    ) -> None:
        report = sealed(data)
        # init's events (this month), January and February are closed; March is still open.
        assert [s["events"] for s in report["segments"]][1:] == [MONTHS[1], MONTHS[2]]
        assert report["pending_events"] == MONTHS[3]
        stored = data.events()
        keys = KeyringSegmentKeys(
            LocalKeyring.load_or_create(data.settings.keys_dir / "master.key")
        )
        verifiers = load_log_keys(
            data.settings.ledger_keys_dir, data.settings.ledger_origin
        ).verifiers
        archived = {}
        for name in data.segments():
            note = (data.archive / f"{name}.manifest").read_text()
            manifest, _ = open_manifest(note, verifiers, segment=name)
            opened = open_segment(
                (data.archive / f"{name}.segment").read_bytes(),
                keys=keys,
                origin=manifest.origin,
                first_seq=manifest.first_seq,
                last_seq=manifest.last_seq,
            )
            archived |= {e.seq: (e.event_id, e.body) for e in opened.entries}
        assert archived == {seq: stored[seq] for seq in archived}
        assert sorted(archived) == list(range(1, max(archived) + 1))

        verified = data.run("archive", "verify", "--json")
        assert verified.exit_code == 0, verified.output
        assert json.loads(verified.stdout)["events_verified"] == len(archived)
        shown = data.run("archive", "show", "--seq", "2", "--json")
        assert shown.exit_code == 0, shown.output
        document = json.loads(shown.stdout)
        assert (document["event_id"], base64_decode(document["event_body"])) == stored[2]
        assert document["proof"] is not None

    @pytest.mark.spec("ENC-3")
    def test_segments_are_encrypted_read_only_and_no_event_text_is_in_them(
        self, data: Data
    ) -> None:
        sealed(data)
        everything = b"".join(data.files().values())
        for _, body in data.events().values():
            assert body[20:60] not in everything
        assert b"ord-1-0" not in everything
        assert b"trader-1" not in everything
        for path in data.archive.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o444

    def test_sealing_again_never_rewrites_a_segment_and_closes_the_next_month(
        self, data: Data
    ) -> None:
        sealed(data)
        before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in data.archive.iterdir()}
        again = sealed(data, clock_at(2030, 5, 2))
        # The seal events of April closed March; nothing sealed before is touched.
        assert [s["events"] for s in again["segments"]] == [MONTHS[3]]
        for name, (inode, content) in before.items():
            path = data.archive / name
            assert (path.stat().st_ino, path.read_bytes()) == (inode, content)
        assert data.run("archive", "verify").exit_code == 0

    def test_a_file_already_at_a_segments_name_is_never_replaced(self, data: Data) -> None:
        report = sealed(data)
        next_first = report["segments"][-1]["last_seq"] + 1
        squatter = (
            data.archive / f"audit-{next_first:019d}-{next_first + MONTHS[3] - 1:019d}.segment"
        )
        squatter.write_bytes(b"not a segment")
        result = data.run("seal", clock=clock_at(2030, 5, 2))
        assert result.exit_code == 1
        assert squatter.name.removesuffix(".segment") in result.output
        assert "never replaced" in result.output
        assert squatter.read_bytes() == b"not a segment"

    def test_the_archive_is_listed_from_the_database(self, data: Data) -> None:
        report = sealed(data)
        listed = data.run("archive", "list", "--json")
        assert listed.exit_code == 0, listed.output
        names = [s["name"] for s in json.loads(listed.stdout)["segments"]]
        assert names == [s["name"] for s in report["segments"]]
        seal_events = data.query(
            "SELECT count(*) FROM audit_event WHERE event_type = 'audit:archive:sealed'"
        )
        assert seal_events[0][0] == len(names)


def base64_decode(value: str) -> bytes:
    return base64.b64decode(value)


def _flip(path: Path, offset: int) -> None:
    os.chmod(path, 0o644)
    content = bytearray(path.read_bytes())
    content[offset] ^= 0x01
    path.write_bytes(bytes(content))


def _truncate(path: Path) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes()[:-10])


def _swap(first: Path, second: Path) -> None:
    staged = first.with_name("staged")
    first.rename(staged)
    second.rename(first)
    staged.rename(second)


TAMPERINGS = {
    "flipped byte in a segment": lambda d, a, b: _flip(d / f"{a}.segment", -40),
    "flipped byte in a segment's header": lambda d, a, b: _flip(d / f"{a}.segment", 30),
    "truncated segment": lambda d, a, b: _truncate(d / f"{a}.segment"),
    "flipped byte in a manifest": lambda d, a, b: _flip(d / f"{a}.manifest", 60),
    "segments swapped": lambda d, a, b: _swap(d / f"{a}.segment", d / f"{b}.segment"),
    "manifests swapped": lambda d, a, b: _swap(d / f"{a}.manifest", d / f"{b}.manifest"),
    "segment renamed": lambda d, a, b: (d / f"{a}.segment").rename(d / f"{a}x.segment"),
    "segment removed": lambda d, a, b: (d / f"{a}.segment").unlink(),
}


def archive_state(data: Data) -> dict[str, tuple[bytes, int]]:
    """Every file of the archive: its bytes and its permission bits."""
    return {
        p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(data.archive.iterdir())
    }


def restore_archive(data: Data, state: dict[str, tuple[bytes, int]]) -> None:
    """Put the archive back exactly as `archive_state` saw it: tampered files go, the
    originals come back with their bytes and permissions."""
    for path in data.archive.iterdir():
        os.chmod(path, 0o644)
        path.unlink()
    for name, (content, mode) in state.items():
        path = data.archive / name
        path.write_bytes(content)
        os.chmod(path, mode)


class TestTampering:
    @pytest.mark.spec("AUD-2")
    def test_any_change_to_the_files_fails_verification_naming_the_segment(
        self, data: Data
    ) -> None:
        """Each tampering in TAMPERINGS, one at a time, on the same sealed archive: the
        archive is restored byte for byte (and verifies again) before the next one."""
        sealed(data)
        first, second = data.segments()[1:3]
        untampered = archive_state(data)
        sound = data.run("archive", "verify", "--json")
        assert sound.exit_code == 0, sound.output
        failures: list[str] = []
        for tampering, tamper in TAMPERINGS.items():
            tamper(data.archive, first, second)
            result = data.run("archive", "verify", "--json")
            report = json.loads(result.stdout) if result.exit_code == 1 else {}
            if result.exit_code != 1:
                failures.append(f"{tampering}: verify exited {result.exit_code}: {result.output}")
            elif report["ok"] is not False or report["failed_segment"] != first:
                failures.append(f"{tampering}: verify report {report} does not name {first}")
            # Reading an event of it back verifies it too, and refuses.
            shown = data.run("archive", "show", "--seq", first.split("-")[1].lstrip("0"))
            if shown.exit_code != 1 or first not in shown.output:
                failures.append(
                    f"{tampering}: show exited {shown.exit_code} without naming {first}: "
                    f"{shown.output}"
                )
            restore_archive(data, untampered)
            if archive_state(data) != untampered:
                pytest.fail(f"{tampering}: the archive could not be restored")
            again = data.run("archive", "verify", "--json")
            if again.exit_code != 0:
                pytest.fail(f"{tampering}: restored archive does not verify: {again.output}")
        assert not failures, "\n".join(failures)

    def test_an_event_changed_in_the_database_after_sealing_is_named(self, data: Data) -> None:
        sealed(data)
        name = data.segments()[1]
        seq = int(name.split("-")[1])
        _, body = data.events()[seq]
        altered = body.replace(b"ord-1-0", b"ord-1-X")
        asyncio.run(_tamper(data, seq, altered))
        result = data.run("archive", "verify")
        assert result.exit_code == 1
        assert f"segment {name}: its entry at seq {seq} differs" in result.output

    def test_segments_signed_by_a_key_not_trusted_fail_verification(
        self, data: Data, tmp_path: Path
    ) -> None:
        sealed(data)
        stranger = NoteSigner(data.settings.ledger_origin, Ed25519PrivateKey.generate())
        other = tmp_path / "other.vkeys"
        other.write_text(stranger.key.vkey + "\n")
        result = data.run("archive", "verify", "--public-key", str(other))
        assert result.exit_code == 1
        assert "its manifest does not verify" in result.output
        garbage = tmp_path / "garbage.vkeys"
        garbage.write_text("not a key\n")
        result = data.run("archive", "verify", "--public-key", str(garbage))
        assert result.exit_code == 2
        assert "not a file of verifier keys" in result.output


async def _rewrite_chain_hash(data: Data, seq: int) -> None:
    """As an attacker with the database's owner rights would: around the triggers."""
    engine = create_engine(data.settings.main_database_url)
    update = text("UPDATE audit_chain SET chain_hash = :h WHERE seq = :seq")
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("ALTER TABLE audit_chain DISABLE TRIGGER USER"))
                await conn.execute(update, {"h": bytes(32), "seq": seq})
                await conn.execute(text("ALTER TABLE audit_chain ENABLE TRIGGER USER"))
                return
            await conn.execute(text("DROP TRIGGER audit_chain_no_update"))
            await conn.execute(update, {"h": bytes(32), "seq": seq})
    finally:
        await engine.dispose()


async def _tamper(data: Data, seq: int, body: bytes) -> None:
    engine = create_engine(data.settings.main_database_url)
    try:
        await tamper_event_body(engine, seq=seq, new_body=body)
    finally:
        await engine.dispose()


class TestPurge:
    @pytest.mark.spec("AUD-2")
    @pytest.mark.spec("ENC-3")
    @pytest.mark.parametrize(
        "now",
        [clock_at(2030, 4, 2), clock_at(2036, 12, 31), clock_at(2037, 2, 28)],
        ids=["weeks later", "six years later", "a day short of seven years"],
    )
    def test_nothing_younger_than_seven_years_is_purged(self, data: Data, now: FrozenClock) -> None:
        sealed(data)
        before = data.events()
        result = data.run("purge", "--before", "2030-03-01", "--yes", clock=now)
        assert result.exit_code == 1
        assert "kept 7 years" in result.output
        assert "nothing was purged" in result.output
        assert data.events() == before
        assert data.query("SELECT count(*) FROM audit_archive_purge")[0][0] == 0

    def test_unsealed_events_are_never_purged(self, data: Data) -> None:
        before = data.rows()
        result = data.run("purge", "--before", "2030-03-01", "--yes", clock=clock_at(2037, 6, 1))
        assert result.exit_code == 1, result.output
        assert "not sealed" in result.output
        assert "tradeguard audit seal" in result.output
        assert data.rows() == before

    @pytest.mark.spec("AUD-2")
    def test_a_purge_after_seven_years_is_a_chained_event_and_the_ledger_still_verifies(
        self, data: Data
    ) -> None:
        report = sealed(data)
        stored = data.events()
        now = aged(data, clock_at(2037, 3, 2))
        result = data.run("purge", "--before", "2030-03-01", "--yes", "--json", clock=now)
        assert result.exit_code == 0, result.output
        purge = json.loads(result.stdout)
        through = report["segments"][-1]["last_seq"]
        assert (purge["first_seq"], purge["through_seq"]) == (1, through)
        assert purge["events"] == through
        remaining = data.events()
        assert min(remaining) == through + 1
        assert all(remaining[seq] == stored[seq] for seq in stored if seq > through)
        # The chain rows stay; the references of purged events are gone with them.
        assert data.query("SELECT count(*) FROM audit_chain")[0][0] >= len(stored)
        # The purge is itself a chained event naming the range and each manifest's hash.
        [(seq, body)] = data.query(
            "SELECT c.seq, e.body FROM audit_event e JOIN audit_chain c ON c.event_pk = e.pk "
            "WHERE e.event_type = 'audit:archive:purged'"
        )
        document = json.loads(bytes(body))
        assert document["data"]["through_seq"] == through
        manifests = {
            s["name"]: s["manifest_sha256"]
            for s in json.loads(data.run("archive", "list", "--json").stdout)["segments"]
        }
        assert {s["name"]: s["manifest_sha256"] for s in document["data"]["segments"]} == {
            name: digest for name, digest in manifests.items() if name in purge["segments"]
        }
        latest = data.query("SELECT max(tree_size) FROM audit_checkpoint")[0][0]
        assert latest >= seq  # signed over at once

        for workers in ("1", "2"):  # in this process, and ranges in worker processes
            verified = data.run("verify", "--json", "--workers", workers)
            assert verified.exit_code == 0, verified.output
            assert json.loads(verified.stdout)["purged_through"] == through
        assert data.run("archive", "verify").exit_code == 0
        # A purged event is read back and proven from the archive; the database refuses it.
        shown = data.run("archive", "show", "--seq", "2", "--json")
        assert shown.exit_code == 0, shown.output
        document = json.loads(shown.stdout)
        assert document["purged_from_database"] is True
        assert (document["event_id"], base64_decode(document["event_body"])) == stored[2]
        refused = data.run("prove", "inclusion", "--seq", "2")
        assert refused.exit_code == 1
        assert "purged" in refused.output
        assert "archive show --seq 2" in refused.output
        assert data.run("prove", "inclusion", "--seq", str(through + 1)).exit_code == 0

    def test_a_chain_hash_rewritten_at_the_purge_boundary_fails_verification(
        self, data: Data
    ) -> None:
        report = sealed(data)
        through = report["segments"][-1]["last_seq"]
        now = aged(data, clock_at(2037, 6, 1))
        purged = data.run("purge", "--before", "2030-03-01", "--yes", clock=now)
        assert purged.exit_code == 0, purged.output
        asyncio.run(_rewrite_chain_hash(data, through))
        result = data.run("verify", "--json")
        assert result.exit_code == 1
        report = json.loads(result.stdout)
        assert (report["failure"], report["first_bad_seq"]) == ("purge_boundary", through)

    def test_purged_rows_cannot_be_deleted_or_changed_outside_a_purge(self, data: Data) -> None:
        sealed(data)
        for statement in (
            "DELETE FROM audit_event",
            "DELETE FROM audit_event_ref",
            "DELETE FROM audit_archive_segment",
            "UPDATE audit_archive_segment SET max_occurred_ns = 0",
            "INSERT INTO audit_archive_purge (first_seq, through_seq, boundary_chain_hash, "
            "event_count, before_ns, purged_ns) VALUES (1, 2, :h, 2, 0, 0)",
        ):
            with pytest.raises(Exception, match=r"append-only|sealed segment"):
                data.execute(statement, h=bytes(32))

    def test_a_date_with_no_whole_sealed_segment_before_it_purges_nothing(self, data: Data) -> None:
        sealed(data)
        result = data.run("purge", "--before", "1999-01-01", "--yes", clock=clock_at(2037, 6, 1))
        assert result.exit_code == 1
        assert "nothing was purged" in result.output


# Each refused command line, and what its message must say.
BAD_INPUT: list[tuple[list[str], str]] = [
    (["purge", "--before", "yesterday", "--yes"], "--before is a date"),
    (["purge", "--before", "2030-02-30", "--yes"], "does not exist"),
    (["purge", "--before", "2030", "--yes"], "--before is a date"),
    (["purge", "--before", "2030-01-01T00:00:00", "--yes"], "--before is a date"),
    (["archive", "show", "--seq", "0"], "--seq"),
    (["archive", "verify", "/nonexistent/archive"], "not an archive directory"),
]


class TestBadInput:
    def test_bad_input_is_refused_with_a_clear_message_and_changes_nothing(
        self, data: Data
    ) -> None:
        before = data.rows()
        failures: list[str] = []
        for args, message in BAD_INPUT:
            case = " ".join(args)
            result = data.run(*args, clock=clock_at(2037, 6, 1))
            if result.exit_code != 2:
                failures.append(f"{case}: exited {result.exit_code}: {result.output}")
            if message not in result.output:
                failures.append(f"{case}: {message!r} not in {result.output!r}")
            if data.rows() != before:
                failures.append(f"{case}: the stored events changed")
        assert not failures, "\n".join(failures)

    def test_declining_the_confirmation_purges_nothing(self, data: Data) -> None:
        sealed(data)
        before = data.events()
        result = data.run(
            "purge", "--before", "2030-03-01", clock=clock_at(2037, 6, 1), stdin="n\n"
        )
        assert result.exit_code == 2
        assert data.events() == before

    def test_an_event_in_no_segment_is_reported(self, data: Data) -> None:
        sealed(data)
        result = data.run("archive", "show", "--seq", "999999")
        assert result.exit_code == 1
        assert "no sealed segment holds seq 999999" in result.output

    @pytest.mark.spec("AUD-2")
    def test_a_retention_below_seven_years_is_refused(
        self, data: Data, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_LEDGER_RETENTION_YEARS", "6")
        result = data.run("purge", "--before", "2020-01-01", "--yes", clock=clock_at(2037, 6, 1))
        assert result.exit_code == 2
        assert "at least 7" in result.output


def purged(data: Data) -> dict[str, Any]:
    """Seal, let the ledger run seven years, purge what is sealed before March 2030."""
    sealed(data)
    now = aged(data, clock_at(2037, 6, 1))
    result = data.run("purge", "--before", "2030-03-01", "--yes", "--json", clock=now)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def forge_purge(data: Data, through: int) -> None:
    """The attack of a database-only attacker: a purge record at a sealed segment's end typed
    by hand, and the events below it deleted (the triggers allow that below a purge)."""
    data.execute(
        "INSERT INTO audit_archive_purge (first_seq, through_seq, boundary_chain_hash, "
        "event_count, before_ns, purged_ns) SELECT 1, last_seq, last_chain_hash, last_seq, 0, 0 "
        "FROM audit_archive_segment WHERE last_seq = :t",
        t=through,
    )
    chained = "SELECT event_pk FROM audit_chain WHERE seq <= :t"
    data.execute(f"DELETE FROM audit_event_ref WHERE event_pk IN ({chained})", t=through)  # noqa: S608
    data.execute(f"DELETE FROM audit_event WHERE pk IN ({chained})", t=through)  # noqa: S608


def unsupported(data: Data) -> dict[str, Any]:
    result = data.run("verify", "--json")
    assert result.exit_code == 1, result.output
    report = dict(json.loads(result.stdout))
    assert report["failure"] == "purge_unsupported", report
    return report


class TestPurgeRecordsAreBackedByTheLedger:
    """REVIEW9 finding 2: a purge record typed by hand is tampering, named by both verifiers."""

    @pytest.mark.spec("AUD-2")
    def test_a_purge_record_with_no_purge_event_fails_both_verifications(self, data: Data) -> None:
        report = sealed(data)
        through = report["segments"][1]["last_seq"]
        forge_purge(data, through)
        assert min(data.events()) == through + 1  # the events are gone
        found = unsupported(data)
        assert found["first_bad_seq"] == through
        assert (
            f"purge of seq 1..{through} has no chained `audit:archive:purged`" in (found["detail"])
        )
        plain = data.run("verify")
        assert plain.exit_code == 1
        assert "TAMPERED" in plain.output
        archive = data.run("archive", "verify", "--json")
        assert archive.exit_code == 1, archive.output
        assert "has no chained `audit:archive:purged`" in json.loads(archive.stdout)["detail"]

    def test_a_purge_record_forged_after_a_real_purge_is_named(self, data: Data) -> None:
        purge = purged(data)
        assert data.run("verify").exit_code == 0
        assert data.run("archive", "verify").exit_code == 0
        # Seal the months after the purge, then forge a purge of them.
        append_event(data, clock_at(2037, 7, 2))
        later = sealed(data, clock_at(2037, 8, 2))
        through = later["segments"][0]["last_seq"]
        assert through > purge["through_seq"]
        data.execute(
            "INSERT INTO audit_archive_purge (first_seq, through_seq, boundary_chain_hash, "
            "event_count, before_ns, purged_ns) SELECT :f, last_seq, last_chain_hash, 1, 0, 0 "
            "FROM audit_archive_segment WHERE last_seq = :t",
            f=purge["through_seq"] + 1,
            t=through,
        )
        found = unsupported(data)
        assert (
            f"purge of seq {purge['through_seq'] + 1}..{through} has no chained"
            in (found["detail"])
        )
        assert data.run("archive", "verify").exit_code == 1

    def test_a_second_purge_vouches_for_the_first(self, data: Data) -> None:
        first = purged(data)
        append_event(data, clock_at(2037, 7, 2))
        append_event(data, clock_at(2037, 8, 2))  # closes July
        sealed(data, clock_at(2037, 8, 2))
        now = aged(data, clock_at(2045, 1, 2))
        second = data.run("purge", "--before", "2037-08-01", "--yes", "--json", clock=now)
        assert second.exit_code == 0, second.output
        assert json.loads(second.stdout)["first_seq"] == first["through_seq"] + 1
        # The first purge's event is purged now: the second one names it.
        verified = data.run("verify", "--json")
        assert verified.exit_code == 0, verified.output
        assert data.run("archive", "verify").exit_code == 0


class TestPurgeNeedsTheLedgersOwnEvidence:
    """REVIEW9 finding 3: the retention is judged by the ledger's events, not the clock alone."""

    @pytest.mark.spec("AUD-2")
    def test_a_clock_set_forward_alone_purges_nothing(self, data: Data) -> None:
        sealed(data)
        before = data.rows()
        # The clock says 2037, but the newest event the ledger holds is from April 2030.
        result = data.run("purge", "--before", "2030-03-01", "--yes", clock=clock_at(2037, 6, 1))
        assert result.exit_code == 1, result.output
        assert "the ledger does not agree" in result.output
        assert "at least the retention period after the newest event purged" in result.output
        assert "nothing was purged" in result.output
        assert data.rows() == before
        assert data.query("SELECT count(*) FROM audit_archive_purge")[0][0] == 0

    def test_a_ledger_not_yet_seven_years_on_purges_nothing(self, data: Data) -> None:
        sealed(data)
        append_event(data, clock_at(2036, 12, 31))  # six years and ten months of evidence
        before = data.rows()
        result = data.run("purge", "--before", "2030-03-01", "--yes", clock=clock_at(2037, 6, 1))
        assert result.exit_code == 1, result.output
        assert "the ledger does not agree" in result.output
        assert data.rows()[: len(before)] == before
        assert data.query("SELECT count(*) FROM audit_archive_purge")[0][0] == 0

    @pytest.mark.spec("AUD-2")
    def test_a_purge_dated_after_the_events_chained_after_it_fails_verification(
        self, data: Data
    ) -> None:
        # A clock set forward seven years, an event recorded on it, then the purge; the
        # ledger's later events, recorded on the real clock, give it away.
        purge = purged(data)
        append_event(data, clock_at(2030, 4, 3))
        assert data.run("checkpoint").exit_code == 0  # chains it
        found = unsupported(data)
        assert found["first_bad_seq"] == purge["through_seq"]
        assert "the purge ran on a clock set forward" in found["detail"]
        archive = data.run("archive", "verify")
        assert archive.exit_code == 1
        assert "clock set forward" in archive.output

    def test_events_a_few_minutes_out_of_order_are_no_alarm(self, data: Data) -> None:
        purged(data)  # at 2037-06-01 12:00
        # Recorded a minute before the purge's event, committed after it.
        append_event(data, FrozenClock(at(2037, 6, 1) - 60 * NS_PER_SECOND))
        assert data.run("checkpoint").exit_code == 0
        result = data.run("verify")
        assert result.exit_code == 0, result.output


def forge_vouched_purge(data: Data, through: int, *, future: FrozenClock | None) -> None:
    """The second review's attack: with write access to the database only, chain an event
    dated years ahead (the "evidence"), then an `audit:archive:purged` event naming the
    range and its boundary chain hash as a purge would, then type the purge record and
    delete the events below it."""
    boundary = data.query("SELECT chain_hash FROM audit_chain WHERE seq = :t", t=through)[0][0]

    async def append() -> None:
        engine = create_engine(data.settings.main_database_url)
        now = clock_at(2030, 4, 3)
        try:
            if future is not None:
                async with unit_of_work(session_factory(engine)) as session:
                    await Ledger(clock=future, ids=IdGenerator(future)).append(
                        session, LedgerEvent(type="system:clock:tick", data={})
                    )
            async with unit_of_work(session_factory(engine)) as session:
                await Ledger(clock=now, ids=IdGenerator(now)).append(
                    session,
                    LedgerEvent(
                        type="audit:archive:purged",
                        actor=Party("operator", "mallory"),
                        data={
                            "first_seq": 1,
                            "through_seq": through,
                            "boundary_chain_hash": bytes(boundary).hex(),
                            "retention_years": 7,
                            "previous_purges": [],
                        },
                    ),
                )
        finally:
            await engine.dispose()

    asyncio.run(append())
    assert data.run("checkpoint").exit_code == 0  # chains both, signs over them
    forge_purge(data, through)


class TestPurgeEventsAreSignedByTheLog:
    """Second review of issue #9, finding 1 (high): an `audit:archive:purged` event typed in
    by hand, vouched for by an event dated eight years ahead, let events younger than seven
    years be purged by hand with both verifiers passing."""

    @pytest.mark.spec("AUD-2")
    def test_a_purge_event_typed_in_by_hand_fails_both_verifications(self, data: Data) -> None:
        through = sealed(data)["segments"][1]["last_seq"]
        forge_vouched_purge(data, through, future=clock_at(2038, 4, 3))
        found = unsupported(data)
        assert "carries no authorization signed by the log's key" in found["detail"]
        archive = data.run("archive", "verify", "--json")
        assert archive.exit_code == 1, archive.output
        assert "carries no authorization" in json.loads(archive.stdout)["detail"]
        # Without the keys (a chain-only walk) the event dated ahead still gives it away.
        chain_only = data.run("verify", "--chain-only", "--json")
        assert chain_only.exit_code == 1, chain_only.output
        assert (
            "an event dated ahead was put before the purge"
            in (json.loads(chain_only.stdout)["detail"])
        )

    def test_an_authorization_copied_from_another_purge_does_not_fit(self, data: Data) -> None:
        purge = purged(data)
        append_event(data, clock_at(2037, 7, 2))
        later = sealed(data, clock_at(2037, 8, 2))["segments"][0]["last_seq"]
        [real] = [
            json.loads(body)["data"]["authorization"]
            for _, body in data.query(
                "SELECT event_type, body FROM audit_event WHERE event_type = 'audit:archive:purged'"
            )
        ]
        boundary = data.query("SELECT chain_hash FROM audit_chain WHERE seq = :t", t=later)[0][0]
        [first_boundary] = [
            bytes(row[0]).hex()
            for row in data.query("SELECT boundary_chain_hash FROM audit_archive_purge")
        ]

        async def append() -> None:
            engine = create_engine(data.settings.main_database_url)
            clock = clock_at(2037, 8, 3)
            try:
                async with unit_of_work(session_factory(engine)) as session:
                    await Ledger(clock=clock, ids=IdGenerator(clock)).append(
                        session,
                        LedgerEvent(
                            type="audit:archive:purged",
                            data={
                                "first_seq": purge["through_seq"] + 1,
                                "through_seq": later,
                                "boundary_chain_hash": bytes(boundary).hex(),
                                "retention_years": 7,
                                "previous_purges": [
                                    {
                                        "first_seq": purge["first_seq"],
                                        "through_seq": purge["through_seq"],
                                        "boundary_chain_hash": first_boundary,
                                    }
                                ],
                                "authorization": real,
                            },
                        ),
                    )
            finally:
                await engine.dispose()

        asyncio.run(append())
        assert data.run("checkpoint").exit_code == 0
        data.execute(
            "INSERT INTO audit_archive_purge (first_seq, through_seq, boundary_chain_hash, "
            "event_count, before_ns, purged_ns) SELECT :f, last_seq, last_chain_hash, 1, 0, 0 "
            "FROM audit_archive_segment WHERE last_seq = :t",
            f=purge["through_seq"] + 1,
            t=later,
        )
        found = unsupported(data)
        assert "carries an authorization for another purge" in found["detail"]


class TestExportAfterPurge:
    """REVIEW9 finding 7: the events kept after a purge export and verify offline."""

    def vkeys(self, data: Data, tmp_path: Path) -> Path:
        listed = data.run("keys", "list")
        assert listed.exit_code == 0, listed.output
        path = tmp_path / "ledger.vkeys"
        path.write_text(listed.stdout)
        return path

    def offline(self, bundle: Path, vkeys: Path) -> Any:
        result = runner.invoke(
            app, ["audit", "verify", "--bundle", str(bundle), "--public-key", str(vkeys)]
        )
        assert result.exit_code == 0, result.output
        return result

    @pytest.mark.spec("AUD-2")
    def test_export_starts_after_the_purge_and_verifies_offline(
        self, data: Data, tmp_path: Path
    ) -> None:
        purge = purged(data)
        first = purge["through_seq"] + 1
        vkeys = self.vkeys(data, tmp_path)
        default = data.run("export", str(tmp_path / "default"), "--json")
        assert default.exit_code == 0, default.output
        assert json.loads(default.stdout)["first_seq"] == first
        self.offline(tmp_path / "default", vkeys)
        given = data.run("export", str(tmp_path / "given"), "--from", str(first), "--json")
        assert given.exit_code == 0, given.output
        assert json.loads(given.stdout)["first_seq"] == first
        self.offline(tmp_path / "given", vkeys)

    def test_a_range_inside_the_purged_part_is_refused_pointing_at_the_archive(
        self, data: Data, tmp_path: Path
    ) -> None:
        purge = purged(data)
        through = purge["through_seq"]
        before = data.rows()
        failures: list[str] = []
        for n, where in enumerate(["first", "last purged", "across"]):
            start = {"first": 1, "last purged": through, "across": through - 1}[where]
            args = ["--from", str(start)] + (["--to", str(through)] if where != "across" else [])
            target = tmp_path / f"refused-{n}"
            result = data.run("export", str(target), *args)
            output = result.output
            if result.exit_code != 1:
                failures.append(f"{where}: exited {result.exit_code}: {output}")
            for wanted in (
                f"seq 1..{through} were purged from the database",
                f"audit archive show --seq {start}",
            ):
                if wanted not in output:
                    failures.append(f"{where}: {wanted!r} not in {output!r}")
            if "Traceback" in output:
                failures.append(f"{where}: a traceback: {output}")
            if target.exists() and any(target.iterdir()):
                failures.append(f"{where}: files written to {target}")
            if data.rows() != before:
                failures.append(f"{where}: the stored events changed")
        assert not failures, "\n".join(failures)
