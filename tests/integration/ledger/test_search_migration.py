"""Migration 0012 (AUD-3): the search index of events stored before it, append-only like the
ledger, and the tables and indexes the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import _drop_schema, _postgres_engine
from tests.support.ledger import settle
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.base import Base
from tradeguard.db.engine import create_engine, read_only
from tradeguard.db.migrate import MIGRATIONS_DIR, alembic_config, upgrade
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.domain import SYSTEM, LedgerEvent, Party
from tradeguard.ledger.models import AuditEventRow
from tradeguard.ledger.search import references as live_rules
from tradeguard.ledger.search.query import SortOrder, build_filter
from tradeguard.ledger.search.references import document_references
from tradeguard.ledger.search.service import search_page

REVISION = "0012_audit_search"
COMPARED = {"audit_event", "audit_event_ref"}


def migration_module() -> ModuleType:
    path = next((MIGRATIONS_DIR / "versions").glob(f"{REVISION}.py"))
    spec = importlib.util.spec_from_file_location("migration_0012", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def previous_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config()).get_revision(REVISION)
    assert script is not None
    assert isinstance(script.down_revision, str)
    return script.down_revision


@pytest.fixture
async def unmigrated(db_backend: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An empty database, migrated to the revision before the search index."""
    if db_backend == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
        await upgrade(engine, previous_revision())
        yield engine
        await engine.dispose()
        return
    engine, schema = await _postgres_engine()
    try:
        await upgrade(engine, previous_revision())
        yield engine
    finally:
        await engine.dispose()
        await _drop_schema(schema)


def old_events() -> list[LedgerEvent]:
    return [
        LedgerEvent(
            type="trading:order:placed",
            actor=Party("user", "u-1"),
            subject=Party("account", "acc-1"),
            data={"order_id": "ord-1", "account_id": "acc-1", "replaces_order_id": "ord-0"},
        ),
        LedgerEvent(
            type="trading:halt:started",
            actor=Party("staff", "s-1"),
            subject=Party("market", "*"),
            data={"cancelled_orders": ["ord-1", "ord-2"]},
        ),
        LedgerEvent(
            type="access:permission:checked",
            actor=Party("user", "s-1"),
            subject=Party("session", "x"),
            data={"params": {"account_id": "acc-2"}, "allowed": True},
        ),
        LedgerEvent(type="system:platform:initialized", actor=SYSTEM, data={}),
        LedgerEvent(
            type="trading:execution:created",
            actor=SYSTEM,
            subject=Party("account", "acc-2"),
            data={"order_id": "ord-2", "price": "1.5"},
        ),
    ]


async def store_old_events(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Events as the ledger before this migration stored them (no references)."""
    clock = FrozenClock()
    ids = IdGenerator(clock)
    documents = []
    async with engine.begin() as conn:
        for event in old_events():
            clock.advance(ns=1)
            document = event.envelope(event_id=ids.new_str(), occurred_ns=clock.now_ns())
            await conn.execute(
                insert(AuditEventRow.__table__).values(
                    event_id=document["id"],
                    event_type=event.type,
                    occurred_ns=clock.now_ns(),
                    actor_id=event.actor.id,
                    subject_id=event.subject.id if event.subject else None,
                    body=canonical_bytes(document),
                )
            )
            documents.append(json.loads(canonical_bytes(document)))
    await settle(engine)
    return documents


class TestBackfill:
    @pytest.mark.spec("AUD-3")
    async def test_events_stored_before_the_migration_are_indexed_by_it(
        self, unmigrated: AsyncEngine
    ) -> None:
        documents = await store_old_events(unmigrated)
        await upgrade(unmigrated)
        async with unmigrated.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT e.event_id, e.txid, r.kind, r.value, r.txid FROM audit_event_ref r "
                        "JOIN audit_event e ON e.pk = r.event_pk ORDER BY e.pk, r.kind, r.value"
                    )
                )
            ).all()
            await read_only(conn)
            page = await search_page(
                conn, build_filter(order_id="ord-1"), sort=SortOrder.OLDEST, limit=10
            )
        stored = {(event_id, kind, value) for event_id, _, kind, value, _ in rows}
        expected = {
            (document["id"], kind, value)
            for document in documents
            for kind, value in document_references(document)
        }
        assert stored == expected
        assert ("account", "acc-2") in {(k, v) for _, k, v in stored}  # from params
        # The copied references keep their event's transaction id (NULL on SQLite).
        assert all(event_txid == ref_txid for _, event_txid, _, _, ref_txid in rows)
        assert [e.event_id for e in page.items] == [documents[0]["id"], documents[1]["id"]]

    def test_the_migrations_rules_are_the_ledgers_rules(self) -> None:
        migration = migration_module()
        assert {k: v.value for k, v in live_rules.DATA_KEYS.items()} == migration.DATA_KEYS
        assert {k: v.value for k, v in live_rules.PARAMS_KEYS.items()} == migration.PARAMS_KEYS
        assert {k: v.value for k, v in live_rules.PARTY_KINDS.items()} == migration.PARTY_KINDS
        assert migration.MAX_REFERENCE_CHARS == live_rules.MAX_REFERENCE_CHARS
        assert migration.ID_PATTERN.pattern == live_rules.ID_PATTERN.pattern
        for event in old_events():
            document = json.loads(canonical_bytes(event.envelope(event_id="e", occurred_ns=1)))
            assert migration.references(document) == document_references(document)


class TestReferenceTable:
    @pytest.mark.spec("AUD-2")
    async def test_references_are_append_only(self, engine: AsyncEngine) -> None:
        clock = FrozenClock()
        from tradeguard.db.engine import session_factory, unit_of_work  # noqa: PLC0415
        from tradeguard.ledger.service import Ledger  # noqa: PLC0415

        async with unit_of_work(session_factory(engine)) as session:
            await Ledger(clock=clock, ids=IdGenerator(clock)).append(session, old_events()[0])
        for statement in (
            "UPDATE audit_event_ref SET value = 'acc-9'",
            "DELETE FROM audit_event_ref",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as conn:
                    await conn.execute(text(statement))
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM audit_event_ref")) == 3

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

        def known(difference: Any) -> bool:
            # Migration 0003 made audit_event.txid NOT NULL on PostgreSQL only (the model is
            # shared with SQLite, where it stays NULL): older than this migration.
            return (
                isinstance(difference, list)
                and difference[0][0] == "modify_nullable"
                and difference[0][2:4] == ("audit_event", "txid")
            )

        async with engine.connect() as conn:
            found = [d for d in await conn.run_sync(differences) if not known(d)]
        assert found == []
