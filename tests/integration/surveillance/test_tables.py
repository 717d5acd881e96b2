"""Migration 0015 builds exactly the tables the surveillance models describe, on SQLite and
PostgreSQL (a model changed without its migration fails here), with the stream's checkpoint
seeded so that consumers in several processes never race to create it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.tables import model_differences
from tradeguard.surveillance.models import SurveillanceCheckpoint

TABLES = {
    "surveillance_alerts",
    "surveillance_checkpoints",
    "surveillance_links",
    # 0016 (MAN-5): cases, actions, report drafts.
    "surveillance_cases",
    "surveillance_case_alerts",
    "surveillance_case_entries",
    "surveillance_action_rules",
    "surveillance_actions",
    "surveillance_reports",
}


class TestSurveillanceTables:
    async def test_the_migrated_tables_match_the_models(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            differences = await conn.run_sync(model_differences(TABLES))
            tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        assert differences == []
        assert tables >= TABLES

    async def test_the_stream_checkpoint_is_seeded_at_the_start_of_the_ledger(
        self, engine: AsyncEngine
    ) -> None:
        async with engine.connect() as conn:
            rows = await conn.execute(SurveillanceCheckpoint.__table__.select())
            assert [(r.name, r.last_seq, r.replay_from_seq) for r in rows] == [
                ("surveillance", 0, None)
            ]
