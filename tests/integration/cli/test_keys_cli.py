"""`tradeguard keys` on a real data directory (SQLite): rotate and rewrap end to end, a
rewrap killed half-way resumes, and bad input is refused with a clear message, changing
nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.providers import PROTECTED_MAGIC, create_master_key_file, read_master_key
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.notify.service import BODY_PURPOSE, seal_context

runner = CliRunner()
ROWS = 400


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRADEGUARD_KEY_ACTIVATION_DELAY_SECONDS", "0")
    monkeypatch.setenv("TRADEGUARD_KEY_RETIRE_GRACE_SECONDS", "0")
    directory = tmp_path / "var"
    result = runner.invoke(app, ["init", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output
    # The first command that needs the keyring makes the master key and the first keys.
    result = runner.invoke(app, ["keys", "status", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output
    return directory


def settings_of(data_dir: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        data_dir=data_dir,
        key_activation_delay_seconds=0,
        key_retire_grace_seconds=0,
        _env_file=None,
    )


async def seed(data_dir: Path, count: int) -> dict[str, str]:
    settings = settings_of(data_dir)
    engine = create_engine(settings.main_database_url)
    clock = SystemClock()
    try:
        sessions = session_factory(engine)
        identity = await start_identity(
            settings, clock=clock, ids=IdGenerator(clock), sessions=sessions
        )
        bodies = {}
        async with unit_of_work(sessions) as session:
            for n in range(count):
                body = f"code {n:06d}"
                message = await identity.deps.notifier.enqueue_sms(
                    session, to=f"+1415555{n:04d}", template="auth.sms_otp", body=body
                )
                bodies[message] = body
        return bodies
    finally:
        await engine.dispose()


async def read_bodies(data_dir: Path) -> dict[str, str]:
    settings = settings_of(data_dir)
    engine = create_engine(settings.main_database_url)
    clock = SystemClock()
    try:
        sessions = session_factory(engine)
        identity = await start_identity(
            settings, clock=clock, ids=IdGenerator(clock), sessions=sessions
        )
        keyring = identity.deps.keyring
        database = sqlite3.connect(settings.data_dir / "tradeguard.db")
        try:
            rows = database.execute("SELECT id, body_enc FROM notify_outbox").fetchall()
        finally:
            database.close()
        return {
            i: keyring.decrypt(bytes(b), purpose=BODY_PURPOSE, context=seal_context(i)).decode()
            for i, b in rows
        }
    finally:
        await engine.dispose()


def query(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    database = sqlite3.connect(data_dir / "tradeguard.db")
    try:
        return database.execute(sql).fetchall()
    finally:
        database.close()


def body_versions(data_dir: Path) -> dict[int, int]:
    rows = query(data_dir, "SELECT body_enc FROM notify_outbox")
    counts: dict[int, int] = {}
    for (blob,) in rows:
        version = int.from_bytes(bytes(blob)[3:7], "big")  # type: ignore[call-overload]
        counts[version] = counts.get(version, 0) + 1
    return counts


def event_types(data_dir: Path) -> list[str]:
    return [
        json.loads(bytes(b))["type"] for (b,) in query(data_dir, "SELECT body FROM audit_event")
    ]  # type: ignore[call-overload]


REWRAPPED_SO_FAR = "SELECT rows_rewrapped FROM crypto_rewrap_progress"


def rows_rewrapped(progress: list[tuple[Any, ...]]) -> int:
    """Rows rewrapped so far, from REWRAPPED_SO_FAR's result."""
    return int(progress[0][0]) if progress else 0


def kill_when(process: subprocess.Popen[bytes], reached: Callable[[], bool]) -> None:
    """SIGKILL a running command once `reached()` (or it ended on its own: then the caller's
    assertions fail)."""
    try:
        for _ in range(3000):
            if reached() or process.poll() is not None:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.communicate()  # reaps it and closes its pipes
    assert process.returncode == -signal.SIGKILL


def cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tradeguard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


class TestRotateAndRewrap:
    def test_rotate_rewrap_retire_and_every_value_still_reads(self, data_dir: Path) -> None:
        bodies = asyncio.run(seed(data_dir, 30))
        result = runner.invoke(
            app, ["keys", "rotate", "--class", "notify_body", "--data-dir", str(data_dir)]
        )
        assert result.exit_code == 0, result.output
        assert "notify_body" in result.output
        assert "v2" in result.output
        result = runner.invoke(
            app,
            [
                "keys",
                "rewrap",
                "--class",
                "notify_body",
                "--batch-size",
                "7",
                "--data-dir",
                str(data_dir),
            ],
        )
        assert result.exit_code == 0, result.output
        assert "30 values re-encrypted under v2" in result.output
        assert "retired v0, v1" in result.output
        assert body_versions(data_dir) == {2: 30}
        assert asyncio.run(read_bodies(data_dir)) == bodies
        status = runner.invoke(app, ["keys", "status", "--data-dir", str(data_dir)])
        assert status.exit_code == 0
        lines = [
            line.split() for line in status.output.splitlines() if line.startswith("notify_body ")
        ]
        assert [(cells[1], cells[2], cells[3]) for cells in lines] == [
            ("data", "1", "retired"),
            ("data", "2", "encrypting"),
            ("index", "1", "indexing"),
            ("legacy", "0", "retired"),
        ]
        usage = runner.invoke(
            app, ["keys", "usage", "--class", "notify_body", "--data-dir", str(data_dir)]
        )
        assert "v2: 30" in usage.output

    def test_a_rewrap_killed_half_way_resumes_where_it_stopped(self, data_dir: Path) -> None:
        bodies = asyncio.run(seed(data_dir, ROWS))
        assert (
            runner.invoke(
                app, ["keys", "rotate", "-c", "notify_body", "--data-dir", str(data_dir)]
            ).exit_code
            == 0
        )
        process = cli(
            "keys",
            "rewrap",
            "-c",
            "notify_body",
            "--batch-size",
            "10",
            "--pause-ms",
            "30",
            "--data-dir",
            str(data_dir),
        )
        kill_when(process, lambda: rows_rewrapped(query(data_dir, REWRAPPED_SO_FAR)) >= 50)
        # Killed half-way: committed batches moved, the rest not, all of it readable.
        ((cursor, rewrapped, finished),) = query(
            data_dir, "SELECT cursor, rows_rewrapped, finished_ns FROM crypto_rewrap_progress"
        )
        assert finished is None
        assert cursor is not None
        versions = body_versions(data_dir)
        assert versions[2] == rewrapped
        assert 0 < versions[2] < ROWS
        assert asyncio.run(read_bodies(data_dir)) == bodies

        again = cli(
            "keys", "rewrap", "-c", "notify_body", "--batch-size", "50", "--data-dir", str(data_dir)
        )
        _out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err.decode()
        # It went on from the cursor: the two runs together moved each value once.
        ((total, finished_ns),) = query(
            data_dir, "SELECT rows_rewrapped, finished_ns FROM crypto_rewrap_progress"
        )
        assert total == ROWS
        assert finished_ns is not None
        assert body_versions(data_dir) == {2: ROWS}
        assert asyncio.run(read_bodies(data_dir)) == bodies
        types = event_types(data_dir)
        assert types.count("crypto:rewrap:started") == 1
        assert types.count("crypto:rewrap:resumed") == 1
        assert types.count("crypto:rewrap:finished") == 1


class TestIndexKeys:
    def test_rotate_index_reindex_and_the_old_index_version_retires(self, data_dir: Path) -> None:
        result = runner.invoke(
            app, ["keys", "rotate-index", "--class", "tax_id", "--data-dir", str(data_dir)]
        )
        assert result.exit_code == 0, result.output
        assert "tax_id" in result.output
        assert "index v2" in result.output
        assert index_states(data_dir) == [("1", "lookup-only"), ("2", "indexing")]
        result = runner.invoke(
            app, ["keys", "reindex", "--class", "tax_id", "--data-dir", str(data_dir)]
        )
        assert result.exit_code == 0, result.output
        assert "recomputed under index v2" in result.output
        assert "retired index v1" in result.output
        assert index_states(data_dir) == [("1", "retired"), ("2", "indexing")]
        # Retired stays retired: a second reindex retires nothing more and changes nothing.
        before = query(data_dir, "SELECT * FROM crypto_key_version ORDER BY 1, 2, 3")
        result = runner.invoke(
            app, ["keys", "reindex", "--class", "tax_id", "--data-dir", str(data_dir)]
        )
        assert result.exit_code == 0, result.output
        assert "no index version retired" in result.output
        after = query(data_dir, "SELECT * FROM crypto_key_version ORDER BY 1, 2, 3")
        assert [r[:9] for r in after] == [r[:9] for r in before]
        types = event_types(data_dir)
        assert types.count("crypto:index:rotated") == 1
        assert types.count("crypto:index:retired") == 1
        assert types.count("crypto:index:usage_counted") == 2


def index_states(data_dir: Path) -> list[tuple[str, str]]:
    status = runner.invoke(app, ["keys", "status", "--data-dir", str(data_dir)])
    assert status.exit_code == 0, status.output
    return [
        (cells[2], cells[3])
        for cells in (line.split() for line in status.output.splitlines())
        if cells[:2] == ["tax_id", "index"]
    ]


class TestSplitAndCombine:
    def test_shares_rebuild_the_master_key_and_both_are_audited(
        self, data_dir: Path, tmp_path: Path
    ) -> None:
        shares = tmp_path / "shares"
        result = runner.invoke(
            app,
            [
                "keys",
                "split",
                "--threshold",
                "2",
                "--shares",
                "3",
                "--out-dir",
                str(shares),
                "--data-dir",
                str(data_dir),
            ],
        )
        assert result.exit_code == 0, result.output
        fingerprint = result.output.split("fingerprint ")[1].split()[0]
        files = sorted(shares.iterdir())
        assert len(files) == 3
        assert all((f.stat().st_mode & 0o777) == 0o600 for f in files)
        rebuilt = tmp_path / "rebuilt.key"
        result = runner.invoke(
            app,
            [
                "keys",
                "combine",
                "--out",
                str(rebuilt),
                "--fingerprint",
                fingerprint,
                "--data-dir",
                str(data_dir),
            ],
            input=files[0].read_text() + files[2].read_text(),
        )
        assert result.exit_code == 0, result.output
        assert rebuilt.read_bytes() == (data_dir / "keys" / "master.key").read_bytes()
        assert (rebuilt.stat().st_mode & 0o777) == 0o600
        types = event_types(data_dir)
        assert "crypto:master:split" in types
        assert "crypto:master:combined" in types
        # No share and no key is in the ledger.
        ledger = b"".join(bytes(b) for (b,) in query(data_dir, "SELECT body FROM audit_event"))  # type: ignore[call-overload]
        assert files[0].read_text().split()[4].encode() not in ledger


class TestCombineUnderAPassphrase:
    def test_the_rebuilt_key_is_sealed_like_the_key_file_and_opens_with_the_passphrase(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_MASTER_KEY_PASSPHRASE", "quiet meadow lantern")
        directory = tmp_path / "var"
        assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0
        result = runner.invoke(app, ["keys", "status", "--data-dir", str(directory)])
        assert result.exit_code == 0, result.output
        key = directory / "keys" / "master.key"
        assert key.read_bytes().startswith(PROTECTED_MAGIC)
        split = runner.invoke(
            app,
            ["keys", "split", "--threshold", "2", "--shares", "2", "--data-dir", str(directory)],
        )
        assert split.exit_code == 0, split.output
        shares = [line.split(": ", 1)[1] for line in split.output.splitlines() if ": " in line]
        rebuilt = tmp_path / "rebuilt.key"
        result = runner.invoke(
            app,
            ["keys", "combine", "--out", str(rebuilt), "--data-dir", str(directory)],
            input="\n".join(shares) + "\n",
        )
        assert result.exit_code == 0, result.output
        assert "sealed under the master-key passphrase" in result.output
        data = rebuilt.read_bytes()
        assert data.startswith(PROTECTED_MAGIC)
        master = read_master_key(key, passphrase="quiet meadow lantern")
        assert master not in data
        assert read_master_key(rebuilt, passphrase="quiet meadow lantern") == master
        # Put in place, the rebuilt key serves; a bare key in its place is refused.
        key.unlink()
        rebuilt.rename(key)
        result = runner.invoke(app, ["keys", "status", "--data-dir", str(directory)])
        assert result.exit_code == 0, result.output
        key.unlink()
        create_master_key_file(key, master, None)
        result = runner.invoke(app, ["keys", "status", "--data-dir", str(directory)])
        assert result.exit_code == 2
        assert "not sealed under a passphrase" in result.output
        assert "Traceback" not in result.output

    def test_a_bare_key_is_sealed_by_split_then_combine_with_the_passphrase_set(
        self, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The procedure docs/security/key-management.md gives for sealing an existing key.
        key = data_dir / "keys" / "master.key"
        master = key.read_bytes()
        split = runner.invoke(
            app, ["keys", "split", "--threshold", "2", "--shares", "2", "--data-dir", str(data_dir)]
        )
        assert split.exit_code == 0, split.output
        shares = [line.split(": ", 1)[1] for line in split.output.splitlines() if ": " in line]
        monkeypatch.setenv("TRADEGUARD_MASTER_KEY_PASSPHRASE", "quiet meadow lantern")
        sealed = key.with_name("master.key.sealed")
        result = runner.invoke(
            app,
            ["keys", "combine", "--out", str(sealed), "--data-dir", str(data_dir)],
            input="\n".join(shares) + "\n",
        )
        assert result.exit_code == 0, result.output
        assert "not recorded in a ledger" in result.output
        assert key.read_bytes() == master  # the key in place is untouched
        sealed.replace(key)
        result = runner.invoke(app, ["keys", "status", "--data-dir", str(data_dir)])
        assert result.exit_code == 0, result.output
        assert read_master_key(key, passphrase="quiet meadow lantern") == master


class TestBadInput:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["keys", "rotate", "--class", "nope"], "unknown data class 'nope'"),
            (["keys", "rewrap", "--class", "nope"], "unknown data class 'nope'"),
            (["keys", "rotate-index", "--class", "nope"], "unknown data class 'nope'"),
            (["keys", "reindex", "--class", "nope"], "unknown data class 'nope'"),
            (
                ["keys", "rotate-index", "--class", "card_vault"],
                "the card_vault keys live in the card vault's own database, not here",
            ),
            (["keys", "reindex", "--class", "tax_id", "--batch-size", "0"], "--batch-size"),
            (["keys", "usage", "-c", "tax_id", "-c", "pan"], "unknown data class 'pan'"),
            (
                ["keys", "rotate", "--class", "card_vault"],
                "the card_vault keys live in the card vault's own database, not here",
            ),
            (
                ["keys", "split", "--threshold", "3", "--shares", "2"],
                "--threshold 3 is more than --shares 2",
            ),
        ],
    )
    def test_bad_input_is_refused_clearly_and_changes_nothing(
        self, data_dir: Path, args: list[str], message: str
    ) -> None:
        before = query(data_dir, "SELECT * FROM crypto_key_version ORDER BY 1, 2, 3")
        result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
        assert result.exit_code == 2
        assert message in result.output
        assert "Traceback" not in result.output
        assert query(data_dir, "SELECT * FROM crypto_key_version ORDER BY 1, 2, 3") == before

    def test_the_platforms_database_holds_no_card_vault_key(self, data_dir: Path) -> None:
        classes = {row[0] for row in query(data_dir, "SELECT data_class FROM crypto_key_version")}
        assert "tax_id" in classes
        assert "card_vault" not in classes

    def test_shares_that_do_not_combine_write_no_key(self, data_dir: Path, tmp_path: Path) -> None:
        out = tmp_path / "rebuilt.key"
        result = runner.invoke(
            app, ["keys", "combine", "--out", str(out)], input="academic acid acrobat\n"
        )
        assert result.exit_code == 2
        assert "the shares do not combine" in result.output
        assert not out.exists()

    def test_combine_never_overwrites_a_key(self, data_dir: Path) -> None:
        key = data_dir / "keys" / "master.key"
        before = key.read_bytes()
        result = runner.invoke(app, ["keys", "combine", "--out", str(key)], input="x\n")
        assert result.exit_code == 2
        assert "already exists" in result.output
        assert key.read_bytes() == before

    def test_combine_onto_a_dangling_symlink_is_refused_clearly(
        self, data_dir: Path, tmp_path: Path
    ) -> None:
        out = tmp_path / "rebuilt.key"
        out.symlink_to(tmp_path / "nowhere")
        result = runner.invoke(app, ["keys", "combine", "--out", str(out)], input="x\n")
        assert result.exit_code == 2
        assert "already exists" in result.output
        assert "Traceback" not in result.output
        assert not (tmp_path / "nowhere").exists()

    def test_a_master_key_file_others_can_read_is_refused(self, data_dir: Path) -> None:
        key = data_dir / "keys" / "master.key"
        key.chmod(0o644)
        result = runner.invoke(app, ["keys", "status", "--data-dir", str(data_dir)])
        assert result.exit_code != 0
        assert "chmod 600" in result.output
        assert "Traceback" not in result.output

    def test_no_database_is_a_usage_error(self, tmp_path: Path) -> None:
        result = runner.invoke(app, ["keys", "rotate", "--data-dir", str(tmp_path / "none")])
        assert result.exit_code == 2
        assert "no tradeguard database here" in result.output
