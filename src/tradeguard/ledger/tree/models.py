"""Tables of the Merkle tree and its checkpoints. Stored subtrees and checkpoints are
append-only (database triggers refuse UPDATE and DELETE); the witness cursor is not."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy import UniqueConstraint as Unique
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base

PrimaryKey = BigInteger().with_variant(Integer(), "sqlite")


class TreeNodeRow(Base):
    """The hash of a complete subtree at a stored level (4, 8, 12, ...; see layout.py),
    written by the sequencer in the transaction that chains the subtree's last leaf."""

    __tablename__ = "audit_tree_node"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class CheckpointRow(Base):
    """A signed tree head (C2SP checkpoint), as signed: the whole note is kept verbatim."""

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(PrimaryKey, primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    origin: Mapped[str] = mapped_column(String(200))
    key_name: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[str] = mapped_column(String(8))
    note: Mapped[str] = mapped_column(Text)
    signed_ns: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Unique("tree_size", "key_id", name="uq_audit_checkpoint_tree_size_key_id"),)


class WitnessCursorRow(Base):
    """How far checkpoints have been published to one witness location (a SHA-256 of it)."""

    __tablename__ = "audit_witness_cursor"

    witness: Mapped[str] = mapped_column(String(64), primary_key=True)
    published_size: Mapped[int] = mapped_column(BigInteger)
    published_ns: Mapped[int] = mapped_column(BigInteger)
