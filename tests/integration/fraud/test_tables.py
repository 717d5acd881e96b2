"""Migration 0019 builds exactly the tables the takeover defence's models describe, on SQLite
and PostgreSQL (a model changed without its migration fails here)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard.db.base import Base

TABLES = {
    "fraud_sign_ins",
    "fraud_takeover_prompts",
    "fraud_withdrawal_freezes",
    "fraud_takeover_reviews",
}


def _mine(item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    table = name if type_ == "table" else getattr(getattr(item, "table", None), "name", None)
    return table in TABLES


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"include_object": _mine})
    return list(compare_metadata(context, Base.metadata))


class TestTakeoverTables:
    async def test_the_migrated_tables_match_the_models(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
            tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        assert differences == []
        assert tables >= TABLES
