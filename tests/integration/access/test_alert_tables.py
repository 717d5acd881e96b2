"""The access alert migration (and 0006's grants table) builds exactly the tables the models
describe, on SQLite and PostgreSQL: a model changed without its migration fails here."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard.access.alerts_models import AccessDetectorCheckpoint
from tradeguard.db.base import Base

ACCESS_TABLES = {"access_alerts", "access_detector_checkpoints", "access_staff_networks"}
# The grants table too (its customer scope was added to migration 0006 in place).
COMPARED = ACCESS_TABLES | {"access_grants"}


def _mine(item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    table = name if type_ == "table" else getattr(getattr(item, "table", None), "name", None)
    return table in COMPARED


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"include_object": _mine})
    return list(compare_metadata(context, Base.metadata))


class TestAccessAlertTables:
    async def test_the_migrated_tables_match_the_models(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
            tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        assert differences == []
        assert tables >= ACCESS_TABLES

    async def test_the_detector_checkpoint_is_seeded(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            rows = await conn.execute(AccessDetectorCheckpoint.__table__.select())
            assert [(r.name, r.last_seq) for r in rows] == [("access-anomalies", 0)]
