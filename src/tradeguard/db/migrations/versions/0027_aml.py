"""AML monitoring, CTRs and SAR cases (issue #13, AML-1..3).

The monitor's checkpoint starts at the beginning of the ledger. Filings' documents are
encrypted (class personal_details): they carry the subject's name, address, tax id and date
of birth.

Revision ID: 0027_aml
Revises: 0026_sanctions
"""

import sqlalchemy as sa
from alembic import op

revision = "0027_aml"
down_revision = "0026_sanctions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aml_checkpoints",
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("events_read", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_aml_checkpoints"),
    )
    # Seeded, so monitors starting at once in several processes lock one existing row
    # instead of racing to insert it.
    checkpoints = sa.table(
        "aml_checkpoints",
        sa.column("name", sa.String),
        sa.column("last_seq", sa.BigInteger),
        sa.column("events_read", sa.BigInteger),
        sa.column("updated_ns", sa.BigInteger),
    )
    op.bulk_insert(checkpoints, [{"name": "aml", "last_seq": 0, "events_read": 0, "updated_ns": 0}])
    op.create_table(
        "aml_movements",
        sa.Column("id", sa.String(60), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("rail", sa.String(8), nullable=True),
        sa.Column("amount", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("symbol", sa.String(20), nullable=True),
        sa.Column("bank_account_id", sa.String(36), nullable=True),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aml_movements"),
    )
    op.create_index("ix_aml_movements_user_time", "aml_movements", ["user_id", "ts_ns"])
    op.create_index("ix_aml_movements_account_time", "aml_movements", ["account_id", "ts_ns"])
    op.create_index("ix_aml_movements_user_day", "aml_movements", ["user_id", "day"])
    op.create_table(
        "aml_alerts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("window_key", sa.String(80), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("summary", sa.String(400), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("movement_ids", sa.JSON(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("window_start_ns", sa.BigInteger(), nullable=False),
        sa.Column("window_end_ns", sa.BigInteger(), nullable=False),
        sa.Column("trigger_seq", sa.BigInteger(), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aml_alerts"),
        sa.UniqueConstraint("rule", "user_id", "window_key", name="uq_aml_alerts_window"),
    )
    op.create_index("ix_aml_alerts_status", "aml_alerts", ["status", "created_ns"])
    op.create_index("ix_aml_alerts_user", "aml_alerts", ["user_id"])
    op.create_index("ix_aml_alerts_case_id", "aml_alerts", ["case_id"])
    op.create_table(
        "aml_ctrs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("total", sa.String(40), nullable=False),
        sa.Column("movement_ids", sa.JSON(), nullable=False),
        sa.Column("accounts", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("due_day", sa.String(10), nullable=False),
        sa.Column("amended", sa.Boolean(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aml_ctrs"),
        sa.UniqueConstraint("user_id", "day", "direction", name="uq_aml_ctrs_person_day"),
    )
    op.create_index("ix_aml_ctrs_status", "aml_ctrs", ["status", "due_day"])
    op.create_table(
        "aml_cases",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(36), nullable=True),
        sa.Column("opened_by", sa.String(36), nullable=False),
        sa.Column("detection_ns", sa.BigInteger(), nullable=False),
        sa.Column("suspect_identified", sa.Boolean(), nullable=False),
        sa.Column("due_ns", sa.BigInteger(), nullable=False),
        sa.Column("reminders_sent", sa.JSON(), nullable=False),
        sa.Column("overdue_notified", sa.Boolean(), nullable=False),
        sa.Column("extra_movement_ids", sa.JSON(), nullable=False),
        sa.Column("max_score", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(12), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("first_decider", sa.String(36), nullable=True),
        sa.Column("decided_by", sa.String(36), nullable=True),
        sa.Column("decided_ns", sa.BigInteger(), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aml_cases"),
    )
    op.create_index("ix_aml_cases_status", "aml_cases", ["status", "due_ns"])
    op.create_index("ix_aml_cases_user_id", "aml_cases", ["user_id"])
    op.create_table(
        "aml_case_notes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("author", sa.String(36), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aml_case_notes"),
    )
    op.create_index("ix_aml_case_notes_case", "aml_case_notes", ["case_id", "created_ns"])
    op.create_table(
        "aml_filings",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(4), nullable=False),
        sa.Column("ref_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("missing", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("document_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aml_filings"),
    )
    op.create_index("ix_aml_filings_ref", "aml_filings", ["kind", "ref_id"])


def downgrade() -> None:
    for table in (
        "aml_filings",
        "aml_case_notes",
        "aml_cases",
        "aml_ctrs",
        "aml_alerts",
        "aml_movements",
        "aml_checkpoints",
    ):
        op.drop_table(table)
