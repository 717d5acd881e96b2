"""PCI-3 on PostgreSQL: the platform's database role cannot read the vault's tables.

Two roles of our own: the vault's, which owns a database of its own holding the vault's
tables (migrated as that role), and the platform's. The platform's role cannot connect to
the vault's database, and even given CONNECT (a misconfiguration) it cannot read a vault
table. Roles and database are dropped afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.conftest import BASE_POSTGRES_URL, require_service
from tradeguard.db.engine import async_url, create_engine
from tradeguard.vault.migrate import upgrade as upgrade_vault

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Segmented:
    vault_role: str
    app_role: str
    vault_db: str

    def url(self, role: str, database: str) -> str:
        return (
            make_url(BASE_POSTGRES_URL)
            .set(username=role, password=None, database=database)
            .render_as_string(hide_password=False)
        )


async def _admin(statements: list[str]) -> None:
    admin: AsyncEngine = create_async_engine(
        async_url(BASE_POSTGRES_URL), isolation_level="AUTOCOMMIT", pool_size=1
    )
    try:
        async with admin.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await admin.dispose()


@pytest.fixture
async def segmented() -> AsyncIterator[Segmented]:
    suffix = secrets.token_hex(4)
    setup = Segmented(
        f"test_vault_owner_{suffix}", f"test_vault_app_{suffix}", f"test_vault_cards_{suffix}"
    )
    try:
        await _admin(
            [
                f"CREATE ROLE {setup.vault_role} LOGIN",
                f"CREATE ROLE {setup.app_role} LOGIN",
                f"CREATE DATABASE {setup.vault_db} OWNER {setup.vault_role}",
                # Only the vault's role may connect: not PUBLIC, so not the platform's role.
                f"REVOKE ALL ON DATABASE {setup.vault_db} FROM PUBLIC",
            ]
        )
    except OSError as exc:
        require_service("PostgreSQL", exc)
    try:
        yield setup
    finally:
        await _admin(
            [
                f"DROP DATABASE IF EXISTS {setup.vault_db} WITH (FORCE)",
                f"DROP ROLE IF EXISTS {setup.app_role}",
                f"DROP ROLE IF EXISTS {setup.vault_role}",
            ]
        )


class TestDatabaseSegmentation:
    @pytest.mark.spec("PCI-3", "PCI-2")
    async def test_the_platform_role_cannot_read_the_vault_tables(
        self, segmented: Segmented
    ) -> None:
        vault = create_engine(segmented.url(segmented.vault_role, segmented.vault_db))
        try:
            # The vault's role owns its schema objects: it migrates and writes them.
            async with vault.begin() as conn:
                await conn.execute(text("REVOKE ALL ON SCHEMA public FROM PUBLIC"))
            await upgrade_vault(vault)
            async with vault.begin() as conn:
                owners = set(
                    (
                        await conn.execute(
                            text(
                                "SELECT DISTINCT tableowner FROM pg_tables "
                                "WHERE schemaname = 'public'"
                            )
                        )
                    ).scalars()
                )
        finally:
            await vault.dispose()
        assert owners == {segmented.vault_role}

        # 1. The platform's role cannot even connect to the vault's database.
        app = create_engine(segmented.url(segmented.app_role, segmented.vault_db))
        try:
            with pytest.raises(DBAPIError) as refused:
                async with app.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            assert "permission denied for database" in str(refused.value.orig)
        finally:
            await app.dispose()

        # 2. Given CONNECT by mistake, it still reads no vault table.
        await _admin([f"GRANT CONNECT ON DATABASE {segmented.vault_db} TO {segmented.app_role}"])
        app = create_engine(segmented.url(segmented.app_role, segmented.vault_db))
        try:
            for table in ("vault_card", "crypto_key_version", "vault_access_log"):
                with pytest.raises(DBAPIError) as denied:
                    async with app.connect() as conn:
                        await conn.execute(text(f"SELECT * FROM public.{table}"))  # noqa: S608
                assert "permission denied" in str(denied.value.orig)
        finally:
            await app.dispose()
