"""Tables of the sealed archive. Both are append-only (database triggers refuse UPDATE and
DELETE; migration 0014), and a purge can only be recorded at a sealed segment's end."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base

PrimaryKey = BigInteger().with_variant(Integer(), "sqlite")


class ArchiveSegmentRow(Base):
    """A sealed segment: the range it holds and what its signed manifest states."""

    __tablename__ = "audit_archive_segment"

    first_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    event_count: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(64))
    previous_chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    last_chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    range_root: Mapped[bytes] = mapped_column(LargeBinary(32))
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    min_occurred_ns: Mapped[int] = mapped_column(BigInteger)
    max_occurred_ns: Mapped[int] = mapped_column(BigInteger)
    file_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    file_bytes: Mapped[int] = mapped_column(BigInteger)
    plain_bytes: Mapped[int] = mapped_column(BigInteger)
    manifest_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    key_id: Mapped[str] = mapped_column(String(8))
    sealed_ns: Mapped[int] = mapped_column(BigInteger)


class ArchivePurgeRow(Base):
    """A purge: the events at chain positions first_seq..through_seq were deleted from the
    database (their chain rows, tree and checkpoints are kept); `boundary_chain_hash` is the
    chain hash at through_seq, where verification of the database now starts."""

    __tablename__ = "audit_archive_purge"

    id: Mapped[int] = mapped_column(PrimaryKey, primary_key=True, autoincrement=True)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    through_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    boundary_chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    event_count: Mapped[int] = mapped_column(BigInteger)
    before_ns: Mapped[int] = mapped_column(BigInteger)
    purged_ns: Mapped[int] = mapped_column(BigInteger)
