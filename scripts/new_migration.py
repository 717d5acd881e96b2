"""Autogenerate a migration from the models: `python scripts/new_migration.py "message" rev_id`.

Migrates a scratch SQLite database to head, diffs it against the models and writes a new
revision file; review it (PostgreSQL-specific parts are yours to add) before committing.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy.engine import Connection

from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import alembic_config, upgrade


def _revision(connection: Connection, message: str, rev_id: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.revision(config, message=message, autogenerate=True, rev_id=rev_id)


async def main(message: str, rev_id: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.run_sync(_revision, message, rev_id)
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
