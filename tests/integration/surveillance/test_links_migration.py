"""Migration 0020 (issue #12, linked accounts): compliance's links stored before it come
through as active `manual` links between accounts, the rebuilt table takes links between
users and enforces one pair per link, and downgrading keeps the account links; on SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import _drop_schema, _postgres_engine
from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import alembic_config, upgrade

REVISION = "0020_owner_links"
BEFORE = "0019_funds"
OLD_LINK = (
    "INSERT INTO surveillance_links (id, account_a, account_b, reason, created_by, created_ns) "
    "VALUES ('l-1', 'acc-1', 'acc-2', 'same household (KYC)', 'operator:ops', 5)"
)


BANK_LINK = ("l-9", "bank_account", "acc-1", "acc-2", None, None, 8)


COLUMNS = ("id", "kind", "account_a", "account_b", "user_a", "user_b", "created_ns")
INSERT_LINK = text(
    "INSERT INTO surveillance_links (id, kind, account_a, account_b, user_a, user_b, reason, "
    "evidence, created_by, created_ns) VALUES (:id, :kind, :account_a, :account_b, :user_a, "
    ":user_b, 'r', '{}', 's', :created_ns)"
)
Row = tuple[str, str, str | None, str | None, str | None, str | None, int]


async def add_links(engine: AsyncEngine, *rows: Row) -> None:
    """Insert links into the migrated table, in one transaction."""
    async with engine.begin() as conn:
        for row in rows:
            await conn.execute(INSERT_LINK, dict(zip(COLUMNS, row, strict=True)))


@pytest.fixture
async def unmigrated(db_backend: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A database migrated to the revision before the owner links, with one manual link."""
    if db_backend == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
        schema = None
    else:
        engine, schema = await _postgres_engine()
    try:
        await upgrade(engine, BEFORE)
        async with engine.begin() as conn:
            await conn.execute(text(OLD_LINK))
        yield engine
    finally:
        await engine.dispose()
        if schema is not None:
            await _drop_schema(schema)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    from alembic import command  # noqa: PLC0415 - only this test steps back

    def step_back(connection: object) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(step_back)


class TestOwnerLinksMigration:
    async def test_old_links_become_active_manual_account_links(
        self, unmigrated: AsyncEngine
    ) -> None:
        await upgrade(unmigrated, REVISION)
        async with unmigrated.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, kind, status, account_a, account_b, user_a, reason, "
                        "created_by, created_ns FROM surveillance_links"
                    )
                )
            ).all()
            evidence = (
                await conn.execute(text("SELECT evidence FROM surveillance_links"))
            ).scalar()
        assert [tuple(r) for r in rows] == [
            (
                "l-1",
                "manual",
                "active",
                "acc-1",
                "acc-2",
                None,
                "same household (KYC)",
                "operator:ops",
                5,
            )
        ]
        assert evidence in ({}, "{}")

    async def test_the_table_takes_user_links_and_refuses_half_pairs_and_duplicates(
        self, unmigrated: AsyncEngine
    ) -> None:
        await upgrade(unmigrated, REVISION)
        await add_links(unmigrated, ("l-2", "device", None, None, "u-1", "u-2", 6))
        for values in (
            ("l-3", "device", None, None, "u-1", "u-2", 7),  # the same pair
            ("l-4", "network", "acc-1", None, "u-1", "u-2", 7),  # both kinds
            ("l-5", "network", None, None, "u-1", None, 7),  # half a pair
            ("l-6", "manual", "acc-1", "acc-2", None, None, 7),  # again
        ):
            with pytest.raises(IntegrityError):
                await add_links(unmigrated, values)
        # Another kind of link on the same pair is another link.
        await add_links(unmigrated, BANK_LINK)

    async def test_downgrading_keeps_one_account_link_per_pair(
        self, unmigrated: AsyncEngine
    ) -> None:
        await upgrade(unmigrated, REVISION)
        await add_links(unmigrated, ("l-8", "device", None, None, "u-1", "u-2", 6), BANK_LINK)
        await downgrade(unmigrated, BEFORE)
        async with unmigrated.connect() as conn:
            rows = (await conn.execute(text("SELECT id, account_a FROM surveillance_links"))).all()
        assert [tuple(r) for r in rows] == [("l-1", "acc-1")]
