"""KYC onboarding (issue #13, KYC-1, KYC-2): customers' account applications.

What the customer declared is sealed under `personal_details`, the tax id under `tax_id`
with a blind index; review state (status, rating, approvals, consent) is clear.

Revision ID: 0025_onboarding
Revises: 0024_apikeys
"""

import sqlalchemy as sa
from alembic import op

revision = "0025_onboarding"
down_revision = "0024_apikeys"
branch_labels = None
depends_on = None

TABLE = "kyc_applications"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("details_enc", sa.LargeBinary(), nullable=False),
        sa.Column("tax_id_enc", sa.LargeBinary(), nullable=True),
        sa.Column("tax_id_index", sa.LargeBinary(64), nullable=True),
        sa.Column("tax_id_last4", sa.String(4), nullable=True),
        sa.Column("tax_id_kind", sa.String(8), nullable=True),
        sa.Column("duplicate_tax_id", sa.Boolean(), nullable=False),
        sa.Column("duplicate_resolved_by", sa.String(36), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.Column("submitted_ns", sa.BigInteger(), nullable=True),
        sa.Column("decided_ns", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sa.String(36), nullable=True),
        sa.Column("first_approver", sa.String(36), nullable=True),
        sa.Column("customer_message", sa.Text(), nullable=True),
        sa.Column("screening", sa.String(8), nullable=True),
        sa.Column("screened_ns", sa.BigInteger(), nullable=True),
        sa.Column("rating", sa.String(8), nullable=True),
        sa.Column("rating_score", sa.Integer(), nullable=True),
        sa.Column("rating_factors", sa.JSON(), nullable=True),
        sa.Column("rating_overridden", sa.Boolean(), nullable=False),
        sa.Column("next_review_on", sa.String(10), nullable=True),
        sa.Column("edd_note_enc", sa.LargeBinary(), nullable=True),
        sa.Column("edd_by", sa.String(36), nullable=True),
        sa.Column("edd_ns", sa.BigInteger(), nullable=True),
        sa.Column("address_accepted_by", sa.String(36), nullable=True),
        sa.Column("consent_version", sa.String(40), nullable=True),
        sa.Column("consent_ns", sa.BigInteger(), nullable=True),
        sa.Column("marketing_opt_in", sa.Boolean(), nullable=False),
        sa.Column("marketing_changed_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_kyc_applications_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_kyc_applications"),
    )
    op.create_index("ix_kyc_applications_user_id", TABLE, ["user_id"])
    op.create_index("ix_kyc_applications_tax_id_index", TABLE, ["tax_id_index"])
    op.create_index("ix_kyc_applications_next_review_on", TABLE, ["next_review_on"])
    op.create_index("ix_kyc_applications_status", TABLE, ["status", "submitted_ns"])


def downgrade() -> None:
    op.drop_table(TABLE)
