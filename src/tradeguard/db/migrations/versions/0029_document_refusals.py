"""Refused identity-document uploads, counted per user (who, when, the refusal code; nothing
of the file) for the daily budget of refusals.

Revision ID: 0029_document_refusals
Revises: 0028_surv
"""

import sqlalchemy as sa
from alembic import op

revision = "0029_document_refusals"
down_revision = "0028_surv"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kyc_document_refusals",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kyc_document_refusals"),
    )
    op.create_index(
        "ix_kyc_document_refusals_user_time", "kyc_document_refusals", ["user_id", "created_ns"]
    )


def downgrade() -> None:
    op.drop_index("ix_kyc_document_refusals_user_time", table_name="kyc_document_refusals")
    op.drop_table("kyc_document_refusals")
