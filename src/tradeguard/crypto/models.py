"""The keyring's tables: every version of every data key, wrapped, and rewrap progress.

A key version row is never deleted (migration 0013 refuses it on both engines): its history
is the evidence of the cryptoperiods kept (PCI DSS 3.6/3.7). The wrapped key is useless
without the key-encrypting key, which lives outside the database (crypto/providers.py).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base


class CryptoKeyVersionRow(Base):
    """One version of one class's key: a data key (`data`), a blind-index key (`index`), or
    version 0 (`legacy`), the HKDF scheme of data sealed before versioned keys."""

    __tablename__ = "crypto_key_version"

    data_class: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # active (may decrypt; the newest activated one encrypts) or retired (neither, ever).
    state: Mapped[str] = mapped_column(String(16))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    kek_id: Mapped[str | None] = mapped_column(String(200))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    # From when this version encrypts: a little after its creation, so that every running
    # process has read it (and can decrypt it) before any process writes under it.
    activates_ns: Mapped[int] = mapped_column(BigInteger)
    retired_ns: Mapped[int | None] = mapped_column(BigInteger)
    # The last count of stored values under this version (keys usage / rewrap).
    usage_count: Mapped[int | None] = mapped_column(BigInteger)
    usage_counted_ns: Mapped[int | None] = mapped_column(BigInteger)


class CryptoRewrapProgressRow(Base):
    """Where a rewrap of one stored location stands: resumed from `cursor` after a crash."""

    __tablename__ = "crypto_rewrap_progress"

    data_class: Mapped[str] = mapped_column(String(40), primary_key=True)
    location: Mapped[str] = mapped_column(String(120), primary_key=True)
    target_version: Mapped[int] = mapped_column(Integer)
    # The last primary key done, as text (hex for binary keys); NULL before the first batch.
    cursor: Mapped[str | None] = mapped_column(String(200))
    rows_rewrapped: Mapped[int] = mapped_column(BigInteger)
    started_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)
    finished_ns: Mapped[int | None] = mapped_column(BigInteger)
