"""`tradeguard audit export` and `tradeguard audit verify --bundle` on SQLite and PostgreSQL:
a bundle exported through the CLI verifies offline (ours and the independent verifier written
from docs/audit-bundle.md), also after a subject was forgotten; an altered ledger exports to
a bundle naming the altered entry; verification never opens a database or a socket."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.support import bundle_reader
from tests.support.databases import emptied_postgres_database
from tests.support.ledger import tamper_event_body
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.ledger.domain import LedgerEvent, Party, PersonalData
from tradeguard.ledger.personal.keys import SubjectKeys
from tradeguard.ledger.service import Ledger

runner = CliRunner()

ADA = Party("user", "0190c5a0-0000-7000-8000-00000000000a")
ADA_EMAIL = "ada.lovelace@example.com"


@dataclass(frozen=True)
class Platform:
    """A data directory and the environment that points the CLI at its database."""

    data_dir: Path
    env: dict[str, str]

    @property
    def settings(self) -> Settings:
        url = self.env.get("TRADEGUARD_DATABASE_URL")
        return Settings(data_dir=self.data_dir, database_url=url, _env_file=None)  # type: ignore[call-arg]

    def run(self, *args: str) -> Result:
        return runner.invoke(app, [*args, "--data-dir", str(self.data_dir)], env=self.env)

    def append(self, count: int, *, personal: bool = False) -> None:
        asyncio.run(_append(self.settings, count, personal=personal))

    def checkpoint(self) -> int:
        result = self.run("audit", "checkpoint", "--json")
        assert result.exit_code == 0, result.output
        return int(json.loads(result.stdout)["tree_size"])


async def _append(settings: Settings, count: int, *, personal: bool) -> None:
    engine = create_engine(settings.main_database_url)
    clock = SystemClock()
    keyring = LocalKeyring.load_or_create(settings.keys_dir / "master.key")
    ids = IdGenerator(clock)
    ledger = Ledger(clock=clock, ids=ids, subject_keys=SubjectKeys(keyring, clock=clock, ids=ids))
    try:
        async with unit_of_work(session_factory(engine)) as session:
            for n in range(count):
                await ledger.append(
                    session,
                    LedgerEvent(
                        "identity:login:succeeded" if personal else "trading:order:placed",
                        {"n": n, "qty": "100"},
                        actor=ADA,
                        subject=ADA,
                        personal=PersonalData(ADA, {"email": ADA_EMAIL}) if personal else None,
                    ),
                )
    finally:
        await engine.dispose()


def _postgres_url() -> str:
    """A database of this module's own, emptied before each test (the CLI takes a URL, not a
    schema; the sequencer's horizon is per database)."""
    return emptied_postgres_database("bundle")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Platform:
    env = {} if request.param == "sqlite" else {"TRADEGUARD_DATABASE_URL": _postgres_url()}
    made = Platform(tmp_path / "var", env)
    result = made.run("init")
    assert result.exit_code == 0, result.output
    return made


@pytest.fixture
def vkeys(platform: Platform, tmp_path: Path) -> Path:
    result = platform.run("audit", "keys", "list")
    assert result.exit_code == 0, result.output
    path = tmp_path / "ledger.vkeys"
    path.write_text(result.stdout)
    return path


@pytest.fixture
def sqlite_platform(tmp_path: Path) -> Platform:
    made = Platform(tmp_path / "var", {})
    assert made.run("init").exit_code == 0
    return made


def verify(bundle: Path, vkeys: Path, *extra: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(
        app,
        ["audit", "verify", "--bundle", str(bundle), "--public-key", str(vkeys), *extra],
        env=env,
    )


def one_line_failure(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


class TestRoundTrip:
    @pytest.mark.spec("AUD-2")
    def test_an_exported_ledger_verifies_offline_with_the_public_key(
        self, platform: Platform, vkeys: Path, tmp_path: Path
    ) -> None:
        platform.append(12)
        first = platform.checkpoint()
        platform.append(9, personal=True)
        second = platform.checkpoint()
        platform.append(4)  # chained, not yet checkpointed: not exported by default
        exported = platform.run("audit", "export", str(tmp_path / "whole"), "--json")
        ranged = platform.run(
            "audit", "export", str(tmp_path / "range"), "--from", "3", "--to", str(first + 2)
        )
        whole_report = verify(tmp_path / "whole", vkeys, "--json")
        range_report = verify(tmp_path / "range", vkeys)

        assert exported.exit_code == 0, exported.output
        summary = json.loads(exported.stdout)
        assert (summary["first_seq"], summary["last_seq"]) == (1, second)
        assert summary["checkpoints"] == [first, second]
        assert summary["keys"] == [vkeys.read_text().strip()]
        assert summary["unknown_signers"] == []
        assert whole_report.exit_code == 0, whole_report.output
        report = json.loads(whole_report.stdout)
        assert (report["ok"], report["verified"]) == (True, second)
        assert [c["tree_size"] for c in report["checkpoints"]] == [first, second]
        assert ranged.exit_code == 0, ranged.output
        assert range_report.exit_code == 0, range_report.output
        assert f"seq 3..{first + 2} ({first} entries)" in range_report.stdout
        # A third party's verifier, written from the format document, agrees.
        vkey = vkeys.read_text().strip()
        assert bundle_reader.verify(tmp_path / "whole", [vkey]) is None
        assert bundle_reader.verify(tmp_path / "range", [vkey]) is None

    @pytest.mark.spec("AUD-2")
    def test_an_altered_ledger_exports_to_a_bundle_that_names_the_altered_entry(
        self, platform: Platform, vkeys: Path, tmp_path: Path
    ) -> None:
        platform.append(20)
        platform.checkpoint()

        async def alter() -> None:
            engine = create_engine(platform.settings.main_database_url)
            try:
                await tamper_event_body(engine, seq=7, new_body=b'{"forged":true}')
            finally:
                await engine.dispose()

        asyncio.run(alter())
        exported = platform.run("audit", "export", str(tmp_path / "b"))
        result = verify(tmp_path / "b", vkeys)

        assert exported.exit_code == 0, exported.output
        line = one_line_failure(result, 1)
        assert line.startswith("NOT VERIFIED: first bad entry: seq 7 (entry_altered)")
        assert bundle_reader.verify(tmp_path / "b", [vkeys.read_text().strip()]) is not None

    @pytest.mark.spec("ENC-3", "AUD-2")
    def test_a_bundle_of_a_ledger_with_a_forgotten_subject_verifies(
        self, platform: Platform, vkeys: Path, tmp_path: Path
    ) -> None:
        platform.append(6, personal=True)
        forgotten = platform.run(
            "audit", "forget", f"user:{ADA.id}", "--reason", "erasure request 7", "--yes"
        )
        platform.checkpoint()
        exported = platform.run("audit", "export", str(tmp_path / "b"))
        result = verify(tmp_path / "b", vkeys, "--json")

        assert forgotten.exit_code == 0, forgotten.output
        assert exported.exit_code == 0, exported.output
        assert result.exit_code == 0, result.output
        entries = (tmp_path / "b" / "entries.jsonl").read_bytes()
        sealed = [json.loads(line) for line in entries.splitlines() if b'"personal"' in line]
        assert len(sealed) == 6
        assert all(e["personal"]["fields"] == ["email"] for e in sealed)
        # Only the ciphertext travels: the address is in no file of the bundle.
        for path in (tmp_path / "b").rglob("*"):
            assert not path.is_file() or ADA_EMAIL.encode() not in path.read_bytes()


class TestExportRefusals:
    def test_a_non_empty_directory_is_never_written_over(
        self, sqlite_platform: Platform, tmp_path: Path
    ) -> None:
        sqlite_platform.append(3)
        sqlite_platform.checkpoint()
        target = tmp_path / "taken"
        target.mkdir()
        (target / "report.pdf").write_text("keep me")
        result = sqlite_platform.run("audit", "export", str(target))
        assert result.exit_code == 2
        assert "is not empty" in result.stderr
        assert [p.name for p in target.iterdir()] == ["report.pdf"]
        empty = tmp_path / "empty"
        empty.mkdir()
        assert sqlite_platform.run("audit", "export", str(empty)).exit_code == 0
        assert (empty / "bundle.json").is_file()

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["--from", "5", "--to", "3"], 2, "--from (5) is after --to (3)"),
            (["--to", "999"], 1, "seq 999 is newer than the latest checkpoint (tree size 4)"),
            (["--from", "0"], 2, ""),
            (["--to", "x"], 2, ""),
        ],
    )
    def test_bad_ranges_are_refused_and_write_nothing(
        self, sqlite_platform: Platform, tmp_path: Path, args: list[str], code: int, message: str
    ) -> None:
        sqlite_platform.append(3)
        sqlite_platform.checkpoint()
        result = sqlite_platform.run("audit", "export", str(tmp_path / "b"), *args)
        assert result.exit_code == code, result.output
        assert message in " ".join(result.output.split())
        assert "Traceback" not in result.output
        assert not (tmp_path / "b").exists()
        assert [p for p in tmp_path.iterdir() if p.name.startswith(".b.")] == []

    def test_without_a_checkpoint_there_is_nothing_to_export(
        self, sqlite_platform: Platform, tmp_path: Path
    ) -> None:
        result = sqlite_platform.run("audit", "export", str(tmp_path / "b"))
        assert one_line_failure(result, 1) == (
            "error: no checkpoint has been signed yet: sign one (`tradeguard audit checkpoint`)"
        )
        assert not (tmp_path / "b").exists()

    def test_a_place_that_cannot_be_written_is_one_line_not_a_traceback(
        self, sqlite_platform: Platform, tmp_path: Path
    ) -> None:
        sqlite_platform.append(3)
        sqlite_platform.checkpoint()
        # Nobody, root included, can make a directory in /proc.
        result = sqlite_platform.run("audit", "export", "/proc/tradeguard-test/b")
        assert "Traceback" not in result.output
        assert one_line_failure(result, 1).startswith("error: /proc/tradeguard-test")

    def test_without_a_database_nothing_is_created(self, tmp_path: Path) -> None:
        result = runner.invoke(
            app, ["audit", "export", str(tmp_path / "b"), "--data-dir", str(tmp_path / "none")]
        )
        assert result.exit_code == 2
        assert "no tradeguard database here" in result.stderr
        assert not (tmp_path / "none").exists()
        assert not (tmp_path / "b").exists()


@pytest.fixture
def bundle(sqlite_platform: Platform, tmp_path: Path) -> tuple[Path, Path]:
    """An exported bundle (two checkpoints) and the log's vkeys file."""
    sqlite_platform.append(10)
    sqlite_platform.checkpoint()
    sqlite_platform.append(10)
    sqlite_platform.checkpoint()
    keys = sqlite_platform.run("audit", "keys", "list")
    (tmp_path / "ledger.vkeys").write_text(keys.stdout)
    assert sqlite_platform.run("audit", "export", str(tmp_path / "bundle")).exit_code == 0
    return tmp_path / "bundle", tmp_path / "ledger.vkeys"


def tree_bytes(directory: Path) -> dict[str, bytes]:
    """Every file under a directory, by relative path: what a refused verify must not change."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# Each refused `audit verify` command line ({names} filled in by the test), and what its one
# line says.
BAD_VERIFY: list[tuple[list[str], str]] = [
    (["--bundle", "{bundle}"], "--bundle needs --public-key FILE"),
    (["--bundle", "{bundle}", "--public-key", "{vkeys}", "--chain-only"], "not a bundle"),
    (["--bundle", "{missing}", "--public-key", "{vkeys}"], "no such bundle directory"),
    (["--bundle", "{bundle}", "--public-key", "{missing}"], "no such file"),
    (["--bundle", "{bundle}", "--public-key", "{manifest}"], "a verifier key reads"),
    (["--bundle", "{bundle}", "--public-key", "{huge}"], "is at most 1048576 bytes"),
    (["--bundle", "{bundle}", "--public-key", "/dev/zero"], "is at most 1048576 bytes"),
    (["--bundle", "{bundle}", "--public-key", "{vkeys}", "--workers", "2"], "not a bundle"),
]


class TestVerifyRefusals:
    @pytest.mark.spec("AUD-3")
    def test_another_public_key_does_not_verify_the_bundle(
        self, bundle: tuple[Path, Path], tmp_path: Path
    ) -> None:
        directory, _ = bundle
        other = Platform(tmp_path / "other", {})
        assert other.run("init").exit_code == 0
        (tmp_path / "other.vkeys").write_text(other.run("audit", "keys", "list").stdout)
        line = one_line_failure(verify(directory, tmp_path / "other.vkeys"), 1)
        assert line.startswith("NOT VERIFIED: (untrusted_checkpoint): checkpoints/")
        assert "no signature of a trusted key" in line

    @pytest.mark.spec("AUD-3")
    def test_a_tampered_checkpoint_signature_fails(self, bundle: tuple[Path, Path]) -> None:
        directory, vkeys = bundle
        [path, _] = sorted((directory / "checkpoints").iterdir())
        note = path.read_text()
        # The signature's last base64 characters, changed (still valid base64).
        cut = note.rstrip("\n")
        flipped = cut[:-3] + ("A" if cut[-3] != "A" else "B") + cut[-2:] + "\n"
        path.write_text(flipped)
        line = one_line_failure(verify(directory, vkeys), 1)
        assert "(untrusted_checkpoint)" in line
        assert "does not verify" in line

    @pytest.mark.parametrize(
        ("damage", "message"),
        [
            ("truncate-entries", "(malformed): entries.jsonl is cut short in the entry of seq"),
            ("truncate-chain", "(malformed): chain.jsonl line 15 (seq 15) is cut short"),
            ("garbage-manifest", "(malformed): bundle.json is not UTF-8 JSON"),
            ("garbage-proofs", "(malformed): proofs.json is not UTF-8 JSON"),
            ("empty-entries", "(missing_entry): entries.jsonl ends before seq 1"),
            ("no-manifest", "(malformed): bundle.json is missing"),
            ("binary-checkpoint", "is not UTF-8 text"),
        ],
    )
    def test_damaged_files_get_one_clear_line_and_exit_1(
        self, bundle: tuple[Path, Path], damage: str, message: str
    ) -> None:
        directory, vkeys = bundle
        entries, chain = directory / "entries.jsonl", directory / "chain.jsonl"
        if damage == "truncate-entries":
            entries.write_bytes(entries.read_bytes()[:-40])
        elif damage == "truncate-chain":
            lines = chain.read_bytes().split(b"\n")
            chain.write_bytes(b"".join(line + b"\n" for line in lines[:14]) + lines[14][:60])
        elif damage == "garbage-manifest":
            (directory / "bundle.json").write_bytes(os.urandom(64) + b"\xff")
        elif damage == "garbage-proofs":
            (directory / "proofs.json").write_bytes(b"{\x00\x01 not json")
        elif damage == "empty-entries":
            entries.write_bytes(b"")
        elif damage == "no-manifest":
            (directory / "bundle.json").unlink()
        else:
            next((directory / "checkpoints").iterdir()).write_bytes(b"\xff\xfe\x00garbage")
        line = one_line_failure(verify(directory, vkeys), 1)
        assert line.startswith("NOT VERIFIED: ")
        assert message in line

    def test_bad_input_exits_2(self, bundle: tuple[Path, Path], tmp_path: Path) -> None:
        """Every refused command line of BAD_VERIFY, in turn, against one exported bundle,
        which none of them changes."""
        directory, vkeys = bundle
        names = {
            "bundle": directory,
            "vkeys": vkeys,
            "missing": tmp_path / "missing",
            "manifest": directory / "bundle.json",
            "huge": tmp_path / "huge.vkeys",
        }
        (tmp_path / "huge.vkeys").write_bytes(b"#" * (1 << 21))
        before = tree_bytes(directory)
        failures: list[str] = []
        for args, message in BAD_VERIFY:
            case = " ".join(args)
            result = runner.invoke(app, ["audit", "verify", *(a.format(**names) for a in args)])
            try:
                line = one_line_failure(result, 2)
            except AssertionError as exc:
                failures.append(f"{case}: not one line and exit 2: {exc}")
            else:
                if message not in line:
                    failures.append(f"{case}: {message!r} not in {line!r}")
            if tree_bytes(directory) != before:
                failures.append(f"{case}: the bundle changed")
            if (tmp_path / "missing").exists():
                failures.append(f"{case}: {tmp_path / 'missing'} was created")
        assert not failures, "\n".join(failures)


# Refuses, and reports, any attempt to connect a socket or open an SQLite database.
OFFLINE = textwrap.dedent(
    """
    import os, sys

    def refuse(event, args):
        if event in ("socket.connect", "socket.getaddrinfo", "sqlite3.connect"):
            sys.stderr.write(f"OPENED {event}\\n")
            sys.stderr.flush()
            os._exit(97)

    sys.addaudithook(refuse)
    from tradeguard.cli.main import app
    app(["audit", "verify", *sys.argv[1:]], prog_name="tradeguard")
    """
)


class TestOffline:
    @pytest.mark.spec("AUD-2")
    def test_verification_opens_no_database_and_no_connection(
        self, bundle: tuple[Path, Path], tmp_path: Path
    ) -> None:
        directory, vkeys = bundle
        unreachable = "postgresql://auditor:pw@db.invalid:5432/tradeguard"
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")},
            "TRADEGUARD_DATABASE_URL": unreachable,
            "TRADEGUARD_DATA_DIR": str(tmp_path / "no-data-dir"),
        }
        args = ["--bundle", str(directory), "--public-key", str(vkeys)]
        offline = subprocess.run(
            [sys.executable, "-c", OFFLINE, *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # The same hook does catch a command that reads the database.
        online = subprocess.run(
            [sys.executable, "-c", OFFLINE, "--data-dir", str(directory.parent / "var")],
            env={k: v for k, v in environment.items() if k != "TRADEGUARD_DATABASE_URL"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        in_process = verify(directory, vkeys, env={"TRADEGUARD_DATABASE_URL": unreachable})

        assert offline.returncode == 0, offline.stderr
        assert offline.stdout.startswith("ok: bundle verified")
        assert "OPENED" not in offline.stderr
        assert (online.returncode, online.stderr.strip()) == (97, "OPENED sqlite3.connect")
        assert in_process.exit_code == 0, in_process.output
        assert not (tmp_path / "no-data-dir").exists()

    def test_the_commands_have_help(self) -> None:
        export = runner.invoke(app, ["audit", "export", "--help"])
        verify_help = runner.invoke(app, ["audit", "verify", "--help"])
        assert export.exit_code == 0
        assert "--from" in export.output
        assert "--to" in export.output
        assert verify_help.exit_code == 0
        assert "--bundle" in verify_help.output
        assert "--public-key" in verify_help.output
