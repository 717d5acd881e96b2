"""Sanctions tables: list versions with their entries and names, hits and their review, and
re-screening runs.

Entries and names are stored per version (a version is what was screened against, kept for
the record). A hit's reasons quote the screened name's words, so they are encrypted
(`personal_details`), as is a reviewer's note; the list's own names are public data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import EncryptedText, PlainField, SealedField
from tradeguard.db.base import Base

HITS_TABLE = "sanctions_hits"


class SanctionsListVersion(Base):
    __tablename__ = "sanctions_list_versions"
    __table_args__ = (Index("ix_sanctions_list_versions_loaded", "list_name", "loaded_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    list_name: Mapped[str] = mapped_column(String(40))
    # SHA-256 over the files' own SHA-256s (sdn.csv, alt.csv, add.csv, in that order).
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    file_hashes: Mapped[dict[str, str]] = mapped_column(JSON)
    # Where it came from: the configured directory or URL (never a client's choice).
    source: Mapped[str] = mapped_column(String(500))
    entries: Mapped[int] = mapped_column(Integer)
    names: Mapped[int] = mapped_column(Integer)
    aliases: Mapped[int] = mapped_column(Integer)
    addresses: Mapped[int] = mapped_column(Integer)
    loaded_ns: Mapped[int] = mapped_column(BigInteger)
    # The party who loaded it: "user:<id>", "operator:<name>", "system:...".
    loaded_by: Mapped[str] = mapped_column(String(100))


class SanctionsEntry(Base):
    __tablename__ = "sanctions_entries"

    version_id: Mapped[str] = mapped_column(
        ForeignKey("sanctions_list_versions.id"), primary_key=True
    )
    entry_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(400))
    # Programs, title, dates and places of birth, nationalities, countries, Linked To.
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))


class SanctionsName(Base):
    __tablename__ = "sanctions_names"
    __table_args__ = (Index("ix_sanctions_names_entry", "version_id", "entry_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("sanctions_list_versions.id"))
    entry_id: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(400))


class SanctionsHit(Base):
    """A subject found like a list entry: open until a reviewer clears (a false positive) or
    confirms it. One per (subject, entry, entry content): a cleared pair comes back only when
    the entry's content changes."""

    __tablename__ = HITS_TABLE
    __table_args__ = (
        UniqueConstraint(
            "subject_kind",
            "subject_ref",
            "entry_id",
            "entry_hash",
            name="uq_sanctions_hits_subject_entry",
        ),
        Index("ix_sanctions_hits_subject", "subject_kind", "subject_ref"),
        Index("ix_sanctions_hits_status", "status", "created_ns"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(12))
    subject_ref: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    list_name: Mapped[str] = mapped_column(String(40))
    version_id: Mapped[str] = mapped_column(ForeignKey("sanctions_list_versions.id"))
    entry_id: Mapped[str] = mapped_column(String(20))
    entry_hash: Mapped[str] = mapped_column(String(64))
    matched_name: Mapped[str] = mapped_column(String(400))
    score: Mapped[float] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(8))
    reasons_enc: Mapped[SealedField | PlainField] = mapped_column(
        EncryptedText(DataClass.PERSONAL_DETAILS, table=HITS_TABLE, column="reasons_enc")
    )
    status: Mapped[str] = mapped_column(String(10))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    reviewed_by: Mapped[str | None] = mapped_column(String(36))
    reviewed_ns: Mapped[int | None] = mapped_column(BigInteger)
    review_note_enc: Mapped[SealedField | PlainField | None] = mapped_column(
        EncryptedText(DataClass.PERSONAL_DETAILS, table=HITS_TABLE, column="review_note_enc")
    )


class SanctionsRescreen(Base):
    """One re-screening of every registered subject against a new list version."""

    __tablename__ = "sanctions_rescreens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("sanctions_list_versions.id"))
    status: Mapped[str] = mapped_column(String(10))
    subjects: Mapped[int] = mapped_column(Integer, default=0)
    new_hits: Mapped[int] = mapped_column(Integer, default=0)
    started_ns: Mapped[int] = mapped_column(BigInteger)
    finished_ns: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(200))
