"""Back office: the customer's "who accessed my data" log and second-factor reset requests.

Revision ID: 0008_backoffice
Revises: 0005_trading_core
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_backoffice"
down_revision = "0006_access_grants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backoffice_access_log",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("actor_role", sa.String(length=20), nullable=False),
        sa.Column("actor_pseudonym", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("field", sa.String(length=60), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backoffice_access_log")),
    )
    with op.batch_alter_table("backoffice_access_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_backoffice_access_log_customer", ["customer_id", "created_ns"], unique=False
        )

    op.create_table(
        "backoffice_factor_resets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("requested_by", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("expires_ns", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("decided_by", sa.String(length=80), nullable=True),
        sa.Column("decided_ns", sa.BigInteger(), nullable=True),
        sa.Column("decision_note", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backoffice_factor_resets")),
    )
    with op.batch_alter_table("backoffice_factor_resets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_backoffice_factor_resets_user", ["user_id", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("backoffice_factor_resets", schema=None) as batch_op:
        batch_op.drop_index("ix_backoffice_factor_resets_user")

    op.drop_table("backoffice_factor_resets")
    with op.batch_alter_table("backoffice_access_log", schema=None) as batch_op:
        batch_op.drop_index("ix_backoffice_access_log_customer")

    op.drop_table("backoffice_access_log")
