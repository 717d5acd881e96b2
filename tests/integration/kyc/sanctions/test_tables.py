"""Migration 0022 builds exactly the tables the sanctions models describe (and the bank
account holder's column), on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.tables import model_differences

TABLES = {
    "sanctions_list_versions",
    "sanctions_entries",
    "sanctions_names",
    "sanctions_hits",
    "sanctions_rescreens",
    "funds_bank_accounts",
}


async def test_the_migrated_tables_match_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        differences = await conn.run_sync(model_differences(TABLES))
        tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
    assert differences == []
    assert tables >= TABLES
