"""A reindex of the test tax table in a process of its own, to be killed half-way.

python -m tests.support.reindex_worker DATA_DIR DATABASE_URL PG_SCHEMA|- BATCH PAUSE_MS
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.support.tax_records import TAX_INDEX
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.service import KeyManagement
from tradeguard.crypto.tasks import keyring_from, reindex_class
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.ledger.domain import Party
from tradeguard.ledger.service import Ledger


async def main(data_dir: str, url: str, pg_schema: str, batch: int, pause_ms: int) -> None:
    settings = Settings(data_dir=Path(data_dir), _env_file=None)  # type: ignore[call-arg]
    clock = SystemClock()
    engine = create_engine(url, pg_schema=None if pg_schema == "-" else pg_schema)
    try:
        sessions = session_factory(engine)
        keyring = keyring_from(settings, clock=clock)
        keyring.indexes = (TAX_INDEX,)
        management = KeyManagement(keyring, ledger=Ledger(clock=clock, ids=IdGenerator(clock)))
        async with sessions() as session:
            await keyring.refresh(session)
        await reindex_class(
            management,
            sessions,
            DataClass.TAX_ID,
            actor=Party("operator", "worker"),
            batch_size=batch,
            pause_seconds=pause_ms / 1000,
        )
    finally:
        await engine.dispose()


if __name__ == "__main__":
    data_dir, url, schema, batch, pause_ms = sys.argv[1:6]
    asyncio.run(main(data_dir, url, schema, int(batch), int(pause_ms)))
