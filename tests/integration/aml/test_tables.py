"""The AML migration builds exactly the tables the models describe, on SQLite and
PostgreSQL: a model changed without its migration fails here."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.tables import model_differences
from tradeguard.aml.models import AmlCheckpoint

AML_TABLES = {
    "aml_checkpoints",
    "aml_movements",
    "aml_alerts",
    "aml_ctrs",
    "aml_cases",
    "aml_case_notes",
    "aml_filings",
}


class TestAmlTables:
    async def test_the_migrated_tables_match_the_models(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            differences = await conn.run_sync(model_differences(AML_TABLES))
            tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        assert differences == []
        assert tables >= AML_TABLES

    async def test_the_monitor_checkpoint_is_seeded(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            rows = await conn.execute(AmlCheckpoint.__table__.select())
            assert [(r.name, r.last_seq) for r in rows] == [("aml", 0)]
