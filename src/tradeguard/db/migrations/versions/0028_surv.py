"""Surveillance alerts get a status of their own (new, in_case, dismissed, escalated): the
old single status `open` becomes `in_case` for an alert in a case, `new` otherwise.

Revision ID: 0028_surv
Revises: 0027_aml
"""

from alembic import op

revision = "0028_surv"
down_revision = "0027_aml"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE surveillance_alerts SET status = 'in_case' WHERE status = 'open' AND id IN "
        "(SELECT alert_id FROM surveillance_case_alerts)"
    )
    op.execute("UPDATE surveillance_alerts SET status = 'new' WHERE status = 'open'")


def downgrade() -> None:
    op.execute("UPDATE surveillance_alerts SET status = 'open'")
