"""Key-encrypting-key rotation (issue #10): a wrapped key may be re-wrapped under another KEK.

`crypto_key_version` rows were only ever retired (0013). A master-key rotation, or a move to
a KMS, re-wraps every stored key under the new key-encrypting key: the row's `wrapped_key`
and `kek_id` change (the KEK id must change), nothing else. This does not weaken "a wrapped
key cannot be swapped": the wrapped bytes are bound (AES-GCM associated data, or the KMS
encryption context) to the row's class, kind and version, so only a holder of a KEK can
write bytes that open there, and they open to the same key; the slot, times and state stay
as they were. A row with no
wrapped key (version 0, the legacy scheme) cannot gain one.

`kek_id` grows to 200 characters: "aws-kms:" and a key ARN is longer than 80. Rows of kind
`secret` (an HMAC pepper, by purpose in `data_class`) need no schema change.

Revision ID: 0018_kek_rotation
Revises: 0017_customer_cards
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_kek_rotation"
down_revision = "0017_customer_cards"
branch_labels = None
depends_on = None

KEYS = "crypto_key_version"

_SAME_SLOT = (
    "NEW.data_class = OLD.data_class AND NEW.kind = OLD.kind AND NEW.version = OLD.version "
    "AND NEW.created_ns = OLD.created_ns AND NEW.activates_ns = OLD.activates_ns"
)
# 0013's allowed updates (retire, usage count), unchanged.
RETIRE = {
    "postgresql": (
        f"{_SAME_SLOT} AND NEW.wrapped_key IS NOT DISTINCT FROM OLD.wrapped_key "
        "AND NEW.kek_id IS NOT DISTINCT FROM OLD.kek_id "
        "AND (NEW.state = OLD.state AND NEW.retired_ns IS NOT DISTINCT FROM OLD.retired_ns "
        "OR OLD.state = 'active' AND NEW.state = 'retired' AND NEW.retired_ns IS NOT NULL)"
    ),
    "sqlite": (
        f"{_SAME_SLOT} AND NEW.wrapped_key IS OLD.wrapped_key AND NEW.kek_id IS OLD.kek_id "
        "AND (NEW.state = OLD.state AND NEW.retired_ns IS OLD.retired_ns "
        "OR OLD.state = 'active' AND NEW.state = 'retired' AND NEW.retired_ns IS NOT NULL)"
    ),
}
# New: a re-wrap under another KEK (the KEK id changes), the slot, state and times unchanged.
REWRAP = {
    "postgresql": (
        f"{_SAME_SLOT} AND NEW.state = OLD.state "
        "AND NEW.retired_ns IS NOT DISTINCT FROM OLD.retired_ns "
        "AND OLD.wrapped_key IS NOT NULL AND NEW.wrapped_key IS NOT NULL "
        "AND NEW.kek_id IS NOT NULL AND NEW.kek_id IS DISTINCT FROM OLD.kek_id"
    ),
    "sqlite": (
        f"{_SAME_SLOT} AND NEW.state = OLD.state AND NEW.retired_ns IS OLD.retired_ns "
        "AND OLD.wrapped_key IS NOT NULL AND NEW.wrapped_key IS NOT NULL "
        "AND NEW.kek_id IS NOT NULL AND NEW.kek_id IS NOT OLD.kek_id"
    ),
}


def _allowed(dialect: str) -> str:
    return f"({RETIRE[dialect]}) OR ({REWRAP[dialect]})"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            KEYS, "kek_id", type_=sa.String(200), existing_type=sa.String(80), nullable=True
        )
        _guard_postgres(_allowed("postgresql"))
    else:
        # SQLite does not enforce a VARCHAR length: only the trigger changes.
        _guard_sqlite(_allowed("sqlite"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _guard_postgres(RETIRE["postgresql"])
        # Rows under a KMS key (ids longer than 80) would not fit: refused by PostgreSQL then.
        op.alter_column(
            KEYS, "kek_id", type_=sa.String(80), existing_type=sa.String(200), nullable=True
        )
    else:
        _guard_sqlite(RETIRE["sqlite"])


def _guard_postgres(allowed: str) -> None:
    # Same function as 0013 (its triggers call it by name): only the allowed update grows.
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION tradeguard_key_version_guard() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF {allowed} THEN
                    RETURN NEW;
                END IF;
            END IF;
            RAISE EXCEPTION 'tradeguard: % rows are only ever retired or re-wrapped (% refused)',
                TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """
    )


def _guard_sqlite(allowed: str) -> None:
    op.execute(f"DROP TRIGGER {KEYS}_guard")
    op.execute(
        f"CREATE TRIGGER {KEYS}_guard BEFORE UPDATE ON {KEYS} "
        f"WHEN NOT ({allowed}) "
        f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {KEYS} rows are only ever retired "
        "or re-wrapped (UPDATE refused)'); END"
    )
