"""Customers' stored cards (PCI-2): token, brand, last four, expiry, fingerprint only.

The card numbers themselves live in the vault's own database (tradeguard/vault/migrations).

Revision ID: 0017_customer_cards
Revises: 0016_surveillance_cases
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_customer_cards"
down_revision = "0016_surveillance_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_card",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("brand", sa.String(16), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("expiry_month", sa.Integer(), nullable=False),
        sa.Column("expiry_year", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_customer_card_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_customer_card"),
        sa.UniqueConstraint("token", name="uq_customer_card_token"),
    )
    op.create_index(
        "uq_customer_card_user_fingerprint",
        "customer_card",
        ["user_id", "fingerprint"],
        unique=True,
    )
    op.create_index("ix_customer_card_fingerprint", "customer_card", ["fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_customer_card_fingerprint", table_name="customer_card")
    op.drop_index("uq_customer_card_user_fingerprint", table_name="customer_card")
    op.drop_table("customer_card")
