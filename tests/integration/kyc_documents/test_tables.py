"""Migration 0022 builds exactly the tables the identity documents' models describe, on
SQLite and PostgreSQL (a model changed without its migration fails here)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.tables import model_differences

TABLES = {"kyc_documents", "kyc_document_chunks"}


class TestDocumentTables:
    async def test_the_migrated_tables_match_the_models(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            differences = await conn.run_sync(model_differences(TABLES))
            tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        assert differences == []
        assert tables >= TABLES
