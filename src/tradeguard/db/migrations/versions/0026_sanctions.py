"""Sanctions screening (issue #13, KYC-2): OFAC list versions, entries and names; hits and
their review; re-screening runs. Bank accounts gain the holder's name (encrypted, class
bank_details), screened as a payee.

Revision ID: 0026_sanctions
Revises: 0025_onboarding
"""

import sqlalchemy as sa
from alembic import op

revision = "0026_sanctions"
down_revision = "0025_onboarding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sanctions_list_versions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("list_name", sa.String(40), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_hashes", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("names", sa.Integer(), nullable=False),
        sa.Column("aliases", sa.Integer(), nullable=False),
        sa.Column("addresses", sa.Integer(), nullable=False),
        sa.Column("loaded_ns", sa.BigInteger(), nullable=False),
        sa.Column("loaded_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sanctions_list_versions"),
    )
    op.create_index(
        "ix_sanctions_list_versions_loaded", "sanctions_list_versions", ["list_name", "loaded_ns"]
    )
    op.create_index("ix_sanctions_list_versions_sha256", "sanctions_list_versions", ["sha256"])
    op.create_table(
        "sanctions_entries",
        sa.Column("version_id", sa.String(36), nullable=False),
        sa.Column("entry_id", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("name", sa.String(400), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["sanctions_list_versions.id"],
            name="fk_sanctions_entries_version_id_sanctions_list_versions",
        ),
        sa.PrimaryKeyConstraint("version_id", "entry_id", name="pk_sanctions_entries"),
    )
    op.create_table(
        "sanctions_names",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version_id", sa.String(36), nullable=False),
        sa.Column("entry_id", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(400), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["sanctions_list_versions.id"],
            name="fk_sanctions_names_version_id_sanctions_list_versions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sanctions_names"),
    )
    op.create_index("ix_sanctions_names_entry", "sanctions_names", ["version_id", "entry_id"])
    op.create_table(
        "sanctions_hits",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("subject_kind", sa.String(12), nullable=False),
        sa.Column("subject_ref", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("list_name", sa.String(40), nullable=False),
        sa.Column("version_id", sa.String(36), nullable=False),
        sa.Column("entry_id", sa.String(20), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("matched_name", sa.String(400), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reasons_enc", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("reviewed_by", sa.String(36), nullable=True),
        sa.Column("reviewed_ns", sa.BigInteger(), nullable=True),
        sa.Column("review_note_enc", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["sanctions_list_versions.id"],
            name="fk_sanctions_hits_version_id_sanctions_list_versions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sanctions_hits"),
        sa.UniqueConstraint(
            "subject_kind",
            "subject_ref",
            "entry_id",
            "entry_hash",
            name="uq_sanctions_hits_subject_entry",
        ),
    )
    op.create_index("ix_sanctions_hits_subject", "sanctions_hits", ["subject_kind", "subject_ref"])
    op.create_index("ix_sanctions_hits_status", "sanctions_hits", ["status", "created_ns"])
    op.create_index("ix_sanctions_hits_user_id", "sanctions_hits", ["user_id"])
    op.create_table(
        "sanctions_rescreens",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("version_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("subjects", sa.Integer(), nullable=False),
        sa.Column("new_hits", sa.Integer(), nullable=False),
        sa.Column("started_ns", sa.BigInteger(), nullable=False),
        sa.Column("finished_ns", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["sanctions_list_versions.id"],
            name="fk_sanctions_rescreens_version_id_sanctions_list_versions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sanctions_rescreens"),
    )
    with op.batch_alter_table("funds_bank_accounts") as batch:
        batch.add_column(sa.Column("holder_name_enc", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("funds_bank_accounts") as batch:
        batch.drop_column("holder_name_enc")
    op.drop_table("sanctions_rescreens")
    op.drop_table("sanctions_hits")
    op.drop_table("sanctions_names")
    op.drop_table("sanctions_entries")
    op.drop_table("sanctions_list_versions")
