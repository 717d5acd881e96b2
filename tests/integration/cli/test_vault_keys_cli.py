"""`tradeguard vault` key commands on a real data directory, with the vault database on
SQLite or on a PostgreSQL database of its own: rotate-master (local and AWS KMS, interrupted
and rerun, run twice, bad input refused changing nothing), rotate-key, rewrap (killed
half-way and resumed), retire, usage and status."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from tests.conftest import POSTGRES_URL, _ensure_worker_database, require_service
from tests.integration.cli.test_keys_cli import REWRAPPED_SO_FAR, cli, kill_when, rows_rewrapped
from tests.integration.crypto.test_kms import BAD_TARGETS, aws_environment, kms_args, kms_peer
from tests.integration.vault.test_keys import ROTATION_EVENTS
from tests.support.cards import TEST_PANS
from tests.support.moto_kms import KmsPeer
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.providers import LocalFileKek, create_master_key_file, read_master_key
from tradeguard.crypto.service import KeyEvent
from tradeguard.crypto.tasks import rotate_master_key, vault_kek
from tradeguard.db.engine import async_url, create_engine
from tradeguard.ledger.domain import Party
from tradeguard.vault.container import open_store
from tradeguard.vault.domain import VaultRole
from tradeguard.vault.migrate import upgrade as upgrade_vault
from tradeguard.vault.store import CARD_CLASS, CardVaultStore, VaultCaller

__all__ = ["aws_environment", "kms_peer"]  # fixtures used here, defined with the KMS tests

runner = CliRunner()
APP = VaultCaller(VaultRole.APP, "user:alice")
PAYMENT = VaultCaller(VaultRole.PAYMENT, "service:payments")
OPERATOR = Party("operator", "test")
KILL_CARDS = 300
# Data-key versions made before a rotate-master that is killed part-way through them.
KILL_VERSIONS = 250


async def _admin(statement: str) -> None:
    admin = create_async_engine(async_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def vault_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """The vault database: the data directory's SQLite file, or a PostgreSQL database of its
    own (dropped afterwards)."""
    if request.param == "sqlite":
        yield None
        return
    name = f"{make_url(POSTGRES_URL).database}_vault_{secrets.token_hex(4)}"
    try:
        asyncio.run(_ensure_worker_database())
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        require_service("PostgreSQL", exc)
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vault_url: str | None) -> Path:
    monkeypatch.setenv("TRADEGUARD_KEY_ACTIVATION_DELAY_SECONDS", "0")
    monkeypatch.setenv("TRADEGUARD_KEY_RETIRE_GRACE_SECONDS", "0")
    if vault_url is not None:
        monkeypatch.setenv("TRADEGUARD_VAULT_DATABASE_URL", vault_url)
    directory = tmp_path / "var"
    result = runner.invoke(app, ["init", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output
    # The platform's own keys too, to show the vault's commands leave them alone.
    result = runner.invoke(app, ["keys", "status", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output
    return directory


def settings_of(data_dir: Path, **extra: Any) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None, **extra)  # type: ignore[call-arg]


def vault(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, ["vault", *args, "--data-dir", str(data_dir)], env=env)


async def _with_store(settings: Settings, work: Any) -> Any:
    clock = SystemClock()
    store = open_store(settings, clock=clock, ids=IdGenerator(clock))
    try:
        await store.start()
        return await work(store)
    finally:
        await store.close()


def tokenize(data_dir: Path, pans: list[str], **extra: Any) -> dict[str, str]:
    async def work(store: CardVaultStore) -> dict[str, str]:
        stored = {}
        for pan in pans:
            card = await store.tokenize(APP, pan=pan, expiry_month=12, expiry_year=2030)
            stored[card.token] = pan
        return stored

    return dict(asyncio.run(_with_store(settings_of(data_dir, **extra), work)))


def make_versions(data_dir: Path, count: int) -> None:
    """`count` more data-key versions (as many rotations), each recorded."""

    async def work(store: CardVaultStore) -> None:
        for _ in range(count):
            async with store.unit_of_work() as session:
                await store.keys.rotate(session, CARD_CLASS, actor=OPERATOR)
        await store.refresh_keys()

    asyncio.run(_with_store(settings_of(data_dir), work))


def reveal(data_dir: Path, tokens: dict[str, str], **extra: Any) -> dict[str, str]:
    async def work(store: CardVaultStore) -> dict[str, str]:
        return {t: (await store.detokenize(PAYMENT, t)).pan for t in tokens}

    return dict(asyncio.run(_with_store(settings_of(data_dir, **extra), work)))


def vault_query(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        engine = create_engine(settings_of(data_dir).vault_url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in (await conn.execute(text(sql))).all()]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def key_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    return vault_query(
        data_dir,
        "SELECT kind, version, state, kek_id, wrapped_key FROM crypto_key_version "
        "ORDER BY kind, version",
    )


def vault_keks(data_dir: Path) -> set[str]:
    return {str(row[3]) for row in key_rows(data_dir)}


def key_events(data_dir: Path) -> list[str]:
    return [
        str(row[0])
        for row in vault_query(
            data_dir,
            "SELECT operation FROM vault_access_log WHERE outcome = 'done' "
            "ORDER BY occurred_ns, id",
        )
    ]


def pan_versions(data_dir: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for (blob,) in vault_query(data_dir, "SELECT pan_enc FROM vault_card"):
        version = int.from_bytes(bytes(blob)[3:7], "big")
        counts[version] = counts.get(version, 0) + 1
    return counts


def vault_key_file(data_dir: Path) -> Path:
    return data_dir / "keys" / "vault" / "master.key"


def kek_of(path: Path) -> str:
    return LocalFileKek(read_master_key(path)).kek_id


def platform_keks(data_dir: Path) -> list[tuple[Any, ...]]:
    engine_url = settings_of(data_dir).main_database_url

    async def run() -> list[tuple[Any, ...]]:
        engine = create_engine(engine_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT data_class, kind, version, kek_id FROM crypto_key_version")
                )
                return sorted(tuple(row) for row in rows.all())
        finally:
            await engine.dispose()

    return asyncio.run(run())


class TestVaultRotateMaster:
    def test_local_to_local_rewraps_every_vault_key_and_every_card_reads(
        self, data_dir: Path
    ) -> None:
        cards = tokenize(data_dir, list(TEST_PANS)[:4])
        old_kek = kek_of(vault_key_file(data_dir))
        platform_key = (data_dir / "keys" / "master.key").read_bytes()
        platform_rows = platform_keks(data_dir)

        result = vault("rotate-master", data_dir=data_dir)

        assert result.exit_code == 0, result.output
        assert "2 of 2 keys re-wrapped" in result.output
        new_kek = kek_of(vault_key_file(data_dir))
        assert new_kek != old_kek
        assert vault_keks(data_dir) == {new_kek}
        [retired] = (data_dir / "keys" / "vault").glob("master.key.retired-*")
        assert retired.name.endswith(old_kek.removeprefix("local:"))
        assert stat.S_IMODE(retired.stat().st_mode) == 0o600
        assert stat.S_IMODE(vault_key_file(data_dir).stat().st_mode) == 0o600
        assert not (data_dir / "keys" / "vault" / "master.key.next").exists()
        # The platform's keys are not the vault's: untouched.
        assert (data_dir / "keys" / "master.key").read_bytes() == platform_key
        assert platform_keks(data_dir) == platform_rows
        # The retired copy out of the way: the new key file alone opens every card.
        retired.rename(data_dir / "offline-vault-key")
        assert reveal(data_dir, cards) == cards
        events = key_events(data_dir)
        assert events.count(KeyEvent.MASTER_ROTATION_STARTED) == 1
        assert events.count(KeyEvent.KEY_REWRAPPED) == 2
        assert events.count(KeyEvent.MASTER_ROTATED) == 1
        status = vault("status", data_dir=data_dir)
        assert status.exit_code == 0, status.output
        assert f"2  {new_kek}" in status.output

    def test_local_to_aws_kms_then_the_vault_runs_on_its_kms_key_alone(
        self, data_dir: Path, kms_peer: KmsPeer
    ) -> None:
        cards = tokenize(data_dir, list(TEST_PANS)[:3])
        arn = kms_peer.create_key()

        result = vault("rotate-master", *kms_args(kms_peer, arn), data_dir=data_dir)

        assert result.exit_code == 0, result.output
        assert "TRADEGUARD_VAULT_KEK_PROVIDER=aws-kms" in result.output
        assert vault_keks(data_dir) == {"aws-kms:" + arn}
        vault_key_file(data_dir).rename(data_dir / "vault-master.key.offline")
        on_kms = {
            "vault_kek_provider": "aws-kms",
            "vault_aws_kms_key_id": arn,
            "aws_kms_region": kms_peer.region,
            "aws_kms_endpoint_url": kms_peer.endpoint_url,
        }
        assert reveal(data_dir, cards, **on_kms) == cards
        assert not vault_key_file(data_dir).exists()
        env = {
            "TRADEGUARD_VAULT_KEK_PROVIDER": "aws-kms",
            "TRADEGUARD_VAULT_AWS_KMS_KEY_ID": arn,
            "TRADEGUARD_AWS_KMS_REGION": kms_peer.region,
            "TRADEGUARD_AWS_KMS_ENDPOINT_URL": kms_peer.endpoint_url,
        }
        status = vault("status", data_dir=data_dir, env=env)
        assert status.exit_code == 0, status.output
        assert "aws-kms:" + arn in status.output
        # A new data key under the KMS: rotated, sealed under, read back.
        rotated = vault("rotate-key", data_dir=data_dir, env=env)
        assert rotated.exit_code == 0, rotated.output
        cards |= tokenize(data_dir, [list(TEST_PANS)[5]], **on_kms)
        assert pan_versions(data_dir) == {1: 3, 2: 1}
        assert reveal(data_dir, cards, **on_kms) == cards

    def test_interrupted_half_way_every_card_reads_and_a_rerun_finishes(
        self, data_dir: Path
    ) -> None:
        cards = tokenize(data_dir, list(TEST_PANS)[:3])
        assert vault("rotate-key", data_dir=data_dir).exit_code == 0
        cards |= tokenize(data_dir, [list(TEST_PANS)[3]])
        setup = vault_kek(settings_of(data_dir))
        old = LocalFileKek(read_master_key(setup.master_key))
        # What the command makes first, and takes again on a rerun.
        create_master_key_file(setup.pending_master_key, os.urandom(32), None)
        new = LocalFileKek(read_master_key(setup.pending_master_key))

        class Stopped(Exception):
            pass

        async def interrupted() -> None:
            clock = SystemClock()
            store = CardVaultStore.open_with(
                engine=create_engine(settings_of(data_dir).vault_url),
                provider=old,
                clock=clock,
                ids=IdGenerator(clock),
                also=[new],
                owns_engine=True,
            )
            moved: list[str] = []

            def stop_after_two(name: str) -> None:
                moved.append(name)
                if len(moved) == 2:
                    raise Stopped

            try:
                await store.refresh_keys()
                with pytest.raises(Stopped):
                    await rotate_master_key(
                        store.keys, store.sessions, new, actor=OPERATOR, on_key=stop_after_two
                    )
            finally:
                await store.close()

        asyncio.run(interrupted())
        assert vault_keks(data_dir) == {old.kek_id, new.kek_id}
        # Half-way, the vault (old key in place, the new one pending beside it) reads all.
        assert reveal(data_dir, cards) == cards

        result = vault("rotate-master", data_dir=data_dir)

        assert result.exit_code == 0, result.output
        assert "1 of 1 keys re-wrapped" in result.output
        assert kek_of(vault_key_file(data_dir)) == new.kek_id
        assert vault_keks(data_dir) == {new.kek_id}
        assert reveal(data_dir, cards) == cards
        events = key_events(data_dir)
        assert events.count(KeyEvent.KEY_REWRAPPED) == 3
        assert events.count(KeyEvent.MASTER_ROTATION_STARTED) == 2
        assert events.count(KeyEvent.MASTER_ROTATED) == 1

    def test_killed_half_way_to_aws_kms_every_card_reads_and_a_rerun_finishes(
        self, data_dir: Path, kms_peer: KmsPeer
    ) -> None:
        cards = tokenize(data_dir, list(TEST_PANS)[:2])
        make_versions(data_dir, KILL_VERSIONS)
        cards |= tokenize(data_dir, list(TEST_PANS)[2:4])
        arn = kms_peer.create_key()
        target = "aws-kms:" + arn
        old = kek_of(vault_key_file(data_dir))
        process = cli(
            "vault", "rotate-master", *kms_args(kms_peer, arn), "--data-dir", str(data_dir)
        )
        kill_when(process, lambda: [r[3] for r in key_rows(data_dir)].count(target) >= 3)
        keks = [str(row[3]) for row in key_rows(data_dir)]
        assert 0 < keks.count(target) < len(keks) == KILL_VERSIONS + 2
        assert set(keks) == {old, target}
        # Half-way, the vault (its local key wrapping, the KMS key named) reads every card.
        half_way = {
            "vault_aws_kms_key_id": arn,
            "aws_kms_region": kms_peer.region,
            "aws_kms_endpoint_url": kms_peer.endpoint_url,
        }
        assert reveal(data_dir, cards, **half_way) == cards

        again = vault("rotate-master", *kms_args(kms_peer, arn), data_dir=data_dir)

        assert again.exit_code == 0, again.output
        assert vault_keks(data_dir) == {target}
        assert reveal(data_dir, cards, vault_kek_provider="aws-kms", **half_way) == cards
        events = key_events(data_dir)
        # Each key moved once, whichever run moved it; the killed run never finished.
        assert events.count(KeyEvent.KEY_REWRAPPED) == KILL_VERSIONS + 2
        assert events.count(KeyEvent.MASTER_ROTATION_STARTED) == 2
        assert events.count(KeyEvent.MASTER_ROTATED) == 1

    def test_run_twice_each_run_is_a_rotation_and_every_card_still_reads(
        self, data_dir: Path
    ) -> None:
        cards = tokenize(data_dir, list(TEST_PANS)[:2])
        first = vault("rotate-master", data_dir=data_dir)
        assert first.exit_code == 0, first.output
        after_first = kek_of(vault_key_file(data_dir))

        second = vault("rotate-master", data_dir=data_dir)

        assert second.exit_code == 0, second.output
        assert vault_keks(data_dir) == {kek_of(vault_key_file(data_dir))} != {after_first}
        assert len(list((data_dir / "keys" / "vault").glob("master.key.retired-*"))) == 2
        assert reveal(data_dir, cards) == cards
        assert key_events(data_dir).count(KeyEvent.MASTER_ROTATED) == 2

    @pytest.mark.parametrize(
        ("args", "message"),
        [*BAD_TARGETS, (["--to", "aws-kms"], "set TRADEGUARD_VAULT_AWS_KMS_KEY_ID")],
    )
    def test_bad_input_is_one_line_a_non_zero_exit_and_changes_nothing(
        self, data_dir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_AWS_KMS_TIMEOUT_SECONDS", "1")
        # The platform's KMS key is not the vault's: naming it does not make --to aws-kms work.
        monkeypatch.setenv("TRADEGUARD_AWS_KMS_KEY_ID", "alias/platform")
        tokenize(data_dir, [next(iter(TEST_PANS))])
        self.assert_refused(data_dir, args, message)

    def test_an_unknown_kms_key_is_refused_and_changes_nothing(
        self, data_dir: Path, kms_peer: KmsPeer
    ) -> None:
        tokenize(data_dir, [next(iter(TEST_PANS))])
        self.assert_refused(
            data_dir,
            [*kms_args(kms_peer, "alias/no-such-key")],
            "alias/no-such-key",
        )

    def test_a_wrong_vault_master_key_is_refused_and_changes_nothing(self, data_dir: Path) -> None:
        cards = tokenize(data_dir, [next(iter(TEST_PANS))])
        key_file = vault_key_file(data_dir)
        kept = key_file.read_bytes()
        key_file.unlink()
        create_master_key_file(key_file, os.urandom(32), None)

        self.assert_refused(data_dir, [], "which this process was not given")

        key_file.unlink()
        key_file.write_bytes(kept)
        key_file.chmod(0o600)
        assert reveal(data_dir, cards) == cards

    @staticmethod
    def assert_refused(data_dir: Path, args: list[str], message: str) -> None:
        before = key_rows(data_dir)
        events = key_events(data_dir)
        key_file = vault_key_file(data_dir).read_bytes()

        result = vault("rotate-master", *args, data_dir=data_dir)

        assert result.exit_code != 0
        assert message in result.output
        assert "Traceback" not in result.output
        assert key_rows(data_dir) == before
        assert key_events(data_dir) == events
        assert vault_key_file(data_dir).read_bytes() == key_file
        assert not (data_dir / "keys" / "vault" / "master.key.next").exists()
        assert not list((data_dir / "keys" / "vault").glob("master.key.retired-*"))


class TestVaultRotateRewrapRetire:
    def test_rotate_key_rewrap_retire_status_and_every_card_still_reads(
        self, data_dir: Path
    ) -> None:
        cards = tokenize(data_dir, list(TEST_PANS)[:9])
        rotated = vault("rotate-key", data_dir=data_dir)
        assert rotated.exit_code == 0, rotated.output
        assert "vault data key v2 created" in rotated.output
        cards |= tokenize(data_dir, [list(TEST_PANS)[9]])
        usage = vault("usage", data_dir=data_dir)
        assert usage.exit_code == 0, usage.output
        assert "v1: 9, v2: 1" in usage.output
        early = vault("retire", data_dir=data_dir)
        assert early.exit_code == 0, early.output
        assert "no version retired" in early.output

        result = vault("rewrap", "--batch-size", "4", data_dir=data_dir)

        assert result.exit_code == 0, result.output
        assert "card_vault: 9 values re-encrypted under v2 in 3 batches" in result.output
        assert "card_vault           retired v1" in result.output
        assert pan_versions(data_dir) == {2: 10}
        assert reveal(data_dir, cards) == cards
        status = vault("status", data_dir=data_dir)
        lines = [line.split() for line in status.output.splitlines() if line.startswith("card_")]
        assert [(c[1], c[2], c[3], c[5]) for c in lines] == [
            ("data", "1", "retired", "0"),
            ("data", "2", "encrypting", "10"),
            ("index", "1", "indexing", "-"),
        ]
        again = vault("retire", data_dir=data_dir)
        assert "no version retired" in again.output
        assert {KeyEvent.KEY_CREATED, *ROTATION_EVENTS} <= set(key_events(data_dir))
        who = vault_query(
            data_dir,
            "SELECT role, on_behalf_of, detail FROM vault_access_log "
            "WHERE operation = 'crypto:key:retired'",
        )
        [(role, party, detail)] = who
        assert role == "operator"
        assert str(party).startswith("operator:")
        assert json.loads(str(detail)) == {
            "data_class": "card_vault",
            "usage_count": 0,
            "version": 1,
        }

    def test_a_rewrap_killed_half_way_resumes_where_it_stopped(self, data_dir: Path) -> None:
        pans = list(TEST_PANS)
        cards = tokenize(data_dir, [pans[n % len(pans)] for n in range(KILL_CARDS)])
        assert vault("rotate-key", data_dir=data_dir).exit_code == 0
        process = cli(
            "vault", "rewrap", "--batch-size", "10", "--pause-ms", "30", "--data-dir", str(data_dir)
        )
        kill_when(process, lambda: rows_rewrapped(vault_query(data_dir, REWRAPPED_SO_FAR)) >= 40)
        ((rewrapped, finished),) = vault_query(
            data_dir, "SELECT rows_rewrapped, finished_ns FROM crypto_rewrap_progress"
        )
        assert finished is None
        versions = pan_versions(data_dir)
        assert versions[2] == rewrapped
        assert 0 < versions[2] < KILL_CARDS
        assert reveal(data_dir, cards) == cards

        again = cli("vault", "rewrap", "--batch-size", "50", "--data-dir", str(data_dir))
        _out, err = again.communicate(timeout=300)

        assert again.returncode == 0, err.decode()
        ((total, finished_ns),) = vault_query(
            data_dir, "SELECT rows_rewrapped, finished_ns FROM crypto_rewrap_progress"
        )
        assert total == KILL_CARDS
        assert finished_ns is not None
        assert pan_versions(data_dir) == {2: KILL_CARDS}
        assert reveal(data_dir, cards) == cards
        events = key_events(data_dir)
        assert events.count(KeyEvent.REWRAP_STARTED) == 1
        assert events.count(KeyEvent.REWRAP_RESUMED) == 1
        assert events.count(KeyEvent.REWRAP_FINISHED) == 1
        assert events.count(KeyEvent.KEY_RETIRED) == 1


class TestVaultKeyCommandsRefuse:
    def test_a_data_directory_without_a_vault_database(self, tmp_path: Path) -> None:
        result = runner.invoke(app, ["vault", "status", "--data-dir", str(tmp_path / "none")])
        assert result.exit_code == 2
        assert "no vault database here" in result.output
        assert not (tmp_path / "none" / "vault.db").exists()

    def test_a_vault_database_not_yet_upgraded(self, tmp_path: Path) -> None:
        directory = tmp_path / "old"
        directory.mkdir()

        async def old_vault() -> None:
            engine = create_engine(f"sqlite:///{directory / 'vault.db'}")
            try:
                await upgrade_vault(engine, "v0001_vault")
            finally:
                await engine.dispose()

        asyncio.run(old_vault())
        LocalFileKek.load_or_create(directory / "keys" / "vault" / "master.key")
        for command in ("status", "rewrap", "rotate-master"):
            result = runner.invoke(app, ["vault", command, "--data-dir", str(directory)])
            assert result.exit_code != 0, command
            assert "run `tradeguard vault upgrade` first" in result.output, command
            assert "Traceback" not in result.output

    def test_every_key_command_has_help(self) -> None:
        for command in ("rotate-master", "rotate-key", "rewrap", "retire", "usage", "status"):
            result = runner.invoke(app, ["vault", command, "--help"])
            assert result.exit_code == 0, command
            assert "--data-dir" in result.output
