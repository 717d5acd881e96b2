"""Money movement (issue #11): customers' bank accounts, deposits and withdrawals.

Bank account numbers are stored encrypted (class bank_details) with a blind index; the
journal entries of every movement live in the trading core's journal tables (0005).

Revision ID: 0019_funds
Revises: 0018_kek_rotation
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_funds"
down_revision = "0018_kek_rotation"
branch_labels = None
depends_on = None


def _money() -> sa.String:
    return sa.String(40)


def upgrade() -> None:
    op.create_table(
        "funds_customers",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_funds_customers_user_id_users"),
        sa.PrimaryKeyConstraint("user_id", name="pk_funds_customers"),
    )
    op.create_table(
        "funds_bank_accounts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("nickname", sa.String(60), nullable=False),
        sa.Column("routing_number", sa.String(9), nullable=False),
        sa.Column("account_type", sa.String(10), nullable=False),
        sa.Column("account_number_enc", sa.LargeBinary(), nullable=False),
        sa.Column("account_index", sa.LargeBinary(32), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("micro_attempts_left", sa.Integer(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("verified_ns", sa.BigInteger(), nullable=True),
        sa.Column("removed_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_funds_bank_accounts_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_funds_bank_accounts"),
    )
    op.create_index("ix_funds_bank_accounts_user_id", "funds_bank_accounts", ["user_id"])
    op.create_index(
        "ix_funds_bank_accounts_account_index", "funds_bank_accounts", ["account_index"]
    )
    op.create_table(
        "funds_deposits",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("bank_account_id", sa.String(36), nullable=True),
        sa.Column("card_id", sa.String(36), nullable=True),
        sa.Column("rail", sa.String(8), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("decline_code", sa.String(40), nullable=True),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("processor_ref", sa.String(120), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("settles_ns", sa.BigInteger(), nullable=False),
        sa.Column("settled_ns", sa.BigInteger(), nullable=True),
        sa.Column("returned_ns", sa.BigInteger(), nullable=True),
        sa.Column("return_code", sa.String(4), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_funds_deposits_user_id_users"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name="fk_funds_deposits_account_id_trading_accounts",
        ),
        sa.ForeignKeyConstraint(
            ["bank_account_id"],
            ["funds_bank_accounts.id"],
            name="fk_funds_deposits_bank_account_id_funds_bank_accounts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_funds_deposits"),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_funds_deposits_idempotency"),
    )
    op.create_index("ix_funds_deposits_user_id", "funds_deposits", ["user_id"])
    op.create_index("ix_funds_deposits_account_id", "funds_deposits", ["account_id"])
    op.create_index("ix_funds_deposits_open", "funds_deposits", ["status", "settles_ns"])
    op.create_table(
        "funds_withdrawals",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("bank_account_id", sa.String(36), nullable=False),
        sa.Column("rail", sa.String(8), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("review_reason", sa.String(120), nullable=True),
        sa.Column("first_approver", sa.String(36), nullable=True),
        sa.Column("decided_by", sa.String(36), nullable=True),
        sa.Column("refuse_token_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("verify_deadline_ns", sa.BigInteger(), nullable=False),
        sa.Column("processor_ref", sa.String(120), nullable=True),
        sa.Column("settles_ns", sa.BigInteger(), nullable=True),
        sa.Column("failure_code", sa.String(40), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.Column("verified_ns", sa.BigInteger(), nullable=True),
        sa.Column("completed_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_funds_withdrawals_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["trading_accounts.id"],
            name="fk_funds_withdrawals_account_id_trading_accounts",
        ),
        sa.ForeignKeyConstraint(
            ["bank_account_id"],
            ["funds_bank_accounts.id"],
            name="fk_funds_withdrawals_bank_account_id_funds_bank_accounts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_funds_withdrawals"),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_funds_withdrawals_idempotency"),
        sa.UniqueConstraint("refuse_token_hash", name="uq_funds_withdrawals_refuse_token_hash"),
    )
    op.create_index("ix_funds_withdrawals_account_id", "funds_withdrawals", ["account_id"])
    op.create_index(
        "ix_funds_withdrawals_user_time", "funds_withdrawals", ["user_id", "created_ns"]
    )
    op.create_index("ix_funds_withdrawals_status", "funds_withdrawals", ["status", "updated_ns"])


def downgrade() -> None:
    op.drop_table("funds_withdrawals")
    op.drop_table("funds_deposits")
    op.drop_table("funds_bank_accounts")
    op.drop_table("funds_customers")
