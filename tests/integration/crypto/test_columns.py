"""The encrypted column type and blind indexes against a real database (SQLite and
PostgreSQL): values stored sealed, read back as ciphertext only, revealed or masked by
record, lookups and duplicates found by blind index, plaintext refused at flush."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.tax_records import TaxRecord, create_table, holders, store
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import SealedField, blind_index, digits_only
from tradeguard.crypto.keyring import DecryptionFailed, Keyring
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.container import start_identity

SSN = "123-45-6789"


@pytest.fixture
async def keyring(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> Keyring:
    await create_table(engine)
    identity = await start_identity(
        settings, clock=clock, ids=IdGenerator(clock), sessions=sessions
    )
    return identity.deps.keyring


class TestEncryptedText:
    @pytest.mark.spec("ENC-2")
    async def test_a_value_is_stored_sealed_and_read_back_by_its_record(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keyring: Keyring
    ) -> None:
        await store(sessions, keyring, "a", SSN)
        async with engine.connect() as conn:
            raw = await conn.scalar(text("SELECT tax_id FROM test_tax_record"))
        assert SSN.encode() not in bytes(raw)
        assert b"6789" not in bytes(raw)
        async with sessions() as session:
            row = await session.get(TaxRecord, "a")
        assert row is not None
        assert row.tax_id is not None
        assert str(row.tax_id) == "***"
        assert SSN not in repr(row.tax_id)
        assert row.tax_id.reveal(keyring, record_id="a") == SSN
        assert row.tax_id.masked(keyring, record_id="a") == "***6789"
        assert row.tax_id.version(keyring) == 1

    async def test_a_value_copied_to_another_row_does_not_decrypt(
        self, sessions: async_sessionmaker[AsyncSession], keyring: Keyring
    ) -> None:
        await store(sessions, keyring, "a", SSN)
        await store(sessions, keyring, "b", "987-65-4321")
        async with unit_of_work(sessions) as session:
            a = await session.get(TaxRecord, "a")
            b = await session.get(TaxRecord, "b")
            assert a is not None
            assert b is not None
            b.tax_id = a.tax_id
        async with sessions() as session:
            moved = await session.get(TaxRecord, "b")
        assert moved is not None
        assert moved.tax_id is not None
        with pytest.raises(DecryptionFailed):
            moved.tax_id.reveal(keyring, record_id="b")

    async def test_plaintext_is_refused_at_flush_and_nothing_is_stored(
        self, sessions: async_sessionmaker[AsyncSession], keyring: Keyring
    ) -> None:
        with pytest.raises(StatementError, match="PlainField or SealedField"):
            async with unit_of_work(sessions) as session:
                session.add(TaxRecord(id="a", tax_id=SSN))  # type: ignore[arg-type]
        async with sessions() as session:
            assert await session.get(TaxRecord, "a") is None

    async def test_a_sealed_value_of_another_column_is_refused(
        self, sessions: async_sessionmaker[AsyncSession], keyring: Keyring
    ) -> None:
        foreign = SealedField(b"\x02" + bytes(40), DataClass.ACCOUNT_NUMBER, "accounts", "number")
        with pytest.raises(StatementError, match="another column"):
            async with unit_of_work(sessions) as session:
                session.add(TaxRecord(id="a", tax_id=foreign))


class TestBlindIndex:
    async def test_the_same_tax_id_on_two_records_is_found_without_decrypting(
        self, sessions: async_sessionmaker[AsyncSession], keyring: Keyring
    ) -> None:
        await store(sessions, keyring, "a", SSN)
        await store(sessions, keyring, "b", "123 45 6789")
        await store(sessions, keyring, "c", "111-22-3333")
        assert await holders(sessions, keyring, "123456789") == ["a", "b"]

    async def test_the_index_is_not_a_plain_hash_of_the_value(self, keyring: Keyring) -> None:
        import hashlib  # noqa: PLC0415

        index = blind_index(keyring, DataClass.TAX_ID, SSN, digits_only)
        assert index != hashlib.sha256(b"123456789").digest()
        assert index != blind_index(keyring, DataClass.ACCOUNT_NUMBER, SSN, digits_only)
