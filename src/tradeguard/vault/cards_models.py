"""The platform's side of stored cards (PCI-2): a token, the brand, the last four digits and
the expiry, and the card's fingerprint; never the card number, never the security code.

The fingerprint is the vault's keyed HMAC-SHA256 of the PAN (PCI DSS 3.5.1.1: a keyed
cryptographic hash of the entire PAN, under a key only the vault holds): it tells two cards
apart and finds the same card twice (on one profile, or across customers for fraud
checks) without anyone detokenizing.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base


class CustomerCardRow(Base):
    __tablename__ = "customer_card"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id"))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    brand: Mapped[str] = mapped_column(String(16))
    last4: Mapped[str] = mapped_column(String(4))
    expiry_month: Mapped[int] = mapped_column(Integer)
    expiry_year: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_ns: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        # One card once per customer: a second add of the same card is refused (409).
        Index("uq_customer_card_user_fingerprint", "user_id", "fingerprint", unique=True),
        Index("ix_customer_card_fingerprint", "fingerprint"),
    )
