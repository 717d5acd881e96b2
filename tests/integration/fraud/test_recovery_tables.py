"""Migration 0022 builds exactly the tables account recovery's models describe (its cases,
proposals and marks, and trading's execution reversals), on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.tables import model_differences

TABLES = {
    "fraud_recovery_cases",
    "fraud_recovery_proposals",
    "fraud_recovery_marks",
    "execution_reversals",
}


class TestRecoveryTables:
    async def test_the_migrated_tables_match_the_models(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            differences = await conn.run_sync(model_differences(TABLES))
            tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        assert differences == []
        assert tables >= TABLES
