"""Account recovery after a takeover (ATO-3): recovery cases, their four-eyes proposals and
marked timeline entries; reversals of executions by compensating entries.

Revision ID: 0022_recovery
Revises: 0021_fraud_takeover
"""

import sqlalchemy as sa
from alembic import op

revision = "0022_recovery"
down_revision = "0021_fraud_takeover"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fraud_recovery_cases",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("review_id", sa.String(36), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_ns", sa.BigInteger(), nullable=False),
        sa.Column("opened_by", sa.String(80), nullable=False),
        sa.Column("document_on_file", sa.String(36), nullable=True),
        sa.Column("record_attempts", sa.Integer(), nullable=False),
        sa.Column("verified_ns", sa.BigInteger(), nullable=True),
        sa.Column("verified_by", sa.String(80), nullable=True),
        sa.Column("verified_method", sa.String(16), nullable=True),
        sa.Column("credentials_reset_ns", sa.BigInteger(), nullable=True),
        sa.Column("closed_ns", sa.BigInteger(), nullable=True),
        sa.Column("closed_by", sa.String(80), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_fraud_recovery_cases"),
    )
    op.create_index(
        "ix_fraud_recovery_cases_status", "fraud_recovery_cases", ["status", "opened_ns"]
    )
    op.create_index("ix_fraud_recovery_cases_user_id", "fraud_recovery_cases", ["user_id"])
    op.create_table(
        "fraud_recovery_proposals",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("target", sa.String(36), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("proposed_by", sa.String(80), nullable=False),
        sa.Column("proposed_ns", sa.BigInteger(), nullable=False),
        sa.Column("decided_by", sa.String(80), nullable=True),
        sa.Column("decided_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["fraud_recovery_cases.id"],
            name="fk_fraud_recovery_proposals_case_id_fraud_recovery_cases",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_fraud_recovery_proposals"),
    )
    op.create_index(
        "ix_fraud_recovery_proposals_case",
        "fraud_recovery_proposals",
        ["case_id", "proposed_ns"],
    )
    op.create_table(
        "fraud_recovery_marks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref_id", sa.String(36), nullable=True),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("marked_by", sa.String(80), nullable=False),
        sa.Column("marked_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["fraud_recovery_cases.id"],
            name="fk_fraud_recovery_marks_case_id_fraud_recovery_cases",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_fraud_recovery_marks"),
        sa.UniqueConstraint("case_id", "seq", name="uq_fraud_recovery_marks_case_id"),
    )
    op.create_index("ix_fraud_recovery_marks_case_id", "fraud_recovery_marks", ["case_id"])
    op.create_table(
        "execution_reversals",
        sa.Column("execution_id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("symbol", sa.String(12), nullable=False),
        sa.Column("txn_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("reference", sa.String(80), nullable=True),
        sa.Column("reversed_by", sa.String(80), nullable=False),
        sa.Column("reversed_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name="fk_execution_reversals_execution_id_executions",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name="fk_execution_reversals_account_id_trading_accounts",
        ),
        sa.PrimaryKeyConstraint("execution_id", name="pk_execution_reversals"),
    )
    op.create_index(
        "ix_execution_reversals_account", "execution_reversals", ["account_id", "symbol"]
    )


def downgrade() -> None:
    op.drop_index("ix_execution_reversals_account", table_name="execution_reversals")
    op.drop_table("execution_reversals")
    op.drop_index("ix_fraud_recovery_marks_case_id", table_name="fraud_recovery_marks")
    op.drop_table("fraud_recovery_marks")
    op.drop_index("ix_fraud_recovery_proposals_case", table_name="fraud_recovery_proposals")
    op.drop_table("fraud_recovery_proposals")
    op.drop_index("ix_fraud_recovery_cases_user_id", table_name="fraud_recovery_cases")
    op.drop_index("ix_fraud_recovery_cases_status", table_name="fraud_recovery_cases")
    op.drop_table("fraud_recovery_cases")
