"""Key-encrypting-key rotation (issue #10): a wrapped key may be re-wrapped under another KEK.

`crypto_key_version` rows were only ever retired (0013). A master-key rotation, or a move to
a KMS, re-wraps every stored key under the new key-encrypting key: the row's `wrapped_key`
and `kek_id` change (the KEK id must change), nothing else. This does not weaken "a wrapped
key cannot be swapped": the wrapped bytes are bound (AES-GCM associated data, or the KMS
encryption context) to the row's class, kind and version, so only a holder of a KEK can
write bytes that open there, and they open to the same key; the slot, times and state stay
as they were. A row with no
wrapped key (version 0, the legacy scheme) cannot gain one.

`kek_id` grows to 200 characters: "aws-kms:" and a key ARN is longer than 80. Rows of kind
`secret` (an HMAC pepper, by purpose in `data_class`) need no schema change.

Revision ID: 0018_kek_rotation
Revises: 0017_customer_cards
"""

import sqlalchemy as sa
from alembic import op

from tradeguard.crypto.key_table import (
    RETIRE,
    allowed_update,
    postgres_guard_function,
    sqlite_update_guard,
)

revision = "0018_kek_rotation"
down_revision = "0017_customer_cards"
branch_labels = None
depends_on = None

KEYS = "crypto_key_version"
# The allowed updates live in crypto/key_table.py (the vault's key table takes the same):
# 0013's (retire, usage count) as RETIRE, and the re-wrap as REWRAP.


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            KEYS, "kek_id", type_=sa.String(200), existing_type=sa.String(80), nullable=True
        )
        _guard_postgres(allowed_update("postgresql"))
    else:
        # SQLite does not enforce a VARCHAR length: only the trigger changes.
        _guard_sqlite(allowed_update("sqlite"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _guard_postgres(RETIRE["postgresql"])
        # Rows under a KMS key (ids longer than 80) would not fit: refused by PostgreSQL then.
        op.alter_column(
            KEYS, "kek_id", type_=sa.String(80), existing_type=sa.String(200), nullable=True
        )
    else:
        _guard_sqlite(RETIRE["sqlite"])


def _guard_postgres(allowed: str) -> None:
    # Same function as 0013 (its triggers call it by name): only the allowed update grows.
    op.execute(postgres_guard_function("tradeguard_key_version_guard", allowed))


def _guard_sqlite(allowed: str) -> None:
    op.execute(f"DROP TRIGGER {KEYS}_guard")
    op.execute(sqlite_update_guard(f"{KEYS}_guard", KEYS, allowed))
