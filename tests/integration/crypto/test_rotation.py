"""Key rotation end to end on SQLite and PostgreSQL: data under the legacy scheme and v1,
rotate, new writes under v2, rewrap, the old versions retire, and everything still reads;
rewrap resumes where it stopped; every key operation is in the ledger."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.ledger import event_types, settle
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.catalogue import INDEX_LOCATIONS, LOCATIONS, locations_of
from tradeguard.crypto.classes import PLATFORM_CLASSES, SPEC_OF, DataClass
from tradeguard.crypto.keyring import DecryptionFailed, LocalKeyring
from tradeguard.crypto.service import NS_PER_DAY, KeyEvent, KeyManagement
from tradeguard.crypto.tasks import KeyringWorker, rewrap_class
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.container import IdentityServices, start_identity
from tradeguard.ledger.domain import LedgerEvent, Party, PersonalData
from tradeguard.ledger.personal.keys import SubjectKeys
from tradeguard.ledger.personal.sealing import is_redacted
from tradeguard.ledger.service import Ledger, events_after
from tradeguard.notify.service import BODY_PURPOSE, RECIPIENT_PURPOSE, Notifier, seal_context

OPERATOR = Party("operator", "test")
ROTATED = (DataClass.NOTIFY_RECIPIENT, DataClass.NOTIFY_BODY, DataClass.SUBJECT_KEYS)


def person(n: int) -> Party:
    return Party("user", f"0190c5a0-0000-7000-8000-{n:012d}")


async def queue(sessions: async_sessionmaker[AsyncSession], notifier: Notifier, n: int) -> str:
    async with unit_of_work(sessions) as session:
        return await notifier.enqueue_sms(
            session, to=f"+1415555{n:04d}", template="auth.sms_otp", body=f"code {n:06d}"
        )


async def sign_in(sessions: async_sessionmaker[AsyncSession], ledger: Ledger, n: int) -> None:
    async with unit_of_work(sessions) as session:
        await ledger.append(
            session,
            LedgerEvent(
                type="identity:login:succeeded",
                actor=person(n),
                subject=person(n),
                personal=PersonalData.of(person(n), email=f"user{n}@example.com"),
            ),
        )


async def outbox(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, recipient_enc, body_enc FROM notify_outbox"))
        return list(rows.all())


async def read_outbox(engine: AsyncEngine, keyring: Any) -> dict[str, tuple[str, str]]:
    found = {}
    for row in await outbox(engine):
        context = seal_context(row.id)
        found[row.id] = (
            keyring.decrypt(
                bytes(row.recipient_enc), purpose=RECIPIENT_PURPOSE, context=context
            ).decode(),
            keyring.decrypt(bytes(row.body_enc), purpose=BODY_PURPOSE, context=context).decode(),
        )
    return found


async def personal_emails(engine: AsyncEngine, identity: IdentityServices) -> list[Any]:
    await settle(engine)
    async with identity.sessions() as session:
        events = await events_after(
            session, after_seq=0, limit=10_000, keys=identity.deps.ledger.subject_keys
        )
    return [e.document["personal"]["email"] for e in events if "personal" in e.document]


@pytest.fixture
async def legacy_data(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> dict[str, tuple[str, str]]:
    """Outbox messages and subject keys written before versioned keys (LocalKeyring)."""
    old = LocalKeyring.load_or_create(settings.keys_dir / "master.key")
    ids = IdGenerator(clock)
    notifier = Notifier(clock=clock, ids=ids, keyring=old)
    ledger = Ledger(clock=clock, ids=ids, subject_keys=SubjectKeys(old, clock=clock, ids=ids))
    for n in range(3):
        await queue(sessions, notifier, n)
        await sign_in(sessions, ledger, n)
    return await read_outbox(engine, old)


async def start(settings: Settings, sessions: Any, clock: FrozenClock) -> IdentityServices:
    return await start_identity(settings, clock=clock, ids=IdGenerator(clock), sessions=sessions)


def versions(
    rows: list[Any], column: str, management: KeyManagement, data_class: DataClass
) -> set[int | None]:
    return {management.keyring.version_of(bytes(getattr(r, column)), data_class) for r in rows}


class TestRotationEndToEnd:
    @pytest.mark.spec("ENC-2")
    async def test_legacy_and_v1_data_rotate_rewrap_retire_and_still_read(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        legacy_data: dict[str, tuple[str, str]],
    ) -> None:
        identity = await start(settings, sessions, clock)
        management = identity.key_management
        notifier = identity.deps.notifier
        # Old-format data reads through the new keyring (no flag day).
        assert await read_outbox(engine, management.keyring) == legacy_data
        # New writes are under v1.
        for n in range(3, 6):
            await queue(sessions, notifier, n)
            await sign_in(sessions, identity.deps.ledger, n)
        rows = await outbox(engine)
        assert versions(rows, "body_enc", management, DataClass.NOTIFY_BODY) == {0, 1}
        before = await read_outbox(engine, management.keyring)

        async with unit_of_work(sessions) as session:
            made = [await management.rotate(session, c, actor=OPERATOR) for c in ROTATED]
        assert {m.version for m in made} == {2}
        # Until its activation time, the new version is known but does not encrypt.
        async with sessions() as session:
            await management.keyring.refresh(session)
        pending = await queue(sessions, notifier, 6)
        clock.advance(ns=management.policy.activation_delay_ns)
        after = await queue(sessions, notifier, 7)
        await sign_in(sessions, identity.deps.ledger, 7)
        by_id = {r.id: r for r in await outbox(engine)}
        assert (
            management.keyring.version_of(bytes(by_id[pending].body_enc), DataClass.NOTIFY_BODY)
            == 1
        )
        assert (
            management.keyring.version_of(bytes(by_id[after].body_enc), DataClass.NOTIFY_BODY) == 2
        )

        # Nothing retires while data still uses the old versions.
        async with unit_of_work(sessions) as session:
            clock.advance(ns=management.policy.retire_grace_ns)
            assert (
                await management.retire_unused(session, DataClass.NOTIFY_BODY, actor=OPERATOR) == []
            )

        for data_class in ROTATED:
            run = await rewrap_class(management, sessions, data_class, actor=OPERATOR, batch_size=2)
            assert run.finished
            assert run.unreadable == 0
        async with unit_of_work(sessions) as session:
            for data_class in ROTATED:
                assert set(await management.usage(session, data_class)) == {2}
                retired = await management.retire_unused(session, data_class, actor=OPERATOR)
                assert retired == ([0, 1] if SPEC_OF[data_class].legacy_purpose else [1])

        # Everything still reads; a retired version never encrypts again.
        everything = await read_outbox(engine, management.keyring)
        assert {k: everything[k] for k in before} == before
        assert len(everything) == 8
        assert versions(await outbox(engine), "body_enc", management, DataClass.NOTIFY_BODY) == {2}
        emails = await personal_emails(engine, identity)
        assert len(emails) == 7
        assert not any(is_redacted(e) for e in emails)
        assert management.keyring.encrypting_version(DataClass.NOTIFY_BODY) == 2
        # Another process (a new keyring on the same database) reads it all too.
        fresh = await start(settings, sessions, clock)
        assert await read_outbox(engine, fresh.key_management.keyring) == everything
        # And old-format data, were any left, would now be refused: v0 is retired.
        stale = LocalKeyring.load_or_create(settings.keys_dir / "master.key").encrypt(
            b"x", purpose=BODY_PURPOSE, context=b"id"
        )
        with pytest.raises(DecryptionFailed, match="retired"):
            fresh.key_management.keyring.decrypt(stale, purpose=BODY_PURPOSE, context=b"id")

        types = await event_types(engine)
        assert types.count(KeyEvent.KEY_ROTATED) == 3
        assert types.count(KeyEvent.REWRAP_STARTED) == 3
        assert types.count(KeyEvent.REWRAP_FINISHED) == 3
        assert types.count(KeyEvent.KEY_RETIRED) == 6
        assert KeyEvent.KEY_CREATED in types

    async def test_rewrap_resumes_where_it_stopped(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
    ) -> None:
        identity = await start(settings, sessions, clock)
        management = identity.key_management
        for n in range(9):
            await queue(sessions, identity.deps.notifier, n)
        async with unit_of_work(sessions) as session:
            await management.rotate(session, DataClass.NOTIFY_BODY, actor=OPERATOR)
        clock.advance(ns=management.policy.activation_delay_ns)
        async with sessions() as session:
            await management.keyring.refresh(session)
        first = await rewrap_class(
            management, sessions, DataClass.NOTIFY_BODY, actor=OPERATOR, batch_size=2, max_batches=2
        )
        assert not first.finished
        assert first.rewrapped == 4
        # A value written meanwhile is under v2 already: the resumed run skips it.
        await queue(sessions, identity.deps.notifier, 99)
        second = await rewrap_class(
            management, sessions, DataClass.NOTIFY_BODY, actor=OPERATOR, batch_size=2
        )
        assert second.finished
        assert second.rewrapped == 5
        assert versions(await outbox(engine), "body_enc", management, DataClass.NOTIFY_BODY) == {2}
        types = await event_types(engine)
        assert types.count(KeyEvent.REWRAP_STARTED) == 1
        assert types.count(KeyEvent.REWRAP_RESUMED) == 1

    async def test_a_value_that_does_not_decrypt_is_left_and_blocks_retirement(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
    ) -> None:
        identity = await start(settings, sessions, clock)
        management = identity.key_management
        first = await queue(sessions, identity.deps.notifier, 1)
        second = await queue(sessions, identity.deps.notifier, 2)
        # An attacker with database access moves one message's body onto another.
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE notify_outbox SET body_enc = "
                    "(SELECT body_enc FROM notify_outbox WHERE id = :a) WHERE id = :b"
                ),
                {"a": first, "b": second},
            )
        async with unit_of_work(sessions) as session:
            await management.rotate(session, DataClass.NOTIFY_BODY, actor=OPERATOR)
        clock.advance(ns=management.policy.activation_delay_ns + management.policy.retire_grace_ns)
        async with sessions() as session:
            await management.keyring.refresh(session)
        run = await rewrap_class(management, sessions, DataClass.NOTIFY_BODY, actor=OPERATOR)
        assert (run.rewrapped, run.unreadable) == (1, 1)
        async with unit_of_work(sessions) as session:
            assert await management.retire_unused(
                session, DataClass.NOTIFY_BODY, actor=OPERATOR
            ) == [0]


class TestScheduledRotation:
    @pytest.mark.spec("PCI-4")
    async def test_the_worker_rotates_each_class_when_its_cryptoperiod_ends(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
    ) -> None:
        settings = settings.model_copy(update={"key_rotation_days_by_class": {"tax_id": 30}})
        identity = await start(settings, sessions, clock)
        worker = KeyringWorker(identity.key_management, sessions, rotation_check_seconds=0)
        assert await worker.run_once() == []
        clock.advance(ns=30 * NS_PER_DAY)
        assert [(k.data_class, k.version) for k in await worker.run_once()] == [
            (DataClass.TAX_ID, 2)
        ]
        clock.advance(ns=30 * NS_PER_DAY - 1)
        assert await worker.run_once() == []
        clock.advance(ns=1)
        assert [(k.data_class, k.version) for k in await worker.run_once()] == [
            (DataClass.TAX_ID, 3)
        ]
        clock.advance(ns=30 * NS_PER_DAY)
        rotated = {k.data_class: k.version for k in await worker.run_once()}
        assert rotated == {c: 4 if c is DataClass.TAX_ID else 2 for c in PLATFORM_CLASSES}
        # The worker re-read the keys: once activated, new values are sealed under v2.
        clock.advance(ns=identity.key_management.policy.activation_delay_ns)
        await worker.run_once()
        assert identity.key_management.keyring.encrypting_version(DataClass.TOTP_SECRET) == 2

    async def test_two_processes_checking_at_once_rotate_once(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
    ) -> None:
        one = await start(settings, sessions, clock)
        two = await start(settings, sessions, clock)
        clock.advance(ns=90 * NS_PER_DAY)
        async with unit_of_work(sessions) as session:
            assert len(await one.key_management.rotate_due(session)) == len(PLATFORM_CLASSES)
        async with unit_of_work(sessions) as session:
            assert await two.key_management.rotate_due(session) == []


class TestKeyTable:
    async def test_catalogued_locations_are_real_columns(self, engine: AsyncEngine) -> None:
        def columns(conn: Any) -> dict[str, tuple[set[str], list[str]]]:
            inspector = inspect(conn)
            return {
                t: (
                    {c["name"] for c in inspector.get_columns(t)},
                    inspector.get_pk_constraint(t)["constrained_columns"],
                )
                for t in {location.table for location in (*LOCATIONS, *INDEX_LOCATIONS)}
            }

        async with engine.connect() as conn:
            schema = await conn.run_sync(columns)
        for location in LOCATIONS:
            names, primary_key = schema[location.table]
            assert {location.column, *location.extra_columns} <= names
            assert primary_key == [location.key_column]
        for data_class in DataClass:
            if SPEC_OF[data_class].legacy_purpose:
                assert len(locations_of(data_class)) == 1
        # Each blind-index column: real columns, and computed from an encrypted column of
        # its own class that rewrap knows.
        sealed = {(loc.data_class, loc.table, loc.column) for loc in LOCATIONS}
        for index in INDEX_LOCATIONS:
            names, primary_key = schema[index.table]
            assert set(index.columns_read) <= names
            assert primary_key == [index.key_column]
            assert (index.data_class, index.table, index.source_column) in sealed

    @pytest.mark.parametrize(
        "statement",
        [
            "DELETE FROM crypto_key_version WHERE data_class = 'tax_id'",
            "UPDATE crypto_key_version SET wrapped_key = wrapped_key || wrapped_key "
            "WHERE data_class = 'tax_id' AND kind = 'data'",
            "UPDATE crypto_key_version SET state = 'active' WHERE data_class = 'totp_secret' "
            "AND kind = 'legacy'",
            "UPDATE crypto_key_version SET version = 7 WHERE data_class = 'tax_id'",
        ],
    )
    async def test_the_database_refuses_rewriting_key_history(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        statement: str,
    ) -> None:
        identity = await start(settings, sessions, clock)
        clock.advance(ns=identity.key_management.policy.retire_grace_ns)
        async with unit_of_work(sessions) as session:
            await identity.key_management.retire_unused(
                session, DataClass.TOTP_SECRET, actor=OPERATOR
            )
        with pytest.raises(DBAPIError, match="only ever retired"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
