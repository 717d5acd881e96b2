"""Onboarding after the outside review: the accounts a sanctions hit restricted (to lift on
a clear) and a lowering rating override waiting for a second staff member's approval.

Revision ID: 0030_kyc_review_fixes
Revises: 0029_document_refusals
"""

import sqlalchemy as sa
from alembic import op

revision = "0030_kyc_review_fixes"
down_revision = "0029_document_refusals"
branch_labels = None
depends_on = None

TABLE = "kyc_applications"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("sanctions_restricted", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("rating_proposed", sa.String(8), nullable=True))
        batch.add_column(sa.Column("rating_proposed_by", sa.String(36), nullable=True))
        batch.add_column(sa.Column("rating_proposed_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("rating_proposed_reason")
        batch.drop_column("rating_proposed_by")
        batch.drop_column("rating_proposed")
        batch.drop_column("sanctions_restricted")
