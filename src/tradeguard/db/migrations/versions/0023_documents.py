"""Identity documents (issue #13, KYC-2): metadata in clear, files sealed in chunks.

Each document's data key is a keyring field of class kyc_document; its file is AES-GCM
chunks under that key (kyc/documents/sealing.py).

Revision ID: 0023_documents
Revises: 0022_recovery
"""

import sqlalchemy as sa
from alembic import op

revision = "0023_documents"
down_revision = "0022_recovery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kyc_documents",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("side", sa.String(8), nullable=True),
        sa.Column("detected_type", sa.String(40), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("data_key_enc", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("mrz_format", sa.String(4), nullable=True),
        sa.Column("reasons", sa.String(1000), nullable=False),
        sa.Column("provider", sa.String(24), nullable=True),
        sa.Column("provider_outcome", sa.String(12), nullable=True),
        sa.Column("provider_reference", sa.String(80), nullable=True),
        sa.Column("fields_enc", sa.LargeBinary(), nullable=True),
        sa.Column("reviewed_by", sa.String(36), nullable=True),
        sa.Column("review_decision", sa.String(12), nullable=True),
        sa.Column("review_reason", sa.String(500), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("checked_ns", sa.BigInteger(), nullable=True),
        sa.Column("reviewed_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_kyc_documents_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_kyc_documents"),
    )
    op.create_index("ix_kyc_documents_user_time", "kyc_documents", ["user_id", "created_ns"])
    op.create_index("ix_kyc_documents_status", "kyc_documents", ["status", "created_ns"])
    op.create_table(
        "kyc_document_chunks",
        sa.Column("document_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["kyc_documents.id"],
            name="fk_kyc_document_chunks_document_id_kyc_documents",
        ),
        sa.PrimaryKeyConstraint("document_id", "seq", name="pk_kyc_document_chunks"),
    )


def downgrade() -> None:
    op.drop_table("kyc_document_chunks")
    op.drop_index("ix_kyc_documents_status", table_name="kyc_documents")
    op.drop_index("ix_kyc_documents_user_time", table_name="kyc_documents")
    op.drop_table("kyc_documents")
