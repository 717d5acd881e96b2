"""API keys for programmatic access (issue #14, API-1, ACCT-3).

The secret is stored encrypted (class api_key_secret, id 15) with its SHA-256 for leak
reports.

Revision ID: 0024_apikeys
Revises: 0023_documents
"""

import sqlalchemy as sa
from alembic import op

revision = "0024_apikeys"
down_revision = "0023_documents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("scope", sa.String(10), nullable=False),
        sa.Column("ip_allowlist", sa.Text(), nullable=False),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("expires_ns", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ns", sa.BigInteger(), nullable=True),
        sa.Column("revoked_reason", sa.String(20), nullable=True),
        sa.Column("last_used_ns", sa.BigInteger(), nullable=True),
        sa.Column("reminded_7d_ns", sa.BigInteger(), nullable=True),
        sa.Column("reminded_1d_ns", sa.BigInteger(), nullable=True),
        sa.Column("rotated_to", sa.String(40), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_api_keys_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("secret_digest", name="uq_api_keys_secret_digest"),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_index("ix_api_keys_expires_ns", "api_keys", ["expires_ns"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_expires_ns", table_name="api_keys")
    op.drop_index("ix_api_keys_user_id", table_name="api_keys")
    op.drop_table("api_keys")
