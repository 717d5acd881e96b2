"""The vault's key management (PCI-4, PCI DSS 3.6/3.7): guarded key rows, re-encrypted cards,
rewrap progress, and key operations in the access log.

- `crypto_key_version` had no guard: it now takes the platform's (crypto/key_table.py, as
  the main chain's 0013/0018): a row is only ever retired, has its usage counted, or is
  re-wrapped under another key-encrypting key (`wrapped_key` and `kek_id`, the KEK id
  changing; `vault rotate-master`); every other UPDATE, and DELETE or TRUNCATE, is refused.
  `kek_id` grows to 200 characters ("aws-kms:" and a key ARN).
- `vault_card` rows were never updated: one change is now allowed, a new `pan_enc` with
  every other column as it was (`vault rewrap` re-encrypting a PAN under the current key
  version). The new value is bound (AES-GCM associated data) to the card's token, so only
  the vault's keyring can write one that opens there.
- `crypto_rewrap_progress`: where a `vault rewrap` stands, so a killed run resumes.
- `vault_access_log` records key operations too: `operation` grows to 40 characters (the
  key event's type, `crypto:key:rotated`), and `detail` holds the event's data as JSON
  (class, kind, version, KEK ids; never key material).

Revision ID: v0002_vault_keys
Revises: v0001_vault
"""

import sqlalchemy as sa
from alembic import op

from tradeguard.crypto.key_table import (
    allowed_update,
    postgres_guard_function,
    rewrap_progress_columns,
    sqlite_update_guard,
)

revision = "v0002_vault_keys"
down_revision = "v0001_vault"
branch_labels = None
depends_on = None

KEYS = "crypto_key_version"
CARDS = "vault_card"
LOG = "vault_access_log"
# Every column of a card but its sealed PAN: all NOT NULL, so `=` compares them on both
# engines.
_CARD_FIXED = (
    "token",
    "fingerprint",
    "brand",
    "last4",
    "expiry_month",
    "expiry_year",
    "created_ns",
    "created_by",
    "created_role",
)
CARD_REENCRYPT = " AND ".join(f"NEW.{name} = OLD.{name}" for name in _CARD_FIXED)
CARD_REFUSED = "rows change only by re-encryption of the PAN"


def upgrade() -> None:
    op.create_table("crypto_rewrap_progress", *rewrap_progress_columns())
    op.add_column(LOG, sa.Column("detail", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            KEYS, "kek_id", type_=sa.String(200), existing_type=sa.String(80), nullable=True
        )
        op.alter_column(
            LOG, "operation", type_=sa.String(40), existing_type=sa.String(16), nullable=False
        )
        _postgres()
    else:
        # SQLite does not enforce a VARCHAR length: only the triggers change.
        _sqlite()


def _postgres() -> None:
    op.execute(postgres_guard_function("tradeguard_vault_key_guard", allowed_update("postgresql")))
    op.execute(
        f"CREATE TRIGGER {KEYS}_guard BEFORE UPDATE OR DELETE ON {KEYS} "
        "FOR EACH ROW EXECUTE FUNCTION tradeguard_vault_key_guard()"
    )
    op.execute(
        f"CREATE TRIGGER {KEYS}_no_truncate BEFORE TRUNCATE ON {KEYS} "
        "FOR EACH STATEMENT EXECUTE FUNCTION tradeguard_vault_key_guard()"
    )
    # DELETE of a card stays allowed (`forget`): this function guards UPDATE only.
    op.execute(postgres_guard_function("tradeguard_vault_card_guard", CARD_REENCRYPT, CARD_REFUSED))
    op.execute(f"DROP TRIGGER {CARDS}_no_update ON {CARDS}")
    op.execute(
        f"CREATE TRIGGER {CARDS}_reencrypt_only BEFORE UPDATE ON {CARDS} "
        "FOR EACH ROW EXECUTE FUNCTION tradeguard_vault_card_guard()"
    )


def _sqlite() -> None:
    op.execute(sqlite_update_guard(f"{KEYS}_guard", KEYS, allowed_update("sqlite")))
    op.execute(
        f"CREATE TRIGGER {KEYS}_no_delete BEFORE DELETE ON {KEYS} "
        f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {KEYS} rows are only ever retired "
        "or re-wrapped (DELETE refused)'); END"
    )
    op.execute(f"DROP TRIGGER {CARDS}_no_update")
    op.execute(sqlite_update_guard(f"{CARDS}_reencrypt_only", CARDS, CARD_REENCRYPT, CARD_REFUSED))


def downgrade() -> None:
    raise NotImplementedError("the vault's history is not downgraded")
