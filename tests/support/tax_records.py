"""A table of the kind later features add (accounts with a tax id): an encrypted column and
its blind index, catalogued for `keys reindex` (crypto/catalogue.py IndexLocation), with the
helpers that store, look up and count its values the way a domain repository would."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import LargeBinary, MetaData, String, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tradeguard.crypto.catalogue import IndexLocation
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import (
    EncryptedText,
    SealedField,
    blind_index,
    blind_index_matches,
    digits_only,
    keyring_field,
)
from tradeguard.crypto.index_format import parse_index
from tradeguard.crypto.keyring import Keyring
from tradeguard.db.engine import unit_of_work

TABLE = "test_tax_record"


class Base(DeclarativeBase):
    metadata = MetaData()


class TaxRecord(Base):
    __tablename__ = TABLE

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tax_id: Mapped[SealedField | None] = mapped_column(
        EncryptedText(DataClass.TAX_ID, table=TABLE, column="tax_id")
    )
    tax_id_index: Mapped[bytes | None] = mapped_column(LargeBinary(64), index=True)


def _record_id(row: Any) -> bytes:
    return str(row["id"]).encode()


def _index_input(tax_id: str, _row: Any) -> str:
    return digits_only(tax_id)


TAX_INDEX = IndexLocation(
    DataClass.TAX_ID, TABLE, "tax_id_index", "tax_id", "id", _record_id, _index_input
)


async def create_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


async def store(
    sessions: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    record: str,
    value: str,
    *,
    untagged: bool = False,
) -> None:
    """One record; `untagged`: its index as written before index keys had versions (the
    bare 32-byte HMAC under version 1)."""
    index = (
        keyring.blind_index(DataClass.TAX_ID, digits_only(value))
        if untagged
        else blind_index(keyring, DataClass.TAX_ID, value, digits_only)
    )
    async with unit_of_work(sessions) as session:
        session.add(
            TaxRecord(
                id=record,
                tax_id=keyring_field(keyring, value, record_id=record),
                tax_id_index=index,
            )
        )


async def holders(
    sessions: async_sessionmaker[AsyncSession], keyring: Keyring, value: str
) -> list[str]:
    """The records holding `value`, found by blind index alone (the duplicate check)."""
    async with sessions() as session:
        found = await session.scalars(
            select(TaxRecord.id)
            .where(
                blind_index_matches(
                    TaxRecord.tax_id_index, keyring, DataClass.TAX_ID, value, digits_only
                )
            )
            .order_by(TaxRecord.id)
        )
        return list(found)


async def index_versions(engine: AsyncEngine) -> Counter[str]:
    """Stored index values by form: "v<N>" tagged, "untagged", or "other"."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT tax_id_index FROM {TABLE}"))  # noqa: S608
        values = [bytes(r[0]) for r in rows.all() if r[0] is not None]
    forms: Counter[str] = Counter()
    for value in values:
        header = parse_index(value)
        if header is None:
            forms["other"] += 1
        elif header.class_id == 0:
            forms["untagged"] += 1
        else:
            forms[f"v{header.version}"] += 1
    return forms
