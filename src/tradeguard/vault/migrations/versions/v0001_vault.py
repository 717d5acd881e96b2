"""The card vault (PCI-2): cards by token, the vault's access log, its own key table.

The key table has the platform's layout (crypto/models.py) so the keyring reads it the same
way, but it lives here, holding only the vault's keys, wrapped by the vault's own
key-encrypting key. Card rows are never updated (a card is stored, read, forgotten); the
access log is append-only: triggers refuse UPDATE on both tables and DELETE on the log.

Revision ID: v0001_vault
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "v0001_vault"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crypto_key_version",
        sa.Column("data_class", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("kek_id", sa.String(80), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("activates_ns", sa.BigInteger(), nullable=False),
        sa.Column("retired_ns", sa.BigInteger(), nullable=True),
        sa.Column("usage_count", sa.BigInteger(), nullable=True),
        sa.Column("usage_counted_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("data_class", "kind", "version", name="pk_crypto_key_version"),
    )
    op.create_table(
        "vault_card",
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("pan_enc", sa.LargeBinary(), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("brand", sa.String(16), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("expiry_month", sa.Integer(), nullable=False),
        sa.Column("expiry_year", sa.Integer(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_role", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("token", name="pk_vault_card"),
    )
    op.create_index("ix_vault_card_fingerprint", "vault_card", ["fingerprint"])
    op.create_table(
        "vault_access_log",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("occurred_ns", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("on_behalf_of", sa.String(120), nullable=False),
        sa.Column("token", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_vault_access_log"),
    )
    op.create_index("ix_vault_access_log_occurred_ns", "vault_access_log", ["occurred_ns"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION tradeguard_vault_refuse() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'tradeguard vault: % on % refused', TG_OP, TG_TABLE_NAME
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER vault_card_no_update BEFORE UPDATE ON vault_card "
            "FOR EACH ROW EXECUTE FUNCTION tradeguard_vault_refuse()"
        )
        op.execute(
            "CREATE TRIGGER vault_access_log_append_only BEFORE UPDATE OR DELETE "
            "ON vault_access_log FOR EACH ROW EXECUTE FUNCTION tradeguard_vault_refuse()"
        )
    else:
        op.execute(
            "CREATE TRIGGER vault_card_no_update BEFORE UPDATE ON vault_card "
            "BEGIN SELECT RAISE(ABORT, 'tradeguard vault: UPDATE on vault_card refused'); END"
        )
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER vault_access_log_no_{verb.lower()} BEFORE {verb} "
                f"ON vault_access_log BEGIN SELECT RAISE(ABORT, "
                f"'tradeguard vault: {verb} on vault_access_log refused'); END"
            )


def downgrade() -> None:
    raise NotImplementedError("the vault's history is not downgraded")
