"""Personal data in ledger events: the per-subject data keys (ENC-3, crypto-shredding).

A key row is written once and may change once more, from live to destroyed (its wrapped key
cleared, `destroyed_ns` set): triggers on both engines refuse any other UPDATE, every
DELETE and (PostgreSQL) TRUNCATE, so a key can be destroyed but never swapped, restored or
removed without trace. One live key per subject (a partial unique index).

Revision ID: 0011_audit_personal
Revises: 0010_audit_tree
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_audit_personal"
down_revision = "0010_audit_tree"
branch_labels = None
depends_on = None

TABLE = "audit_subject_key"
LIVE = sa.text("destroyed_ns IS NULL")
# The one change a row may undergo: live -> destroyed, its wrapped key cleared, nothing else.
ALLOWED_UPDATE = (
    "OLD.destroyed_ns IS NULL AND NEW.destroyed_ns IS NOT NULL AND NEW.wrapped_key IS NULL "
    "AND NEW.key_id = OLD.key_id AND NEW.subject = OLD.subject "
    "AND NEW.created_ns = OLD.created_ns"
)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(120), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("destroyed_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_audit_subject_key"),
    )
    op.create_index(
        "uq_audit_subject_key_live_subject",
        TABLE,
        ["subject"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_destroy_only()
    else:
        _sqlite_destroy_only()


def _postgres_destroy_only() -> None:
    op.execute(
        f"""
        CREATE FUNCTION tradeguard_subject_key_destroy_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF {ALLOWED_UPDATE} THEN
                    RETURN NEW;
                END IF;
            END IF;
            RAISE EXCEPTION 'tradeguard: % keys are only ever destroyed (% refused)',
                TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_destroy_only BEFORE UPDATE OR DELETE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION tradeguard_subject_key_destroy_only()"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
        "FOR EACH STATEMENT EXECUTE FUNCTION tradeguard_subject_key_destroy_only()"
    )


def _sqlite_destroy_only() -> None:
    op.execute(
        f"CREATE TRIGGER {TABLE}_destroy_only BEFORE UPDATE ON {TABLE} "
        f"WHEN NOT ({ALLOWED_UPDATE}) "
        f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {TABLE} keys are only ever destroyed "
        "(UPDATE refused)'); END"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
        f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {TABLE} keys are only ever destroyed "
        "(DELETE refused)'); END"
    )


def downgrade() -> None:
    # Dropping the table would destroy every subject's key: all personal data in the ledger
    # would be erased at once. Forget subjects one by one instead.
    raise RuntimeError("the subject keys of the audit ledger cannot be downgraded")
