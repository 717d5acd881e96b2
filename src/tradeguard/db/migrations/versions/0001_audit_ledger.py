"""Audit ledger v1: events, hash chain, sequencer state; append-only triggers.

Revision ID: 0001_audit_ledger
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_audit_ledger"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = ("audit_event", "audit_chain")

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    is_pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "audit_event",
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("occurred_ns", sa.BigInteger(), nullable=False),
        sa.Column("actor_id", sa.String(100), nullable=True),
        sa.Column("subject_id", sa.String(100), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column(
            "txid",
            sa.BigInteger(),
            nullable=True,
            server_default=sa.text("(pg_current_xact_id()::text::bigint)") if is_pg else None,
        ),
        sa.PrimaryKeyConstraint("pk", name="pk_audit_event"),
        sa.UniqueConstraint("event_id", name="uq_audit_event_event_id"),
    )
    op.create_index("ix_audit_event_event_type", "audit_event", ["event_type"])
    op.create_index("ix_audit_event_occurred_ns", "audit_event", ["occurred_ns"])
    op.create_index("ix_audit_event_actor_id", "audit_event", ["actor_id"])
    op.create_index("ix_audit_event_subject_id", "audit_event", ["subject_id"])
    op.create_index("ix_audit_event_txid_pk", "audit_event", ["txid", "pk"])
    op.create_table(
        "audit_chain",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("event_pk", PK, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("sequenced_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_chain"),
        sa.UniqueConstraint("event_pk", name="uq_audit_chain_event_pk"),
        sa.ForeignKeyConstraint(
            ["event_pk"], ["audit_event.pk"], name="fk_audit_chain_event_pk_audit_event"
        ),
    )
    state = op.create_table(
        "audit_sequencer_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_chain_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("cursor_txid", sa.BigInteger(), nullable=False),
        sa.Column("cursor_pk", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_sequencer_state"),
    )
    op.bulk_insert(
        state,
        [{"id": 1, "last_seq": 0, "last_chain_hash": bytes(32), "cursor_txid": 0, "cursor_pk": 0}],
    )
    if is_pg:
        _postgres_append_only()
    else:
        _sqlite_append_only()


def _postgres_append_only() -> None:
    op.execute(
        """
        CREATE FUNCTION tradeguard_refuse_ledger_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'tradeguard: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """
    )
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION tradeguard_refuse_ledger_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION tradeguard_refuse_ledger_change()"
        )


def _sqlite_append_only() -> None:
    for table in APPEND_ONLY_TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {table} is append-only "
                f"({operation} refused)'); END"
            )


def downgrade() -> None:
    # The audit trail is kept for 7 years (AUD-2); no migration ever drops it.
    raise RuntimeError("the audit ledger cannot be downgraded")
