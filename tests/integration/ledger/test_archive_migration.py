"""Migration 0014 (sealed archive) on SQLite and PostgreSQL: a ledger chained before it keeps
every chain row, hash and tree node and still verifies; the new tables match their models;
events stay append-only except below a recorded purge (AUD-2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import _drop_schema, _postgres_engine
from tests.support.ledger import settle
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.base import Base
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.verify import verify_chain

BEFORE = "0012_audit_search"
COMPARED = {"audit_archive_segment", "audit_archive_purge", "audit_chain"}


@pytest.fixture
async def before_archive(db_backend: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A database migrated to the revision before the archive."""
    if db_backend == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
        await upgrade(engine, BEFORE)
        yield engine
        await engine.dispose()
        return
    engine, schema = await _postgres_engine()
    try:
        await upgrade(engine, BEFORE)
        yield engine
    finally:
        await engine.dispose()
        await _drop_schema(schema)


async def append(engine: AsyncEngine, count: int) -> None:
    clock = FrozenClock()
    ledger = Ledger(clock=clock, ids=IdGenerator(clock))
    async with unit_of_work(session_factory(engine)) as session:
        for n in range(count):
            await ledger.append(
                session,
                LedgerEvent(
                    type="trading:order:placed",
                    subject=Party("account", "acc-1"),
                    data={"order_id": f"ord-{n}", "account_id": "acc-1"},
                ),
            )
    await settle(engine)


async def snapshot(engine: AsyncEngine) -> tuple[list[Any], list[Any]]:
    async with engine.connect() as conn:
        chain = (await conn.execute(text("SELECT * FROM audit_chain ORDER BY seq"))).all()
        nodes = (
            await conn.execute(text("SELECT * FROM audit_tree_node ORDER BY level, idx"))
        ).all()
    return list(chain), list(nodes)


class TestMigration:
    async def test_a_chained_ledger_keeps_every_hash_and_still_verifies(
        self, before_archive: AsyncEngine
    ) -> None:
        await append(before_archive, 40)
        before = await snapshot(before_archive)
        await upgrade(before_archive)
        assert await snapshot(before_archive) == before
        await append(before_archive, 5)  # and the ledger goes on
        report = await verify_chain(before_archive)
        assert report.ok, report.detail
        assert report.verified == 45

    async def test_the_migrated_tables_match_the_models(self, engine: AsyncEngine) -> None:
        def differences(connection: Connection) -> list[Any]:
            def mine(item: Any, name: str | None, type_: str, *_: Any) -> bool:
                table = (
                    name
                    if type_ == "table"
                    else getattr(getattr(item, "table", None), "name", None)
                )
                return table in COMPARED

            context = MigrationContext.configure(connection, opts={"include_object": mine})
            return list(compare_metadata(context, Base.metadata))

        async with engine.connect() as conn:
            assert await conn.run_sync(differences) == []

    @pytest.mark.spec("AUD-2")
    @pytest.mark.parametrize(
        "statement",
        [
            "DELETE FROM audit_event",
            "DELETE FROM audit_event_ref",
            "DELETE FROM audit_chain",
            "UPDATE audit_event SET body = body",
            "INSERT INTO audit_archive_purge (first_seq, through_seq, boundary_chain_hash, "
            "event_count, before_ns, purged_ns) VALUES (1, 3, :h, 3, 0, 0)",
        ],
    )
    async def test_without_a_purge_at_a_sealed_segments_end_events_stay_append_only(
        self, engine: AsyncEngine, statement: str
    ) -> None:
        await append(engine, 3)
        async with engine.connect() as conn:
            chain_hash = (
                await conn.execute(text("SELECT chain_hash FROM audit_chain WHERE seq = 3"))
            ).scalar_one()
        with pytest.raises(DBAPIError, match=r"append-only|sealed segment"):
            async with engine.begin() as conn:
                await conn.execute(text(statement), {"h": chain_hash})
        async with engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM audit_event"))).scalar_one()
        assert count == 3
