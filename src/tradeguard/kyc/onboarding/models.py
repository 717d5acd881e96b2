"""Onboarding tables: customers' account applications.

Everything the customer declared is one JSON document sealed under `personal_details`
(`details_enc`); the tax id is sealed on its own under `tax_id`, with a blind index to find
the same tax id on another user without decrypting, and only its last four digits in clear.
Staff notes of enhanced due diligence are sealed too. Review state (status, rating,
approvals) is clear: it is what the queue and the audit trail are made of.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import EncryptedText, PlainField, SealedField
from tradeguard.db.base import Base
from tradeguard.db.types import ScrubbedJSON, ScrubbedText

APPLICATIONS_TABLE = "kyc_applications"
DETAILS_COLUMN = "details_enc"
TAX_ID_COLUMN = "tax_id_enc"
TAX_INDEX_COLUMN = "tax_id_index"
EDD_COLUMN = "edd_note_enc"


class Application(Base):
    __tablename__ = APPLICATIONS_TABLE
    __table_args__ = (Index("ix_kyc_applications_status", "status", "submitted_ns"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    details_enc: Mapped[SealedField | PlainField] = mapped_column(
        EncryptedText(DataClass.PERSONAL_DETAILS, table=APPLICATIONS_TABLE, column=DETAILS_COLUMN)
    )
    tax_id_enc: Mapped[SealedField | PlainField | None] = mapped_column(
        EncryptedText(DataClass.TAX_ID, table=APPLICATIONS_TABLE, column=TAX_ID_COLUMN)
    )
    # HMAC of the normalized tax id under the tax_id class's index key.
    tax_id_index: Mapped[bytes | None] = mapped_column(LargeBinary(64), index=True)
    tax_id_last4: Mapped[str | None] = mapped_column(String(4))
    tax_id_kind: Mapped[str | None] = mapped_column(String(8))
    # The same tax id is on another user's application: review before approval.
    duplicate_tax_id: Mapped[bool] = mapped_column(Boolean, default=False)
    duplicate_resolved_by: Mapped[str | None] = mapped_column(String(36))
    created_ns: Mapped[int] = mapped_column(BigInteger)
    updated_ns: Mapped[int] = mapped_column(BigInteger)
    submitted_ns: Mapped[int | None] = mapped_column(BigInteger)
    decided_ns: Mapped[int | None] = mapped_column(BigInteger)
    decided_by: Mapped[str | None] = mapped_column(String(36))
    first_approver: Mapped[str | None] = mapped_column(String(36))
    # What staff last told the customer (more information needed, refusal).
    customer_message: Mapped[str | None] = mapped_column(ScrubbedText())
    screening: Mapped[str | None] = mapped_column(String(8))
    screened_ns: Mapped[int | None] = mapped_column(BigInteger)
    rating: Mapped[str | None] = mapped_column(String(8))
    rating_score: Mapped[int | None] = mapped_column(Integer)
    rating_factors: Mapped[Any] = mapped_column(ScrubbedJSON(), nullable=True)
    rating_overridden: Mapped[bool] = mapped_column(Boolean, default=False)
    next_review_on: Mapped[str | None] = mapped_column(String(10), index=True)
    edd_note_enc: Mapped[SealedField | PlainField | None] = mapped_column(
        EncryptedText(DataClass.PERSONAL_DETAILS, table=APPLICATIONS_TABLE, column=EDD_COLUMN)
    )
    edd_by: Mapped[str | None] = mapped_column(String(36))
    edd_ns: Mapped[int | None] = mapped_column(BigInteger)
    address_accepted_by: Mapped[str | None] = mapped_column(String(36))
    consent_version: Mapped[str | None] = mapped_column(String(40))
    consent_ns: Mapped[int | None] = mapped_column(BigInteger)
    marketing_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    marketing_changed_ns: Mapped[int | None] = mapped_column(BigInteger)
    # The accounts a sanctions hit restricted after approval, {account id: status before}:
    # lifted when the customer's standing is clear again.
    sanctions_restricted: Mapped[Any] = mapped_column(ScrubbedJSON(), nullable=True)
    # A rating override that lowers the rating waits for a second staff member (four eyes).
    rating_proposed: Mapped[str | None] = mapped_column(String(8))
    rating_proposed_by: Mapped[str | None] = mapped_column(String(36))
    rating_proposed_reason: Mapped[str | None] = mapped_column(ScrubbedText())
