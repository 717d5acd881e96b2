"""Versioned data keys (ENC-1, ENC-2, PCI DSS 3.6/3.7): the key table and rewrap progress.

`crypto_key_version` holds every version of every class's key, wrapped by the key-encrypting
key (which is never in the database). Triggers on both engines refuse DELETE and every
UPDATE except active -> retired and the usage count: a key version's history cannot be
rewritten, and a wrapped key cannot be swapped.

The subject keys of the audit ledger (0011) may now also be rewrapped: a live key's
`wrapped_key` may change to another non-empty value, all else equal. This does not weaken
"never swapped": the wrapped key is bound (AES-GCM associated data) to its subject and key
id, so only the keyring can produce a value that opens there, and it opens to the same data
key; restoring a destroyed key is still refused.

Revision ID: 0013_keyring
Revises: 0012_audit_search
"""

import sqlalchemy as sa
from alembic import op

from tradeguard.crypto.key_table import RETIRE, rewrap_progress_columns

revision = "0013_keyring"
# Chained after 0011 on this branch; re-chain after 0012_audit_search at merge.
down_revision = "0012_audit_search"
branch_labels = None
depends_on = None

KEYS = "crypto_key_version"
PROGRESS = "crypto_rewrap_progress"
SUBJECT_KEYS = "audit_subject_key"

# PostgreSQL and SQLite spell "equal, NULLs included" differently (crypto/key_table.py).
KEY_UPDATE = RETIRE
SUBJECT_DESTROY = (
    "OLD.destroyed_ns IS NULL AND NEW.destroyed_ns IS NOT NULL AND NEW.wrapped_key IS NULL "
    "AND NEW.key_id = OLD.key_id AND NEW.subject = OLD.subject "
    "AND NEW.created_ns = OLD.created_ns"
)
SUBJECT_REWRAP = (
    "OLD.destroyed_ns IS NULL AND NEW.destroyed_ns IS NULL AND NEW.wrapped_key IS NOT NULL "
    "AND NEW.key_id = OLD.key_id AND NEW.subject = OLD.subject "
    "AND NEW.created_ns = OLD.created_ns"
)


def upgrade() -> None:
    op.create_table(
        KEYS,
        sa.Column("data_class", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("kek_id", sa.String(80), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("activates_ns", sa.BigInteger(), nullable=False),
        sa.Column("retired_ns", sa.BigInteger(), nullable=True),
        sa.Column("usage_count", sa.BigInteger(), nullable=True),
        sa.Column("usage_counted_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("data_class", "kind", "version", name="pk_crypto_key_version"),
    )
    op.create_table(PROGRESS, *rewrap_progress_columns())
    if op.get_bind().dialect.name == "postgresql":
        _postgres()
    else:
        _sqlite()


def _postgres() -> None:
    op.execute(
        f"""
        CREATE FUNCTION tradeguard_key_version_guard() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF {KEY_UPDATE["postgresql"]} THEN
                    RETURN NEW;
                END IF;
            END IF;
            RAISE EXCEPTION 'tradeguard: % rows are only ever retired (% refused)',
                TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {KEYS}_guard BEFORE UPDATE OR DELETE ON {KEYS} "
        "FOR EACH ROW EXECUTE FUNCTION tradeguard_key_version_guard()"
    )
    op.execute(
        f"CREATE TRIGGER {KEYS}_no_truncate BEFORE TRUNCATE ON {KEYS} "
        "FOR EACH STATEMENT EXECUTE FUNCTION tradeguard_key_version_guard()"
    )
    # Same function name and trigger as 0011: only the allowed update grows.
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION tradeguard_subject_key_destroy_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF ({SUBJECT_DESTROY}) OR ({SUBJECT_REWRAP}) THEN
                    RETURN NEW;
                END IF;
            END IF;
            RAISE EXCEPTION 'tradeguard: % keys are only ever destroyed (% refused)',
                TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """
    )


def _sqlite() -> None:
    op.execute(
        f"CREATE TRIGGER {KEYS}_guard BEFORE UPDATE ON {KEYS} "
        f"WHEN NOT ({KEY_UPDATE['sqlite']}) "
        f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {KEYS} rows are only ever retired "
        "(UPDATE refused)'); END"
    )
    op.execute(
        f"CREATE TRIGGER {KEYS}_no_delete BEFORE DELETE ON {KEYS} "
        f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {KEYS} rows are only ever retired "
        "(DELETE refused)'); END"
    )
    op.execute(f"DROP TRIGGER {SUBJECT_KEYS}_destroy_only")
    op.execute(
        f"CREATE TRIGGER {SUBJECT_KEYS}_destroy_only BEFORE UPDATE ON {SUBJECT_KEYS} "
        f"WHEN NOT (({SUBJECT_DESTROY}) OR ({SUBJECT_REWRAP})) "
        f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {SUBJECT_KEYS} keys are only ever destroyed "
        "(UPDATE refused)'); END"
    )


def downgrade() -> None:
    # Dropping the key table would make every value sealed under a versioned key unreadable.
    raise RuntimeError("the keyring's key table cannot be downgraded")
