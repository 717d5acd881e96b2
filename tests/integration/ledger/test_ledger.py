"""Audit ledger v1 against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.ledger import settle, tamper_event_body
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import session_factory, unit_of_work
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
