"""Personal data in ledger events, sealed per subject, and crypto-shredding, against real
SQLite and PostgreSQL databases (ledger/personal/; ENC-3, AUD-1)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.ledger import settle
from tradeguard.core.clock import FrozenClock
from tradeguard.core.errors import InvalidInput
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.db.base import Base
from tradeguard.db.engine import session_factory, unit_of_work
from tradeguard.ledger.domain import LedgerEvent, Party, PersonalData
from tradeguard.ledger.personal.fields import PersonalDataInPlaintext
from tradeguard.ledger.personal.forget import forget_subject
from tradeguard.ledger.personal.keys import SubjectKeys
from tradeguard.ledger.personal.repository import purge_old_versions
from tradeguard.ledger.personal.sealing import ERASED, UNREADABLE
from tradeguard.ledger.personal.subjects import PersonalDataEvent
from tradeguard.ledger.service import (
    Ledger,
    PersonalDataUnsupported,
    SequencedEvent,
    events_after,
    events_of_actors,
)
from tradeguard.ledger.verify import verify_chain

ADA = Party("user", "0190c5a0-0000-7000-8000-00000000000a")
BOB = Party("user", "0190c5a0-0000-7000-8000-00000000000b")
ADA_EMAIL, ADA_IP = "ada.lovelace@example.com", "198.51.100.23"
BOB_EMAIL, BOB_IP = "bob.babbage@example.org", "2001:db8::b0b"
OPERATOR = Party("operator", "dpo")
KEY_TABLE = "audit_subject_key"


def sign_in(who: Party, *, email: str, ip: str) -> LedgerEvent:
    return LedgerEvent(
        type="identity:login:succeeded",
        actor=who,
        subject=who,
        data={"method": "password", "device_id": "d1"},
        personal=PersonalData(who, {"email": email, "ip": ip}),
    )


def order(n: int) -> LedgerEvent:
    return LedgerEvent(
        type="trading:order:placed",
        actor=Party("user", f"u{n % 3}"),
        subject=Party("order", f"o{n}"),
        data={"symbol": "AAPL", "quantity": n},
    )


@pytest.fixture
def keyring() -> LocalKeyring:
    return LocalKeyring(secrets.token_bytes(32))


def personal_ledger(keyring: LocalKeyring, clock: FrozenClock) -> Ledger:
    ids = IdGenerator(clock)
    return Ledger(clock=clock, ids=ids, subject_keys=SubjectKeys(keyring, clock=clock, ids=ids))


@pytest.fixture
def ledger(keyring: LocalKeyring, clock: FrozenClock) -> Ledger:
    return personal_ledger(keyring, clock)


def keys_of(ledger: Ledger) -> SubjectKeys:
    assert ledger.subject_keys is not None
    return ledger.subject_keys


async def append(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger, *events: LedgerEvent
) -> None:
    async with unit_of_work(sessions) as session:
        for item in events:
            await ledger.append(session, item)


async def read_all(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger
) -> list[SequencedEvent]:
    async with unit_of_work(sessions) as session:
        return await events_after(session, after_seq=0, limit=1000, keys=keys_of(ledger))


async def raw_bodies(engine: AsyncEngine) -> list[bytes]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT body FROM audit_event ORDER BY pk"))
        return [bytes(body) for (body,) in rows]


async def key_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        query = (
            "SELECT key_id, subject, wrapped_key, destroyed_ns FROM audit_subject_key "
            "ORDER BY created_ns, key_id"
        )
        return list(await conn.execute(text(query)))


async def forget(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger, who: Party, clock: FrozenClock
) -> tuple[str, ...]:
    async with unit_of_work(sessions) as session:
        forgotten = await forget_subject(
            session,
            ledger=ledger,
            subject=who,
            actor=OPERATOR,
            reason="erasure request 2026-0042",
            now_ns=clock.now_ns(),
        )
    return forgotten.destroyed_keys


def personal_of(events: list[SequencedEvent], who: Party) -> list[dict[str, Any]]:
    return [
        e.document["personal"]
        for e in events
        if e.document["type"] == "identity:login:succeeded" and e.document["actor"]["id"] == who.id
    ]


class TestSealedOnAppend:
    @pytest.mark.spec("ENC-3")
    async def test_personal_fields_are_stored_only_as_ciphertext_and_read_back(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP), order(1))
        await settle(engine)

        bodies = await raw_bodies(engine)
        for body in bodies:
            for secret in (ADA_EMAIL, ADA_IP, "ada.lovelace", "198.51.100"):
                assert secret.encode() not in body
        stored = json.loads(bodies[0])
        assert set(stored["personal"]) == {"alg", "key", "fields", "ct"}
        assert stored["personal"]["fields"] == ["email", "ip"]
        assert stored["data"] == {"method": "password", "device_id": "d1"}
        assert "personal" not in json.loads(bodies[1])  # no personal data, no section
        [login, placed] = await read_all(sessions, ledger)
        assert login.document["personal"] == {"email": ADA_EMAIL, "ip": ADA_IP}
        assert "personal" not in placed.document

    async def test_the_key_table_holds_only_the_wrapped_key(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
        [row] = await key_rows(engine)
        assert row.subject == f"user:{ADA.id}"
        assert row.destroyed_ns is None
        assert len(bytes(row.wrapped_key)) == 1 + 8 + 12 + 32 + 16  # version, key id, nonce, tag

    @pytest.mark.parametrize(
        "data",
        [
            {"ip": ADA_IP},
            {"email": ADA_EMAIL, "symbol": "AAPL"},
            {"params": {"client_ip": ADA_IP}},
            {"devices": [{"user_agent": "Firefox/128"}]},
        ],
    )
    async def test_plaintext_personal_fields_in_data_are_refused_and_nothing_is_written(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        data: dict[str, Any],
    ) -> None:
        with pytest.raises(PersonalDataInPlaintext) as refused:
            await append(sessions, ledger, order(1), LedgerEvent(type="identity:user:x", data=data))
        assert ADA_IP not in str(refused.value)
        assert ADA_EMAIL not in str(refused.value)
        assert await raw_bodies(engine) == []
        assert await key_rows(engine) == []

    async def test_a_ledger_without_subject_keys_refuses_personal_data(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
    ) -> None:
        plain = Ledger(clock=clock, ids=IdGenerator(clock))
        with pytest.raises(PersonalDataUnsupported):
            await append(sessions, plain, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
        assert await raw_bodies(engine) == []


class TestCryptoShredding:
    @pytest.mark.spec("ENC-3", "AUD-2")
    async def test_a_forgotten_subject_reads_as_erased_and_the_whole_ledger_still_verifies(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        clock: FrozenClock,
    ) -> None:
        await append(
            sessions,
            ledger,
            sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP),
            order(1),
            sign_in(BOB, email=BOB_EMAIL, ip=BOB_IP),
            sign_in(ADA, email=ADA_EMAIL, ip="203.0.113.9"),
            order(2),
        )
        await settle(engine)
        before = await raw_bodies(engine)
        assert (await verify_chain(engine)).verified == 5

        destroyed = await forget(sessions, ledger, ADA, clock)
        await purge_old_versions(engine)  # VACUUM (PostgreSQL), WAL checkpoint (SQLite)
        await settle(engine)

        report = await verify_chain(engine)
        assert report.ok, report.detail
        assert report.verified == 6  # the five, and the record of the forgetting
        assert (await raw_bodies(engine))[:5] == before  # not one stored byte changed
        events = await read_all(sessions, ledger)
        assert personal_of(events, ADA) == [{"email": ERASED, "ip": ERASED}] * 2
        assert personal_of(events, BOB) == [{"email": BOB_EMAIL, "ip": BOB_IP}]
        [ada_key] = [r for r in await key_rows(engine) if r.subject == f"user:{ADA.id}"]
        assert destroyed == (ada_key.key_id,)
        assert ada_key.wrapped_key is None
        assert ada_key.destroyed_ns == clock.now_ns()

    @pytest.mark.spec("AUD-1")
    async def test_the_forgetting_is_recorded_naming_subject_and_operator_but_no_personal_data(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        clock: FrozenClock,
    ) -> None:
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
        destroyed = await forget(sessions, ledger, ADA, clock)
        await settle(engine)
        record = (await read_all(sessions, ledger))[-1].document
        assert record["type"] == PersonalDataEvent.SUBJECT_FORGOTTEN
        assert record["actor"] == {"kind": "operator", "id": "dpo"}
        assert record["subject"] == {"kind": "user", "id": ADA.id}
        assert record["data"] == {
            "destroyed_keys": list(destroyed),
            "reason": "erasure request 2026-0042",
        }
        assert "personal" not in record
        body = (await raw_bodies(engine))[-1]
        assert ADA_EMAIL.encode() not in body
        assert ADA_IP.encode() not in body

    async def test_forgetting_a_subject_with_no_data_is_recorded_all_the_same(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        clock: FrozenClock,
    ) -> None:
        assert await forget(sessions, ledger, BOB, clock) == ()
        await settle(engine)
        [record] = await read_all(sessions, ledger)
        assert record.document["data"]["destroyed_keys"] == []
        assert await key_rows(engine) == []

    @pytest.mark.parametrize(
        "who",
        [
            Party("user", "bad"),
            Party("user", ""),
            Party("user", "../../x"),
            Party("user", "0190C5A0-0000-7000-8000-00000000000A"),
            Party("visitors", "2026-13"),
            Party("account", "0190c5a0-0000-7000-8000-00000000000a"),
        ],
    )
    async def test_a_subject_that_names_nobody_is_refused_and_nothing_recorded(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        clock: FrozenClock,
        who: Party,
    ) -> None:
        with pytest.raises(InvalidInput, match="a subject is user:<id>"):
            await forget(sessions, ledger, who, clock)
        await settle(engine)
        assert await read_all(sessions, ledger) == []

    async def test_data_recorded_after_forgetting_gets_a_new_key(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        clock: FrozenClock,
    ) -> None:
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
        await forget(sessions, ledger, ADA, clock)
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip="203.0.113.9"))
        await settle(engine)
        events = await read_all(sessions, ledger)
        assert personal_of(events, ADA) == [
            {"email": ERASED, "ip": ERASED},
            {"email": ADA_EMAIL, "ip": "203.0.113.9"},
        ]
        rows = await key_rows(engine)
        assert [r.destroyed_ns is None for r in rows] == [False, True]

    async def test_a_subject_forgotten_by_another_process_reads_as_erased_at_once(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        keyring: LocalKeyring,
        clock: FrozenClock,
    ) -> None:
        # This process has Ada's key cached (read back by a second transaction)...
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
        await settle(engine)
        assert personal_of(await read_all(sessions, ledger), ADA)[0]["ip"] == ADA_IP
        # ... when another one (its own ledger and cache) forgets her.
        await forget(sessions, personal_ledger(keyring, clock), ADA, clock)
        await settle(engine)
        assert (
            personal_of(await read_all(sessions, ledger), ADA)
            == [{"email": ERASED, "ip": ERASED}] * 2
        )

    async def test_detectors_reading_by_actor_see_the_erased_marker_not_an_error(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        clock: FrozenClock,
    ) -> None:
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP), order(1))
        await forget(sessions, ledger, ADA, clock)
        await settle(engine)
        async with unit_of_work(sessions) as session:
            events = await events_of_actors(
                session, [ADA.id], since_ns=0, through_seq=10, keys=keys_of(ledger)
            )
        assert [e.document["personal"] for e in events] == [{"email": ERASED, "ip": ERASED}]


def _key_table_differences(connection: Connection) -> list[Any]:
    def mine(item: Any, name: str | None, type_: str, *_: Any) -> bool:
        table = name if type_ == "table" else getattr(getattr(item, "table", None), "name", None)
        return table == KEY_TABLE

    context = MigrationContext.configure(connection, opts={"include_object": mine})
    return list(compare_metadata(context, Base.metadata))


class TestKeyTableRules:
    async def test_the_migrated_table_matches_the_model(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            assert await conn.run_sync(_key_table_differences) == []

    async def _destroyed_and_live(
        self, sessions: async_sessionmaker[AsyncSession], ledger: Ledger, clock: FrozenClock
    ) -> None:
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
        await append(sessions, ledger, sign_in(BOB, email=BOB_EMAIL, ip=BOB_IP))
        await forget(sessions, ledger, ADA, clock)

    @pytest.mark.spec("ENC-3")
    @pytest.mark.parametrize(
        "statement",
        [
            # Restore a destroyed key (from a backup, say).
            "UPDATE {t} SET wrapped_key = (SELECT wrapped_key FROM {t} WHERE subject = :bob), "
            "destroyed_ns = NULL WHERE subject = :ada",
            # Rewrite a live key and its creation time. (A rewrap may change the wrapped
            # bytes alone: they are bound to the subject and key id, so only the keyring
            # can write bytes that open there, and they open to the same data key.)
            "UPDATE {t} SET wrapped_key = wrapped_key, created_ns = created_ns + 1 "
            "WHERE subject = :bob",
            # Move a key to another subject.
            "UPDATE {t} SET subject = :ada WHERE subject = :bob",
            # Destroy without saying when.
            "UPDATE {t} SET wrapped_key = NULL WHERE subject = :bob",
            # Remove rows: a destroyed one, a live one.
            "DELETE FROM {t} WHERE subject = :ada",
            "DELETE FROM {t} WHERE subject = :bob",
        ],
    )
    async def test_the_database_refuses_every_change_but_destroying(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        clock: FrozenClock,
        statement: str,
    ) -> None:
        await self._destroyed_and_live(sessions, ledger, clock)
        before = await key_rows(engine)
        with pytest.raises(DBAPIError, match="only ever destroyed"):
            async with engine.begin() as conn:
                await conn.execute(
                    text(statement.format(t=KEY_TABLE)),
                    {"ada": f"user:{ADA.id}", "bob": f"user:{BOB.id}"},
                )
        assert await key_rows(engine) == before

    @pytest.mark.spec("ENC-3")
    @pytest.mark.postgres
    async def test_postgres_refuses_truncate(
        self, pg_engine: AsyncEngine, ledger: Ledger, clock: FrozenClock
    ) -> None:
        await self._destroyed_and_live(session_factory(pg_engine), ledger, clock)
        with pytest.raises(DBAPIError, match="only ever destroyed"):
            async with pg_engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {KEY_TABLE}"))


async def _behind_the_trigger(engine: AsyncEngine, statement: str, params: dict[str, Any]) -> None:
    """Run one statement on the key table with its trigger off, as an attacker could."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            trigger = f"{KEY_TABLE}_destroy_only"
            await conn.execute(text(f"ALTER TABLE {KEY_TABLE} DISABLE TRIGGER {trigger}"))
            await conn.execute(text(statement), params)
            await conn.execute(text(f"ALTER TABLE {KEY_TABLE} ENABLE TRIGGER {trigger}"))
            return
        name = f"{KEY_TABLE}_destroy_only"
        sql = (
            await conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :n"),
                {"n": name},
            )
        ).scalar_one()
        await conn.execute(text(f"DROP TRIGGER {name}"))
        await conn.execute(text(statement), params)
        await conn.execute(text(sql))


@pytest.mark.spec("ENC-3")
class TestBinding:
    async def test_a_personal_section_moved_to_another_event_does_not_open(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
    ) -> None:
        await append(
            sessions,
            ledger,
            sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP),
            sign_in(ADA, email=ADA_EMAIL, ip="203.0.113.9"),
            sign_in(BOB, email=BOB_EMAIL, ip=BOB_IP),
        )
        ada_1, ada_2, bob = (json.loads(body) for body in await raw_bodies(engine))
        # Ada's sealed address pasted into Bob's event, and into another of her own.
        forged = [{**bob, "personal": ada_1["personal"]}, {**ada_2, "personal": ada_1["personal"]}]
        async with unit_of_work(sessions) as session:
            await keys_of(ledger).open_documents(session, forged)
        assert [d["personal"] for d in forged] == [{"email": UNREADABLE, "ip": UNREADABLE}] * 2

    async def test_a_wrapped_key_moved_to_another_subject_does_not_unwrap(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        keyring: LocalKeyring,
        clock: FrozenClock,
    ) -> None:
        await append(
            sessions,
            personal_ledger(keyring, clock),
            sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP),
            sign_in(BOB, email=BOB_EMAIL, ip=BOB_IP),
        )
        await settle(engine)
        await _behind_the_trigger(
            engine,
            "UPDATE audit_subject_key SET wrapped_key = "
            "(SELECT wrapped_key FROM audit_subject_key WHERE subject = :ada) WHERE subject = :bob",
            {"ada": f"user:{ADA.id}", "bob": f"user:{BOB.id}"},
        )
        # A fresh process (nothing cached) reads Bob's event under Ada's key: refused.
        events = await read_all(sessions, personal_ledger(keyring, clock))
        assert personal_of(events, ADA) == [{"email": ADA_EMAIL, "ip": ADA_IP}]
        assert personal_of(events, BOB) == [{"email": UNREADABLE, "ip": UNREADABLE}]

    async def test_a_section_naming_an_unknown_key_reads_as_unreadable(
        self, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        documents: list[dict[str, Any]] = [
            {
                "id": "e1",
                "personal": {"alg": "A256GCM", "key": "nope", "fields": ["ip"], "ct": "A" * 40},
            },
            {"id": "e2", "personal": {"alg": "ROT13", "fields": ["email"]}},
            {"id": "e3", "personal": "not a section"},
        ]
        async with unit_of_work(sessions) as session:
            await keys_of(ledger).open_documents(session, documents)
        assert [d["personal"] for d in documents] == [
            {"ip": UNREADABLE},
            {"email": UNREADABLE},
            {},
        ]


class StatementLog:
    """Every SQL statement an engine runs, while installed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def _seen(self, *args: Any) -> None:
        self.statements.append(str(args[2]))

    def touching_keys(self) -> list[str]:
        return [s for s in self.statements if KEY_TABLE in s]

    def __enter__(self) -> StatementLog:
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._seen)


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[StatementLog]:
    with StatementLog(engine) as log:
        yield log


class TestKeyCache:
    async def test_events_without_personal_data_never_touch_the_key_table(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        statements: StatementLog,
    ) -> None:
        await append(sessions, ledger, *(order(n) for n in range(20)))
        assert statements.touching_keys() == []

    async def test_a_subjects_key_is_looked_up_until_seen_committed_then_never_again(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        statements: StatementLog,
    ) -> None:
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
        created = statements.touching_keys()
        assert [s.split()[0] for s in created] == ["SELECT", "INSERT"]
        statements.statements.clear()
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
        assert [s.split()[0] for s in statements.touching_keys()] == ["SELECT"]
        statements.statements.clear()
        for _ in range(5):
            await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP), order(1))
        assert statements.touching_keys() == []

    async def test_a_key_created_in_a_rolled_back_transaction_is_never_used(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
    ) -> None:
        async def failing_change() -> None:
            async with unit_of_work(sessions) as session:
                await ledger.append(session, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
                raise RuntimeError("the change failed after its audit event")

        with pytest.raises(RuntimeError):
            await failing_change()
        async with unit_of_work(sessions) as session:
            # A savepoint that rolls back takes its key with it; the next append makes another.
            async with session.begin_nested() as savepoint:
                await ledger.append(session, sign_in(ADA, email=ADA_EMAIL, ip="192.0.2.1"))
                await savepoint.rollback()
            await ledger.append(session, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
        await append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip="203.0.113.9"))
        await settle(engine)
        assert len(await key_rows(engine)) == 1
        events = await read_all(sessions, ledger)
        assert personal_of(events, ADA) == [
            {"email": ADA_EMAIL, "ip": ADA_IP},
            {"email": ADA_EMAIL, "ip": "203.0.113.9"},
        ]


async def _lock_waiters(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return int(found or 0)


@pytest.mark.postgres
class TestConcurrentFirstUse:
    async def test_a_second_transaction_waits_for_the_first_key_and_takes_it(
        self, pg_engine: AsyncEngine, ledger: Ledger
    ) -> None:
        sessions = session_factory(pg_engine)
        async with sessions() as first:
            await ledger.append(first, sign_in(ADA, email=ADA_EMAIL, ip=ADA_IP))
            second = asyncio.create_task(
                append(sessions, ledger, sign_in(ADA, email=ADA_EMAIL, ip="203.0.113.9"))
            )
            for _ in range(500):  # the second INSERT waits on the first's uncommitted key
                if await _lock_waiters(pg_engine):
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the second transaction never waited for the first key")
            await first.commit()
        await second
        await settle(pg_engine)
        assert len(await key_rows(pg_engine)) == 1
        events = await read_all(sessions, ledger)
        assert sorted(p["ip"] for p in personal_of(events, ADA)) == [ADA_IP, "203.0.113.9"]

    async def test_many_first_uses_at_once_create_one_key_per_subject(
        self, pg_engine: AsyncEngine, keyring: LocalKeyring, clock: FrozenClock
    ) -> None:
        sessions = session_factory(pg_engine)
        # Eight processes (a ledger and a cache each) see Ada and Bob for the first time.
        ledgers = [personal_ledger(keyring, clock) for _ in range(8)]
        await asyncio.gather(
            *(
                append(
                    sessions,
                    each,
                    sign_in(ADA, email=ADA_EMAIL, ip=f"198.51.100.{n}"),
                    sign_in(BOB, email=BOB_EMAIL, ip=f"2001:db8::{n}"),
                )
                for n, each in enumerate(ledgers)
            )
        )
        await settle(pg_engine)
        rows = await key_rows(pg_engine)
        assert sorted(r.subject for r in rows) == [f"user:{ADA.id}", f"user:{BOB.id}"]
        events = await read_all(sessions, ledgers[0])
        assert sorted(p["ip"] for p in personal_of(events, ADA)) == sorted(
            f"198.51.100.{n}" for n in range(8)
        )
        assert len(personal_of(events, BOB)) == 8
