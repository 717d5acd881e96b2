"""The api_keys table: one row per key (a rotation makes a new row and ends the old one).

The secret is stored encrypted (`EncryptedText`, class api_key_secret): the server needs it
to check HMAC signatures. Its SHA-256 (`secret_digest`) finds a key from a leaked secret.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import EncryptedText, PlainField, SealedField
from tradeguard.db.base import Base
from tradeguard.db.types import ScrubbedString

API_KEYS_TABLE = "api_keys"
SECRET_COLUMN = "secret_enc"  # noqa: S105 - a column name


class ApiKey(Base):
    __tablename__ = API_KEYS_TABLE

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(ScrubbedString(60))
    scope: Mapped[str] = mapped_column(String(10))
    # JSON list of canonical CIDRs (identity/ip_allowlist.py); "[]" for none.
    ip_allowlist: Mapped[str] = mapped_column(Text)
    secret_enc: Mapped[SealedField | PlainField] = mapped_column(
        EncryptedText(DataClass.API_KEY_SECRET, table=API_KEYS_TABLE, column=SECRET_COLUMN)
    )
    secret_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_ns: Mapped[int] = mapped_column(BigInteger)
    expires_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    revoked_ns: Mapped[int | None] = mapped_column(BigInteger)
    revoked_reason: Mapped[str | None] = mapped_column(String(20))
    last_used_ns: Mapped[int | None] = mapped_column(BigInteger)
    reminded_7d_ns: Mapped[int | None] = mapped_column(BigInteger)
    reminded_1d_ns: Mapped[int | None] = mapped_column(BigInteger)
    # Set on the old row of a rotation: the key that replaces it.
    rotated_to: Mapped[str | None] = mapped_column(String(40))
