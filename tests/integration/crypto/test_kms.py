"""The AWS KMS key-encrypting key against a real KMS protocol peer (moto's server, a separate
process speaking the KMS JSON protocol to botocore), and `tradeguard keys rotate-master`
end to end: local -> local, local -> AWS KMS, interrupted and rerun, bad input refused."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from tests.integration.cli.test_keys_cli import event_types, query, read_bodies, seed
from tests.support.moto_kms import KmsPeer, required_kms_peer, use_peer_credentials
from tradeguard.access import alerts_detector
from tradeguard.backoffice import common as backoffice
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock, SystemClock
from tradeguard.core.errors import ConfigurationError
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.envelope import EnvelopeBroken, FieldBinding
from tradeguard.crypto.keyring import SECRET, Keyring
from tradeguard.crypto.kms import AwsKmsKek, KmsUnavailable
from tradeguard.crypto.kms_settings import KmsSettings
from tradeguard.crypto.legacy import LegacyFieldKeys
from tradeguard.crypto.peppers import FUNDS_SANDBOX_PEPPER, PEPPER_PURPOSES
from tradeguard.crypto.providers import LocalFileKek, read_master_key
from tradeguard.crypto.service import KeyEvent, KeyManagement
from tradeguard.crypto.tasks import rotate_master_key
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity import common as identity
from tradeguard.identity import sessions as identity_sessions
from tradeguard.identity.container import start_identity
from tradeguard.ledger.domain import Party
from tradeguard.ledger.service import Ledger
from tradeguard.notify.service import BODY_PURPOSE, seal_context

runner = CliRunner()
OPERATOR = Party(kind="operator", id="test")
SLOT = b"tradeguard data key|tax_id|data|1"


@pytest.fixture(scope="module")
def kms_peer() -> Iterator[KmsPeer]:
    with required_kms_peer() as peer:
        yield peer


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_peer_credentials(monkeypatch, tmp_path)


def kms_of(peer: KmsPeer, key_id: str, **extra: Any) -> AwsKmsKek:
    return AwsKmsKek.connect(
        KmsSettings(key_id=key_id, region=peer.region, endpoint_url=peer.endpoint_url, **extra)
    )


class TestAwsKmsKek:
    async def test_a_key_wrapped_by_kms_unwraps_to_itself(self, kms_peer: KmsPeer) -> None:
        arn = kms_peer.create_key()
        provider = kms_of(kms_peer, arn)
        key = os.urandom(32)
        wrapped = await provider.wrap(key, associated_data=SLOT)
        assert provider.kek_id == "aws-kms:" + arn
        assert provider.legacy is None
        assert key not in wrapped
        assert await provider.unwrap(wrapped, associated_data=SLOT) == key

    async def test_an_alias_resolves_to_the_key_arn(self, kms_peer: KmsPeer) -> None:
        arn = kms_peer.create_key()
        kms_peer.client().create_alias(AliasName="alias/tradeguard-kek", TargetKeyId=arn)
        assert kms_of(kms_peer, "alias/tradeguard-kek").kek_id == "aws-kms:" + arn

    async def test_a_key_moved_to_another_slot_does_not_open(self, kms_peer: KmsPeer) -> None:
        provider = kms_of(kms_peer, kms_peer.create_key())
        wrapped = await provider.wrap(os.urandom(32), associated_data=SLOT)
        with pytest.raises(EnvelopeBroken):
            await provider.unwrap(wrapped, associated_data=b"tradeguard data key|tax_id|data|2")
        with pytest.raises(EnvelopeBroken):
            await provider.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]), associated_data=SLOT)

    async def test_a_key_wrapped_by_another_kms_key_is_refused(self, kms_peer: KmsPeer) -> None:
        ours = kms_of(kms_peer, kms_peer.create_key())
        theirs = kms_of(kms_peer, kms_peer.create_key())
        wrapped = await theirs.wrap(os.urandom(32), associated_data=SLOT)
        # AWS answers IncorrectKeyException (EnvelopeBroken here); moto answers
        # AccessDeniedException (a KmsUnavailable naming it). Either way: never opened.
        with pytest.raises((EnvelopeBroken, KmsUnavailable)):
            await ours.unwrap(wrapped, associated_data=SLOT)

    def test_a_disabled_key_is_refused_at_start(self, kms_peer: KmsPeer) -> None:
        arn = kms_peer.create_key()
        kms_peer.client().disable_key(KeyId=arn.rsplit("/", 1)[1])
        with pytest.raises(ConfigurationError, match="is Disabled: enable it") as refused:
            kms_of(kms_peer, arn)
        assert "\n" not in refused.value.detail

    def test_a_key_that_cannot_wrap_is_refused_at_start(self, kms_peer: KmsPeer) -> None:
        arn = kms_peer.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")
        with pytest.raises(ConfigurationError, match="must be a SYMMETRIC_DEFAULT key"):
            kms_of(kms_peer, arn)

    def test_an_unknown_key_names_what_to_check(self, kms_peer: KmsPeer) -> None:
        with pytest.raises(KmsUnavailable, match=r"NotFoundException.*TRADEGUARD_AWS_KMS_KEY_ID"):
            kms_of(kms_peer, "alias/no-such-key")

    def test_a_malformed_endpoint_is_a_configuration_error(self, kms_peer: KmsPeer) -> None:
        settings = KmsSettings(key_id="alias/any", region=kms_peer.region, endpoint_url="kms")
        with pytest.raises(ConfigurationError, match="is not a URL"):
            AwsKmsKek.connect(settings)

    def test_an_unreachable_endpoint_is_one_clear_error(self, kms_peer: KmsPeer) -> None:
        settings = KmsSettings(
            key_id="alias/any",
            region=kms_peer.region,
            endpoint_url="http://127.0.0.1:9",  # discard: nothing listens
            connect_timeout_seconds=1.0,
            read_timeout_seconds=1.0,
            max_attempts=1,
        )
        with pytest.raises(KmsUnavailable, match="cannot reach the KMS endpoint"):
            AwsKmsKek.connect(settings)


class TestKeyringOverKms:
    @pytest.mark.spec("ENC-2")
    async def test_fields_seal_and_open_under_keys_wrapped_by_kms(
        self, kms_peer: KmsPeer, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
    ) -> None:
        provider = kms_of(kms_peer, kms_peer.create_key())
        management = KeyManagement(
            Keyring(provider, clock=clock), ledger=Ledger(clock=clock, ids=IdGenerator(clock))
        )
        async with unit_of_work(sessions) as session:
            await management.ensure_keys(session)
        async with sessions() as session:
            await management.keyring.refresh(session)
        binding = FieldBinding("tax_id", "customers", "tax_id_enc", b"customer-1")
        sealed = management.keyring.seal(b"123-45-6789", binding, DataClass.TAX_ID)
        peppers = {p: management.keyring.derive_secret(p) for p in PEPPER_PURPOSES}

        # Another process: a keyring of its own, reading the table through KMS.
        other = Keyring(kms_of(kms_peer, provider.key_arn), clock=clock)
        async with sessions() as session:
            await other.refresh(session)
        assert other.open(sealed, binding, DataClass.TAX_ID) == b"123-45-6789"
        assert {p: other.derive_secret(p) for p in PEPPER_PURPOSES} == peppers
        assert len(set(peppers.values())) == len(PEPPER_PURPOSES)
        async with sessions() as session:
            counts = await management.kek_counts(session)
        assert list(counts) == [provider.kek_id]
        # No local master key anywhere, and version 0 (HKDF of one) is not made.
        assert management.keyring.legacy is None
        assert DataClass.TAX_ID in management.keyring.keyset.versions
        assert all(0 not in versions for versions in management.keyring.keyset.versions.values())

    async def test_a_local_keyring_moves_to_kms_on_both_backends(
        self, kms_peer: KmsPeer, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
    ) -> None:
        local = LocalFileKek(os.urandom(32))
        management = KeyManagement(
            Keyring(local, clock=clock), ledger=Ledger(clock=clock, ids=IdGenerator(clock))
        )
        async with unit_of_work(sessions) as session:
            await management.ensure_keys(session)
        async with sessions() as session:
            await management.keyring.refresh(session)
        binding = FieldBinding("tax_id", "customers", "tax_id_enc", b"customer-2")
        sealed = management.keyring.seal(b"987-65-4321", binding, DataClass.TAX_ID)
        peppers = {p: management.keyring.derive_secret(p) for p in PEPPER_PURPOSES}
        target = kms_of(kms_peer, kms_peer.create_key())

        run = await rotate_master_key(management, sessions, target, actor=OPERATOR)

        assert run.finished
        # The peppers were stored under the new key directly; every other key re-wrapped.
        assert run.rewrapped == run.pending > 0
        # A key ARN with its prefix is longer than the 80 characters kek_id had before 0018.
        assert len(target.kek_id) > 80
        on_kms = Keyring(kms_of(kms_peer, target.key_arn), clock=clock)
        async with sessions() as session:
            await on_kms.refresh(session)
            counts = await management.kek_counts(session)
        assert counts == {target.kek_id: run.pending + len(PEPPER_PURPOSES)}
        assert on_kms.legacy is None
        assert on_kms.open(sealed, binding, DataClass.TAX_ID) == b"987-65-4321"
        assert {p: on_kms.derive_secret(p) for p in PEPPER_PURPOSES} == peppers


# -- tradeguard keys rotate-master ---------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRADEGUARD_KEY_ACTIVATION_DELAY_SECONDS", "0")
    monkeypatch.setenv("TRADEGUARD_KEY_RETIRE_GRACE_SECONDS", "0")
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0
    result = runner.invoke(app, ["keys", "status", "--data-dir", str(directory)])
    assert result.exit_code == 0, result.output
    return directory


def settings_of(data_dir: Path, **extra: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        data_dir=data_dir,
        key_activation_delay_seconds=0,
        key_retire_grace_seconds=0,
        _env_file=None,
        **extra,
    )


async def peppers_of(settings: Settings) -> dict[str, bytes]:
    engine = create_engine(settings.main_database_url)
    clock = SystemClock()
    try:
        identity = await start_identity(
            settings, clock=clock, ids=IdGenerator(clock), sessions=session_factory(engine)
        )
        # What a sign-in throttle key is made with (identity/common.py), and every other.
        return {p: identity.deps.pepper(p) for p in PEPPER_PURPOSES}
    finally:
        await engine.dispose()


async def bodies_under(settings: Settings) -> dict[str, str]:
    """Every queued body, read by a process started with `settings`."""
    engine = create_engine(settings.main_database_url)
    clock = SystemClock()
    try:
        identity = await start_identity(
            settings, clock=clock, ids=IdGenerator(clock), sessions=session_factory(engine)
        )
        rows = query(settings.data_dir, "SELECT id, body_enc FROM notify_outbox")
        return {
            str(i): identity.deps.keyring.decrypt(
                bytes(b),  # type: ignore[arg-type]
                purpose=BODY_PURPOSE,
                context=seal_context(str(i)),
            ).decode()
            for i, b in rows
        }
    finally:
        await engine.dispose()


def key_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    return query(
        data_dir,
        "SELECT data_class, kind, version, kek_id, wrapped_key FROM crypto_key_version "
        "ORDER BY data_class, kind, version",
    )


def kek_ids(data_dir: Path) -> set[object]:
    return {row[3] for row in key_rows(data_dir) if row[4] is not None}


def local_kek_id(path: Path) -> str:
    return LocalFileKek(read_master_key(path)).kek_id


# Targets rotate-master refuses whatever key table it rotates, and what it says.
BAD_TARGETS = [
    (["--to", "nowhere"], "--to 'nowhere' is not known"),
    (["--key-id", "alias/x"], "go with --to aws-kms"),
    # A KMS endpoint where nothing listens.
    (
        [
            "--to",
            "aws-kms",
            "--key-id",
            "alias/x",
            "--region",
            "eu-west-1",
            "--endpoint-url",
            "http://127.0.0.1:9",
        ],
        "cannot reach the KMS endpoint",
    ),
]


def kms_args(peer: KmsPeer, arn: str) -> list[str]:
    return [
        "--to",
        "aws-kms",
        "--key-id",
        arn,
        "--region",
        peer.region,
        "--endpoint-url",
        peer.endpoint_url,
    ]


class TestRotateMaster:
    def test_local_to_local_rewraps_every_key_and_everything_still_reads(
        self, data_dir: Path
    ) -> None:
        settings = settings_of(data_dir)
        bodies = asyncio.run(seed(data_dir, 5))
        peppers = asyncio.run(peppers_of(settings))
        master = data_dir / "keys" / "master.key"
        old_kek = local_kek_id(master)
        wrapped = len([row for row in key_rows(data_dir) if row[4] is not None])

        result = runner.invoke(app, ["keys", "rotate-master", "--data-dir", str(data_dir)])

        assert result.exit_code == 0, result.output
        new_kek = local_kek_id(master)
        assert new_kek != old_kek
        assert kek_ids(data_dir) == {new_kek}
        assert not (data_dir / "keys" / "master.key.next").exists()
        [retired] = (data_dir / "keys").glob("master.key.retired-*")
        assert retired.name.endswith(old_kek.removeprefix("local:"))
        assert stat.S_IMODE(retired.stat().st_mode) == 0o600
        assert stat.S_IMODE(master.stat().st_mode) == 0o600
        assert local_kek_id(retired) == old_kek
        assert asyncio.run(read_bodies(data_dir)) == bodies
        assert asyncio.run(peppers_of(settings)) == peppers
        events = event_types(data_dir)
        assert events.count(KeyEvent.SECRET_STORED) == len(PEPPER_PURPOSES)
        assert events.count(KeyEvent.KEY_REWRAPPED) == wrapped
        assert events.count(KeyEvent.MASTER_ROTATION_STARTED) == 1
        assert events.count(KeyEvent.MASTER_ROTATED) == 1
        status = runner.invoke(app, ["keys", "status", "--data-dir", str(data_dir)])
        assert f"{wrapped + len(PEPPER_PURPOSES)}  {new_kek}" in status.output

    def test_local_to_aws_kms_then_runs_without_the_local_master_key(
        self, data_dir: Path, kms_peer: KmsPeer
    ) -> None:
        bodies = asyncio.run(seed(data_dir, 5))
        peppers = asyncio.run(peppers_of(settings_of(data_dir)))
        arn = kms_peer.create_key()

        result = runner.invoke(
            app, ["keys", "rotate-master", *kms_args(kms_peer, arn), "--data-dir", str(data_dir)]
        )

        assert result.exit_code == 0, result.output
        assert kek_ids(data_dir) == {"aws-kms:" + arn}
        assert {row[0] for row in key_rows(data_dir) if row[1] == SECRET} == set(PEPPER_PURPOSES)
        # The local master key out of the way: the KMS alone opens everything.
        master = data_dir / "keys" / "master.key"
        master.rename(data_dir / "master.key.offline")
        on_kms = settings_of(
            data_dir,
            kek_provider="aws-kms",
            aws_kms_key_id=arn,
            aws_kms_region=kms_peer.region,
            aws_kms_endpoint_url=kms_peer.endpoint_url,
        )
        assert asyncio.run(peppers_of(on_kms)) == peppers

        async def started_on_kms() -> Keyring:
            engine = create_engine(on_kms.main_database_url)
            clock = SystemClock()
            try:
                identity = await start_identity(
                    on_kms, clock=clock, ids=IdGenerator(clock), sessions=session_factory(engine)
                )
                keyring = identity.deps.keyring
                assert keyring.provider.kek_id == "aws-kms:" + arn
                assert keyring.legacy is None
                return keyring
            finally:
                await engine.dispose()

        asyncio.run(started_on_kms())
        assert not master.exists()
        events = event_types(data_dir)
        assert events.count(KeyEvent.MASTER_ROTATED) == 1
        assert asyncio.run(bodies_under(on_kms)) == bodies
        env = {
            "TRADEGUARD_KEK_PROVIDER": "aws-kms",
            "TRADEGUARD_AWS_KMS_KEY_ID": arn,
            "TRADEGUARD_AWS_KMS_REGION": kms_peer.region,
            "TRADEGUARD_AWS_KMS_ENDPOINT_URL": kms_peer.endpoint_url,
        }
        status = runner.invoke(app, ["keys", "status", "--data-dir", str(data_dir)], env=env)
        assert status.exit_code == 0, status.output
        assert "aws-kms:" + arn in status.output

    def test_interrupted_half_way_every_key_reads_and_a_rerun_finishes(
        self, data_dir: Path, kms_peer: KmsPeer
    ) -> None:
        bodies = asyncio.run(seed(data_dir, 3))
        settings = settings_of(data_dir)
        peppers = asyncio.run(peppers_of(settings))
        arn = kms_peer.create_key()
        master = data_dir / "keys" / "master.key"
        local = LocalFileKek(read_master_key(master))
        target = kms_of(kms_peer, arn)

        class Stopped(Exception):
            pass

        moved: list[str] = []

        def stop_after_three(name: str) -> None:
            moved.append(name)
            if len(moved) == 3:
                raise Stopped

        async def interrupted() -> None:
            engine = create_engine(settings.main_database_url)
            clock = SystemClock()
            try:
                sessions = session_factory(engine)
                management = KeyManagement(
                    Keyring(local, clock=clock, also=[target]),
                    ledger=Ledger(clock=clock, ids=IdGenerator(clock)),
                )
                async with sessions() as session:
                    await management.keyring.refresh(session)
                with pytest.raises(Stopped):
                    await rotate_master_key(
                        management, sessions, target, actor=OPERATOR, on_key=stop_after_three
                    )
            finally:
                await engine.dispose()

        asyncio.run(interrupted())
        assert kek_ids(data_dir) == {local.kek_id, target.kek_id}
        # Half-way, a process given both keys (local wraps, the KMS key is named) reads all.
        half_way = settings_of(
            data_dir,
            aws_kms_key_id=arn,
            aws_kms_region=kms_peer.region,
            aws_kms_endpoint_url=kms_peer.endpoint_url,
        )
        assert asyncio.run(bodies_under(half_way)) == bodies
        assert asyncio.run(peppers_of(half_way)) == peppers

        result = runner.invoke(
            app, ["keys", "rotate-master", *kms_args(kms_peer, arn), "--data-dir", str(data_dir)]
        )

        assert result.exit_code == 0, result.output
        assert kek_ids(data_dir) == {target.kek_id}
        events = event_types(data_dir)
        assert events.count(KeyEvent.MASTER_ROTATION_STARTED) == 2
        assert events.count(KeyEvent.MASTER_ROTATED) == 1
        wrapped = len([row for row in key_rows(data_dir) if row[4] is not None])
        # Each key moved once, whichever run moved it; the peppers stored once.
        assert events.count(KeyEvent.KEY_REWRAPPED) == wrapped - len(PEPPER_PURPOSES)
        assert events.count(KeyEvent.SECRET_STORED) == len(PEPPER_PURPOSES)
        assert asyncio.run(peppers_of(half_way)) == peppers
        assert asyncio.run(bodies_under(half_way)) == bodies

    @pytest.mark.parametrize(
        ("args", "message"),
        [*BAD_TARGETS, (["--to", "aws-kms"], "no KMS key named")],
    )
    def test_bad_input_is_one_line_a_non_zero_exit_and_changes_nothing(
        self, data_dir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_AWS_KMS_TIMEOUT_SECONDS", "1")
        before = key_rows(data_dir)
        events = event_types(data_dir)
        master = (data_dir / "keys" / "master.key").read_bytes()

        result = runner.invoke(app, ["keys", "rotate-master", *args, "--data-dir", str(data_dir)])

        assert result.exit_code != 0
        assert message in result.output
        assert "Traceback" not in result.output
        assert key_rows(data_dir) == before
        assert event_types(data_dir) == events
        assert (data_dir / "keys" / "master.key").read_bytes() == master
        assert not (data_dir / "keys" / "master.key.next").exists()
        assert not list((data_dir / "keys").glob("master.key.retired-*"))

    def test_an_unknown_kek_provider_is_refused_with_the_fix(self, data_dir: Path) -> None:
        result = runner.invoke(
            app,
            ["keys", "status", "--data-dir", str(data_dir)],
            env={"TRADEGUARD_KEK_PROVIDER": "vault"},
        )
        assert result.exit_code == 2
        assert "TRADEGUARD_KEK_PROVIDER='vault' is not known: use local or aws-kms" in (
            result.output
        )

    def test_legacy_values_block_the_rotation_until_rewrapped(self, data_dir: Path) -> None:
        bodies = asyncio.run(seed(data_dir, 2))
        # One body as it was sealed before versioned keys (version 0, HKDF of the master key).
        message = sorted(bodies)[0]
        legacy = LegacyFieldKeys(read_master_key(data_dir / "keys" / "master.key")).encrypt(
            bodies[message].encode(), purpose=BODY_PURPOSE, context=seal_context(message)
        )
        database = sqlite3.connect(data_dir / "tradeguard.db")
        try:
            database.execute(
                "UPDATE notify_outbox SET body_enc = ? WHERE id = ?", (legacy, message)
            )
            database.commit()
        finally:
            database.close()
        before = key_rows(data_dir)

        refused = runner.invoke(app, ["keys", "rotate-master", "--data-dir", str(data_dir)])

        assert refused.exit_code != 0
        assert "run `tradeguard keys rewrap --class notify_body`" in refused.output
        assert key_rows(data_dir) == before
        assert not (data_dir / "keys" / "master.key.next").exists()
        rewrap = runner.invoke(
            app, ["keys", "rewrap", "--class", "notify_body", "--data-dir", str(data_dir)]
        )
        assert rewrap.exit_code == 0, rewrap.output
        done = runner.invoke(app, ["keys", "rotate-master", "--data-dir", str(data_dir)])
        assert done.exit_code == 0, done.output
        assert asyncio.run(read_bodies(data_dir)) == bodies


def test_the_pepper_list_is_every_purpose_the_code_derives() -> None:
    """crypto/peppers.py is the one list: every `derive_secret`/`pepper` call site's purpose
    is in it (a new pepper outside it is refused at run time, and would be lost at a master
    key rotation)."""
    root = Path(__file__).resolve().parents[3] / "src" / "tradeguard"
    used = {
        alerts_detector.NETWORK_KEY_PURPOSE,
        backoffice.PSEUDONYM_PURPOSE,
        backoffice.QUERY_DIGEST_PURPOSE,
        identity.COUNTER_KEY_PEPPER,
        identity_sessions.BACKUP_PEPPER,
        identity_sessions.OTP_PEPPER,
        FUNDS_SANDBOX_PEPPER,
    }
    assert used == set(PEPPER_PURPOSES)
    callers = [
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if "derive_secret(" in path.read_text() or ".pepper(" in path.read_text()
    ]
    assert sorted(callers) == sorted(
        [
            "access/alerts_detector.py",
            "backoffice/common.py",
            "crypto/keyring.py",
            "crypto/legacy.py",
            "crypto/service.py",
            "funds/container.py",
            "identity/common.py",
            "identity/confirmations.py",
            "identity/factors.py",
            "identity/service.py",
            "identity/sessions.py",
        ]
    )
