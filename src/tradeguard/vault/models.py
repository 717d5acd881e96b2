"""The vault database's tables (PCI-2): they live on their own database and metadata, never
beside the platform's tables, so the main database's credentials cannot reach them.

`vault_card` keeps the PAN only as an AES-256-GCM envelope under the vault's own key class
(crypto/classes.py CARD_VAULT), bound to its token (PCI DSS 3.5.1); the security code has no
column anywhere (PCI DSS 3.3.1). `vault_access_log` is the vault's own record of every call,
allowed or refused, kept where the platform cannot rewrite it.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import EncryptedText, SealedField
from tradeguard.db.base import NAMING_CONVENTION

CARD_TABLE = "vault_card"
PAN_COLUMN = "pan_enc"
VERSION_TABLE = "vault_alembic_version"


class VaultBase(DeclarativeBase):
    """The vault's declarative base: a metadata of its own (not the platform's)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class VaultCardRow(VaultBase):
    __tablename__ = CARD_TABLE

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    pan_enc: Mapped[SealedField] = mapped_column(
        EncryptedText(DataClass.CARD_VAULT, table=CARD_TABLE, column=PAN_COLUMN)
    )
    # HMAC-SHA256 of the PAN under the class's blind-index key: the same card, the same
    # fingerprint, whatever its token.
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    brand: Mapped[str] = mapped_column(String(16))
    last4: Mapped[str] = mapped_column(String(4))
    expiry_month: Mapped[int] = mapped_column(Integer)
    expiry_year: Mapped[int] = mapped_column(Integer)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    # Who asked for it (a party, `kind:id`) and through which vault role.
    created_by: Mapped[str] = mapped_column(String(120))
    created_role: Mapped[str] = mapped_column(String(16))

    __table_args__ = (Index("ix_vault_card_fingerprint", "fingerprint"),)


class VaultAccessRow(VaultBase):
    __tablename__ = "vault_access_log"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    occurred_ns: Mapped[int] = mapped_column(BigInteger)
    # A card operation (tokenize, detokenize, ...) or a key operation's event type
    # (`crypto:key:rotated`, vault/keys.py).
    operation: Mapped[str] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(16))
    # On whose behalf (`kind:id`), as the calling platform states it.
    on_behalf_of: Mapped[str] = mapped_column(String(120))
    token: Mapped[str | None] = mapped_column(String(64))
    # allowed, denied, not_found; `done` for a key operation
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    # A key operation's event data as JSON (class, kind, version, KEK ids; no key material).
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_vault_access_log_occurred_ns", "occurred_ns"),)
