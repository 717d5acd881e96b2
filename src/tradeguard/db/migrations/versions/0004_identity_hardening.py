"""identity hardening: a spent refresh token remembers its successor

A refresh repeated inside the grace window now receives the successor the first refresh
minted (decrypted from `successor_enc`) instead of minting a second, independent chain.
Rows written before this revision have no successor: a repeat of such a token is treated
as reuse once its grace window has passed, exactly as before.

Revision ID: 0004_identity_hardening
Revises: 0003_ledger_txid
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_identity_hardening"
down_revision = "0003_ledger_txid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("successor_enc", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("successor_enc")
