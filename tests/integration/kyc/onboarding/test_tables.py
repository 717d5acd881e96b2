"""Migration 0022 builds exactly the table the onboarding models describe, on SQLite and
PostgreSQL; its sealed columns and blind index are in the keyring's catalogue (rewrap,
reindex)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.tables import model_differences
from tradeguard.crypto.catalogue import INDEX_LOCATIONS, LOCATIONS
from tradeguard.kyc.onboarding.models import Application

TABLES = {"kyc_applications"}


class TestOnboardingTables:
    async def test_the_migrated_tables_match_the_models(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            differences = await conn.run_sync(model_differences(TABLES))
            tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        assert differences == []
        assert tables >= TABLES

    def test_every_sealed_column_is_catalogued(self) -> None:
        sealed = {
            column.name for column in Application.__table__.columns if column.name.endswith("_enc")
        }
        catalogued = {loc.column for loc in LOCATIONS if loc.table == "kyc_applications"}
        assert sealed == catalogued
        assert {loc.column for loc in INDEX_LOCATIONS if loc.table == "kyc_applications"} == {
            "tax_id_index"
        }
