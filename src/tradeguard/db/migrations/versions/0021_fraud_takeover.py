"""Account-takeover defence (ATO-1, ATO-2): sign-in history, "was this you?" prompts,
withdrawal freezes and takeover reviews.

Revision ID: 0021_fraud_takeover
Revises: 0020_owner_links
"""

import sqlalchemy as sa
from alembic import op

revision = "0021_fraud_takeover"
down_revision = "0020_owner_links"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fraud_sign_ins",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.String(36), nullable=True),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("network", sa.String(120), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("response", sa.String(16), nullable=False),
        sa.Column("trading_flagged_ns", sa.BigInteger(), nullable=True),
        sa.Column("confirmed_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_fraud_sign_ins"),
    )
    op.create_index("ix_fraud_sign_ins_user_at", "fraud_sign_ins", ["user_id", "at_ns"])
    op.create_table(
        "fraud_takeover_prompts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("sign_in_id", sa.String(36), nullable=True),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("expires_ns", sa.BigInteger(), nullable=False),
        sa.Column("answered_ns", sa.BigInteger(), nullable=True),
        sa.Column("answer", sa.String(8), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_fraud_takeover_prompts"),
        sa.UniqueConstraint("token_hash", name="uq_fraud_takeover_prompts_token_hash"),
    )
    op.create_index("ix_fraud_takeover_prompts_user_id", "fraud_takeover_prompts", ["user_id"])
    op.create_table(
        "fraud_withdrawal_freezes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("frozen_ns", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("review_id", sa.String(36), nullable=True),
        sa.Column("lift_requested_by", sa.String(36), nullable=True),
        sa.Column("lift_requested_ns", sa.BigInteger(), nullable=True),
        sa.Column("lift_reason", sa.String(500), nullable=True),
        sa.Column("lifted_by", sa.String(36), nullable=True),
        sa.Column("lifted_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_fraud_withdrawal_freezes"),
    )
    op.create_index(
        "ix_fraud_withdrawal_freezes_user",
        "fraud_withdrawal_freezes",
        ["user_id", "lifted_ns"],
    )
    op.create_table(
        "fraud_takeover_reviews",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(40), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("signals", sa.String(400), nullable=False),
        sa.Column("opened_ns", sa.BigInteger(), nullable=False),
        sa.Column("assignee", sa.String(36), nullable=True),
        sa.Column("closed_ns", sa.BigInteger(), nullable=True),
        sa.Column("closed_by", sa.String(36), nullable=True),
        sa.Column("outcome", sa.String(24), nullable=True),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_fraud_takeover_reviews"),
    )
    op.create_index(
        "ix_fraud_takeover_reviews_status", "fraud_takeover_reviews", ["status", "opened_ns"]
    )
    op.create_index("ix_fraud_takeover_reviews_user_id", "fraud_takeover_reviews", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_fraud_takeover_reviews_user_id", table_name="fraud_takeover_reviews")
    op.drop_index("ix_fraud_takeover_reviews_status", table_name="fraud_takeover_reviews")
    op.drop_table("fraud_takeover_reviews")
    op.drop_index("ix_fraud_withdrawal_freezes_user", table_name="fraud_withdrawal_freezes")
    op.drop_table("fraud_withdrawal_freezes")
    op.drop_index("ix_fraud_takeover_prompts_user_id", table_name="fraud_takeover_prompts")
    op.drop_table("fraud_takeover_prompts")
    op.drop_index("ix_fraud_sign_ins_user_at", table_name="fraud_sign_ins")
    op.drop_table("fraud_sign_ins")
