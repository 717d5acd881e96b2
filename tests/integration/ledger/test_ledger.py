"""Audit ledger v1 against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json
import secrets

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import POSTGRES_URL, require_service
from tests.support.ledger import (
    cut_chain_after,
    settle,
    smuggle_event_behind_cursor,
    tamper_event_body,
)
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import current_revision, upgrade
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.verify import Failure, verify_chain


def order_event(n: int) -> LedgerEvent:
    return LedgerEvent(
        type="trading:order:placed",
        actor=Party("user", f"u{n % 3}"),
        subject=Party("order", f"o{n}"),
        data={"symbol": "AAPL", "quantity": n, "limit_price": "187.25"},
    )


async def append_many(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger, count: int
) -> None:
    async with unit_of_work(sessions) as session:
        for n in range(count):
            await ledger.append(session, order_event(n))


@pytest.fixture
def ledger(clock: FrozenClock) -> Ledger:
    return Ledger(clock=clock, ids=IdGenerator(clock))


class TestAppendAndVerify:
    @pytest.mark.spec("AUD-1", "AUD-3")
    async def test_appended_events_are_chained_and_verify(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        await append_many(sessions, ledger, 25)
        chained = await settle(engine)
        report = await verify_chain(engine)
        assert chained == 25
        assert report.ok, report.detail
        assert report.verified == 25
        assert report.unsequenced == 0

    @pytest.mark.spec("AUD-3")
    async def test_event_is_canonical_json_with_nanosecond_timestamp(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        clock: FrozenClock,
    ) -> None:
        clock.advance(ns=123_456_789)
        async with unit_of_work(sessions) as session:
            appended = await ledger.append(session, order_event(7))
        document = json.loads(appended.body)
        assert document["ts"] == str(clock.now_ns())
        assert document["ts"].endswith("123456789")
        assert document["type"] == "trading:order:placed"
        assert appended.body == json.dumps(document, separators=(",", ":"), sort_keys=True).encode()

    @pytest.mark.spec("AUD-1")
    async def test_rolled_back_change_leaves_no_audit_event(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        async def failing_change() -> None:
            async with unit_of_work(sessions) as session:
                await ledger.append(session, order_event(1))
                raise RuntimeError("business rule failed after the audit append")

        with pytest.raises(RuntimeError, match="business rule"):
            await failing_change()
        await append_many(sessions, ledger, 1)
        await settle(engine)
        report = await verify_chain(engine)
        assert report.ok
        assert report.verified == 1

    async def test_empty_ledger_verifies(self, engine: AsyncEngine) -> None:
        report = await verify_chain(engine)
        assert report.ok
        assert report.verified == 0

    async def test_unsequenced_events_are_reported_not_failed(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        await append_many(sessions, ledger, 3)
        report = await verify_chain(engine)
        assert report.ok
        assert report.unsequenced == 3


class TestAppendOnly:
    @pytest.mark.spec("AUD-2", "ENC-3")
    @pytest.mark.parametrize("table", ["audit_event", "audit_chain"])
    @pytest.mark.parametrize("statement", ["UPDATE {t} SET {c} = {c}", "DELETE FROM {t}"])
    async def test_database_refuses_update_and_delete(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        table: str,
        statement: str,
    ) -> None:
        await append_many(sessions, ledger, 2)
        await settle(engine)
        column = "body" if table == "audit_event" else "leaf_hash"
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement.format(t=table, c=column)))
        assert (await verify_chain(engine)).verified == 2

    @pytest.mark.spec("AUD-2")
    @pytest.mark.postgres
    async def test_postgres_refuses_truncate(self, pg_engine: AsyncEngine, ledger: Ledger) -> None:
        await append_many(session_factory(pg_engine), ledger, 1)
        with pytest.raises(DBAPIError, match="append-only"):
            async with pg_engine.begin() as conn:
                await conn.execute(text("TRUNCATE audit_event CASCADE"))


class TestTamperEvidence:
    @pytest.mark.spec("AUD-2", "ENC-3")
    async def test_row_altered_behind_the_triggers_fails_naming_its_sequence(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        await append_many(sessions, ledger, 10)
        await settle(engine)
        async with engine.connect() as conn:
            original = (
                await conn.execute(
                    text(
                        "SELECT body FROM audit_event e JOIN audit_chain c ON c.event_pk = e.pk "
                        "WHERE c.seq = 7"
                    )
                )
            ).scalar_one()
        forged = bytes(original).replace(b'"quantity":6', b'"quantity":600')
        assert forged != bytes(original)
        await tamper_event_body(engine, seq=7, new_body=forged)
        report = await verify_chain(engine)
        assert not report.ok
        assert report.first_bad_seq == 7
        assert report.failure is Failure.EVENT_ALTERED
        assert report.verified == 6

    @pytest.mark.spec("AUD-2")
    async def test_rows_cut_off_the_end_of_the_chain_fail_naming_the_first_missing(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        await append_many(sessions, ledger, 10)
        await settle(engine)
        await cut_chain_after(engine, seq=8)
        report = await verify_chain(engine)
        assert not report.ok
        assert report.failure is Failure.MISSING_SEQUENCE
        assert report.first_bad_seq == 9
        assert report.verified == 8
        assert "sequence 9" in report.detail

    @pytest.mark.spec("AUD-2")
    async def test_event_inserted_behind_the_sequencers_cursor_fails(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        await append_many(sessions, ledger, 4)
        await settle(engine)
        pk = await smuggle_event_behind_cursor(engine, event_id="smuggled-1")
        await append_many(sessions, ledger, 2)
        await settle(engine)  # the sequencer moves on; it never picks the smuggled event up
        report = await verify_chain(engine)
        assert not report.ok
        assert report.failure is Failure.UNCHAINED_EVENT
        assert report.unchained_event_pk == pk
        assert report.verified == 6
        assert report.first_bad_seq == 7
        assert f"event pk {pk} (id smuggled-1)" in report.detail
        assert report.unsequenced == 0

    @pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)  # bytea holds no TEXT
    async def test_an_unchained_event_stored_as_text_is_chained_and_named_not_a_stall(
        self, engine: AsyncEngine
    ) -> None:
        """An event row typed in by hand with a TEXT body (SQLite keeps what it is given)
        crashed every sequencer pass, so no later event was ever chained."""
        sqlite_engine = engine
        sessions = session_factory(sqlite_engine)
        clock = FrozenClock()
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        await append_many(sessions, ledger, 3)
        await settle(sqlite_engine)
        async with sqlite_engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO audit_event (event_id, event_type, occurred_ns, body) "
                    "VALUES ('typed-in', 'test:typed:event', 1, :body)"
                ),
                {"body": '{"typed":true}'},  # a str: stored as TEXT
            )
        await append_many(sessions, ledger, 2)
        await settle(sqlite_engine)
        report = await verify_chain(sqlite_engine)
        assert report.unsequenced == 0  # everything chained, the row typed in too
        assert report.failure is Failure.EVENT_ALTERED
        assert report.first_bad_seq == 4

    @pytest.mark.spec("AUD-2")
    async def test_chain_not_ending_in_the_recorded_head_fails(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        await append_many(sessions, ledger, 5)
        await settle(engine)
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE audit_sequencer_state SET last_chain_hash = :h"), {"h": bytes(32)}
            )
        report = await verify_chain(engine)
        assert not report.ok
        assert report.failure is Failure.HEAD_MISMATCH
        assert report.first_bad_seq == 5

    async def test_events_after_the_cursor_are_awaiting_not_unchained(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        await append_many(sessions, ledger, 3)
        await settle(engine)
        await append_many(sessions, ledger, 2)
        report = await verify_chain(engine)
        assert report.ok, report.detail
        assert (report.verified, report.unsequenced) == (3, 2)


@pytest.mark.postgres
class TestPostgresTxid:
    @pytest.mark.spec("AUD-1")
    async def test_database_sets_txid_whatever_the_client_sends(
        self, pg_engine: AsyncEngine
    ) -> None:
        async with pg_engine.begin() as conn:
            own = (
                await conn.execute(text("SELECT pg_current_xact_id()::text::bigint"))
            ).scalar_one()
            stored = (
                await conn.execute(
                    text(
                        "INSERT INTO audit_event (event_id, event_type, occurred_ns, body, txid) "
                        "VALUES ('e-1', 'test:txid:forged', 1, 'x', 1) RETURNING txid"
                    )
                )
            ).scalar_one()
        assert stored == own != 1

    @pytest.mark.spec("AUD-1")
    async def test_txid_cannot_be_null(self, pg_engine: AsyncEngine) -> None:
        async def insert_null_txid() -> None:
            async with pg_engine.begin() as conn:
                await conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_txid"))
                await conn.execute(
                    text(
                        "INSERT INTO audit_event (event_id, event_type, occurred_ns, body, txid) "
                        "VALUES ('e-1', 'test:txid:null', 1, 'x', NULL)"
                    )
                )

        with pytest.raises(DBAPIError, match=r'null value in column "txid"'):
            await insert_null_txid()

    async def test_upgrade_stops_on_events_with_a_null_txid(self) -> None:
        # Such rows were never chained; the migration refuses rather than rewrite audit rows.
        schema = "t_" + secrets.token_hex(6)
        admin = create_engine(POSTGRES_URL, pool_size=1)
        try:
            async with admin.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except OSError as exc:
            await admin.dispose()
            require_service("PostgreSQL", exc)
        engine = create_engine(POSTGRES_URL, pg_schema=schema, pool_size=1)
        try:
            await upgrade(engine, "0002_identity")
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO audit_event (event_id, event_type, occurred_ns, body, txid) "
                        "VALUES ('e-1', 'test:txid:null', 1, 'x', NULL)"
                    )
                )
            with pytest.raises(RuntimeError, match="1 row"):
                await upgrade(engine)
            assert await current_revision(engine) == "0002_identity"
        finally:
            await engine.dispose()
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            await admin.dispose()
