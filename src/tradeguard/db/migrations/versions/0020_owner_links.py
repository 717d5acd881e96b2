"""Derived beneficial-owner links (issue #12): kinds, evidence, dismissal, user pairs.

`surveillance_links` held only compliance's links between two accounts. A link now has a
kind (`manual`, `device`, `network`, `bank_account`), its evidence (JSON: keyed hashes and
masked values, never an address or fingerprint), a status (`active`, `dismissed`, with who
dismissed it, when and why), and is between two accounts or two users (device and network
links are derived from sign-ins, which are a user's). One link of a kind per pair.
Sign-ins are read by time and devices by fingerprint: both get an index.

Revision ID: 0020_owner_links
Revises: 0019_funds
"""

import sqlalchemy as sa
from alembic import op

revision = "0020_owner_links"
down_revision = "0019_funds"
branch_labels = None
depends_on = None

ONE_PAIR = (
    "(account_a IS NOT NULL AND account_b IS NOT NULL AND user_a IS NULL "
    "AND user_b IS NULL) OR (account_a IS NULL AND account_b IS NULL "
    "AND user_a IS NOT NULL AND user_b IS NOT NULL)"
)


def _create_links_table(name: str) -> None:
    # Created whole (not altered in batch): a batch rebuild writes the constraints in an
    # order that varies between runs, and the migrated schema must be the same every time.
    op.create_table(
        name,
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), server_default="manual", nullable=False),
        sa.Column("account_a", sa.String(length=36), nullable=True),
        sa.Column("account_b", sa.String(length=36), nullable=True),
        sa.Column("user_a", sa.String(length=36), nullable=True),
        sa.Column("user_b", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="active", nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("dismissed_by", sa.String(length=120), nullable=True),
        sa.Column("dismissed_ns", sa.BigInteger(), nullable=True),
        sa.Column("dismiss_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_surveillance_links"),
        sa.UniqueConstraint(
            "kind", "account_a", "account_b", name="uq_surveillance_links_accounts"
        ),
        sa.UniqueConstraint("kind", "user_a", "user_b", name="uq_surveillance_links_users"),
        sa.CheckConstraint(ONE_PAIR, name="ck_surveillance_links_one_pair"),
    )


def _index_links() -> None:
    for column in ("account_a", "account_b", "user_a", "user_b"):
        op.create_index(f"ix_surveillance_links_{column}", "surveillance_links", [column])


def _rows(query: str) -> list[dict[str, object]]:
    # Compliance's links are few (recorded by hand): read whole, the table rebuilt, put back.
    return [dict(row._mapping) for row in op.get_bind().execute(sa.text(query))]


def upgrade() -> None:
    kept = _rows(
        "SELECT id, account_a, account_b, reason, created_by, created_ns FROM surveillance_links"
    )
    op.drop_table("surveillance_links")
    _create_links_table("surveillance_links")
    _index_links()
    links = sa.table(
        "surveillance_links",
        *(sa.column(name) for name in ("id", "kind", "account_a", "account_b", "reason", "status")),
        sa.column("evidence", sa.JSON),
        sa.column("created_by"),
        sa.column("created_ns", sa.BigInteger),
    )
    if kept:
        op.bulk_insert(
            links, [{**row, "kind": "manual", "status": "active", "evidence": {}} for row in kept]
        )
    op.create_index("ix_auth_sessions_created_ns", "auth_sessions", ["created_ns"])
    op.create_index("ix_devices_fingerprint", "devices", ["fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_devices_fingerprint", table_name="devices")
    op.drop_index("ix_auth_sessions_created_ns", table_name="auth_sessions")
    # Links between users have no account pair to go back to, and the old table held one
    # link per pair: the first of each pair's account links is kept.
    kept = _rows(
        "SELECT id, account_a, account_b, reason, created_by, created_ns FROM surveillance_links "
        "WHERE id IN (SELECT MIN(id) FROM surveillance_links WHERE account_a IS NOT NULL "
        "GROUP BY account_a, account_b)"
    )
    op.drop_table("surveillance_links")
    op.create_table(
        "surveillance_links",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_a", sa.String(length=36), nullable=False),
        sa.Column("account_b", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_surveillance_links"),
        sa.UniqueConstraint("account_a", "account_b", name="uq_surveillance_links_pair"),
    )
    for column in ("account_a", "account_b"):
        op.create_index(f"ix_surveillance_links_{column}", "surveillance_links", [column])
    links = sa.table(
        "surveillance_links",
        *(sa.column(name) for name in ("id", "account_a", "account_b", "reason", "created_by")),
        sa.column("created_ns", sa.BigInteger),
    )
    if kept:
        op.bulk_insert(links, kept)
