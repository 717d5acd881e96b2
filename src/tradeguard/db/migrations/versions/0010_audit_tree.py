"""Audit ledger Merkle tree: stored subtree hashes, signed checkpoints, witness cursors;
append-only triggers; the tree built over the events chained before this migration.

Revision ID: 0010_audit_tree
Revises: 0009_access_alerts
"""

import sqlalchemy as sa
from alembic import op

# The stored layout is part of the schema's meaning (which subtrees audit_tree_node holds),
# so the backfill uses the same pure function the sequencer uses. A future change of layout
# needs a migration of its own.
from tradeguard.ledger.tree.layout import advance_pending, extend

revision = "0010_audit_tree"
down_revision = "0009_access_alerts"
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = ("audit_tree_node", "audit_checkpoint")
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BACKFILL_CHUNK = 50_000


def upgrade() -> None:
    is_pg = op.get_bind().dialect.name == "postgresql"
    nodes = op.create_table(
        "audit_tree_node",
        sa.Column("level", sa.SmallInteger(), nullable=False, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_audit_tree_node"),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", PK, primary_key=True, autoincrement=True),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_checkpoint"),
        sa.UniqueConstraint("tree_size", "key_id", name="uq_audit_checkpoint_tree_size_key_id"),
    )
    op.create_table(
        "audit_witness_cursor",
        sa.Column("witness", sa.String(64), nullable=False),
        sa.Column("published_size", sa.BigInteger(), nullable=False),
        sa.Column("published_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("witness", name="pk_audit_witness_cursor"),
    )
    _backfill(nodes)
    if is_pg:
        for table in APPEND_ONLY_TABLES:
            # The refusing function was created with the ledger (0001).
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION tradeguard_refuse_ledger_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION tradeguard_refuse_ledger_change()"
            )
    else:
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {table} is append-only "
                    f"({operation} refused)'); END"
                )


def _backfill(nodes: sa.Table) -> None:
    """Build the stored subtrees over every event already chained, from their leaf hashes
    (no event is re-hashed), in chunks so memory stays bounded at any ledger size."""
    bind = op.get_bind()
    chain = sa.table("audit_chain", sa.column("seq", sa.BigInteger), sa.column("leaf_hash"))
    state = sa.table("audit_sequencer_state", sa.column("id"), sa.column("last_seq"))
    top = bind.execute(sa.select(state.c.last_seq).where(state.c.id == 1)).scalar_one()
    size = 0
    pending: dict[int, list[bytes]] = {}
    while size < top:
        last = min(size + BACKFILL_CHUNK, top)
        leaves = [
            bytes(leaf)
            for leaf in bind.execute(
                sa.select(chain.c.leaf_hash)
                .where(chain.c.seq > size, chain.c.seq <= last)
                .order_by(chain.c.seq)
            ).scalars()
        ]
        if len(leaves) != last - size:
            raise RuntimeError(f"audit_chain is missing positions in {size + 1}..{last}")
        completed = extend(size, pending, leaves)
        if completed:
            op.bulk_insert(
                nodes, [{"level": n.level, "idx": n.index, "hash": n.hash} for n in completed]
            )
        pending = advance_pending(size, pending, leaves, completed)
        size = last


def downgrade() -> None:
    # The audit trail and its signed tree heads are kept for 7 years (AUD-2).
    raise RuntimeError("the audit ledger cannot be downgraded")
