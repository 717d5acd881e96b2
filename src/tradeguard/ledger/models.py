"""Ledger tables. Both are append-only: database triggers refuse UPDATE and DELETE (but for
events purged after their retention, once sealed in the archive: ledger/archive/)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base

# SQLite only auto-assigns INTEGER PRIMARY KEY columns; PostgreSQL gets a 64-bit identity.
PrimaryKey = BigInteger().with_variant(Integer(), "sqlite")


class AuditEventRow(Base):
    """An event, written in the same transaction as the change it records."""

    __tablename__ = "audit_event"

    pk: Mapped[int] = mapped_column(PrimaryKey, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    # event_type, actor_id and subject_id are indexed together with the chain order (txid,
    # pk) for search: see ledger/search/models.py.
    event_type: Mapped[str] = mapped_column(String(100))
    occurred_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    actor_id: Mapped[str | None] = mapped_column(String(100))
    subject_id: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # PostgreSQL: the inserting transaction's id (pg_current_xact_id), set by a BEFORE INSERT
    # trigger whatever the client sends, and NOT NULL (migration 0003); the sequencer uses it
    # to know when every event below a horizon has committed or aborted. SQLite: NULL.
    txid: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_audit_event_txid_pk", "txid", "pk"),)


class AuditChainRow(Base):
    """An event's place in the hash chain, assigned by the sequencer after commit."""

    __tablename__ = "audit_chain"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # No foreign key (migration 0014): a chain row outlives its event once the event was
    # sealed in the archive and purged after its retention; the hashes stay for the tree.
    event_pk: Mapped[int] = mapped_column(PrimaryKey, unique=True)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    sequenced_ns: Mapped[int] = mapped_column(BigInteger)


class SequencerStateRow(Base):
    """The sequencer's cursor and the head it last wrote (one row, id = 1)."""

    __tablename__ = "audit_sequencer_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    cursor_txid: Mapped[int] = mapped_column(BigInteger)
    cursor_pk: Mapped[int] = mapped_column(BigInteger)
