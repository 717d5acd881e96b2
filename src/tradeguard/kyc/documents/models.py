"""Identity document tables: the document's metadata in clear, its file sealed in chunks.

`kyc_documents.data_key_enc` is the document's own data key, a keyring field of class
kyc_document (crypto/catalogue.py lists it for rewrap); `fields_enc` holds what the provider
read (names, document number, dates), sealed the same way. The chunks in
`kyc_document_chunks` are AES-GCM under the data key (kyc/documents/sealing.py).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import EncryptedText, PlainField, SealedField
from tradeguard.db.base import Base
from tradeguard.db.types import ScrubbedString

DOCUMENTS_TABLE = "kyc_documents"
DATA_KEY_COLUMN = "data_key_enc"
FIELDS_COLUMN = "fields_enc"


class KycDocument(Base):
    __tablename__ = DOCUMENTS_TABLE
    __table_args__ = (
        Index("ix_kyc_documents_user_time", "user_id", "created_ns"),
        Index("ix_kyc_documents_status", "status", "created_ns"),
    )

    # Random (UUID version 4 form, 122 random bits): unguessable, never time-ordered.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(24))
    side: Mapped[str | None] = mapped_column(String(8))
    detected_type: Mapped[str] = mapped_column(String(40))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    pages: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer)
    data_key_enc: Mapped[SealedField | PlainField] = mapped_column(
        EncryptedText(DataClass.KYC_DOCUMENT, table=DOCUMENTS_TABLE, column=DATA_KEY_COLUMN)
    )
    status: Mapped[str] = mapped_column(String(12))
    # The MRZ's format when one was given (TD1, TD2, TD3).
    mrz_format: Mapped[str | None] = mapped_column(String(4))
    # Stable reason codes of the checks, comma-separated (MRZ problems, inconsistencies,
    # the provider's reasons).
    reasons: Mapped[str] = mapped_column(String(1000), default="")
    provider: Mapped[str | None] = mapped_column(String(24))
    provider_outcome: Mapped[str | None] = mapped_column(String(12))
    provider_reference: Mapped[str | None] = mapped_column(String(80))
    fields_enc: Mapped[SealedField | PlainField | None] = mapped_column(
        EncryptedText(DataClass.KYC_DOCUMENT, table=DOCUMENTS_TABLE, column=FIELDS_COLUMN)
    )
    reviewed_by: Mapped[str | None] = mapped_column(String(36))
    review_decision: Mapped[str | None] = mapped_column(String(12))
    review_reason: Mapped[str | None] = mapped_column(ScrubbedString(500))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    checked_ns: Mapped[int | None] = mapped_column(BigInteger)
    reviewed_ns: Mapped[int | None] = mapped_column(BigInteger)


class KycDocumentChunk(Base):
    __tablename__ = "kyc_document_chunks"

    document_id: Mapped[str] = mapped_column(ForeignKey("kyc_documents.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob: Mapped[bytes] = mapped_column(LargeBinary)


class KycDocumentRefusal(Base):
    """One refused upload: who and when, nothing of the file (not even its digest). Counted
    against a per-user daily budget of refusals (kyc_document_refusals_per_day)."""

    __tablename__ = "kyc_document_refusals"
    __table_args__ = (Index("ix_kyc_document_refusals_user_time", "user_id", "created_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(32))
    created_ns: Mapped[int] = mapped_column(BigInteger)
