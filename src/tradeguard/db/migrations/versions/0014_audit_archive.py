"""Sealed audit archive (AUD-2, ENC-3): the sealed segments and the purges; events can be
deleted only below a recorded purge.

`audit_archive_segment` records each sealed segment file, `audit_archive_purge` each purge
of events past their retention. Both are append-only, and a purge row is accepted only if it
continues the previous one and ends where a sealed segment ends, with that segment's last
chain hash (so the database itself refuses a purge of unsealed events).

`audit_event` and `audit_event_ref` stay append-only except for one DELETE: that of an event
chained at or below the latest purge's `through_seq` (and its references). UPDATE is still
refused, as is every other DELETE, and TRUNCATE on PostgreSQL.

`audit_chain` keeps its rows after a purge (sequence number, leaf and chain hash, and the
number of the event row that is gone): they hold no event data, and the Merkle tree, the
proofs and the checkpoint signer read leaves from them. Its foreign key to `audit_event`
is therefore dropped; `audit verify` still reports any chained event missing above the
purged range. On SQLite this rebuilds `audit_chain` (copying its rows: about a second per
million events; appends wait meanwhile), on PostgreSQL it only drops the constraint.

Revision ID: 0014_audit_archive
Revises: 0013_keyring
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_audit_archive"
down_revision = "0013_keyring"
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = ("audit_archive_segment", "audit_archive_purge")
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Trigger conditions: constant SQL text, no input anywhere near it.
PURGED_THROUGH = "(SELECT coalesce(max(through_seq), 0) FROM audit_archive_purge)"
# The event row `pk` is chained at or below the purge horizon.
PURGED_EVENT = (
    "EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_pk = {pk} AND c.seq <= "  # noqa: S608
    + PURGED_THROUGH
    + ")"
)
# A purge continues the last one and ends at a sealed segment's end, with its chain hash.
PURGE_ALLOWED = (
    "NEW.through_seq >= NEW.first_seq AND NEW.first_seq = " + PURGED_THROUGH + " + 1 "  # noqa: S608
    "AND EXISTS (SELECT 1 FROM audit_archive_segment s WHERE s.last_seq = NEW.through_seq "
    "AND s.last_chain_hash = NEW.boundary_chain_hash)"
)


def upgrade() -> None:
    is_pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "audit_archive_segment",
        sa.Column("first_seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("previous_chain_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("last_chain_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("range_root", sa.LargeBinary(32), nullable=False),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.Column("min_occurred_ns", sa.BigInteger(), nullable=False),
        sa.Column("max_occurred_ns", sa.BigInteger(), nullable=False),
        sa.Column("file_sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("file_bytes", sa.BigInteger(), nullable=False),
        sa.Column("plain_bytes", sa.BigInteger(), nullable=False),
        sa.Column("manifest_sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("sealed_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("first_seq", name="pk_audit_archive_segment"),
        sa.UniqueConstraint("last_seq", name="uq_audit_archive_segment_last_seq"),
    )
    op.create_table(
        "audit_archive_purge",
        sa.Column("id", PK, primary_key=True, autoincrement=True),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("through_seq", sa.BigInteger(), nullable=False),
        sa.Column("boundary_chain_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("before_ns", sa.BigInteger(), nullable=False),
        sa.Column("purged_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_archive_purge"),
        sa.UniqueConstraint("through_seq", name="uq_audit_archive_purge_through_seq"),
    )
    if is_pg:
        _postgres()
    else:
        _sqlite()


def _postgres() -> None:
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
    op.execute(
        f"""
        CREATE FUNCTION tradeguard_audit_purge_allowed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF {PURGE_ALLOWED} THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'tradeguard: a purge continues the last one and ends at a sealed '
                'segment''s end' USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_archive_purge_sealed BEFORE INSERT ON audit_archive_purge "
        "FOR EACH ROW EXECUTE FUNCTION tradeguard_audit_purge_allowed()"
    )
    for table, function, pk in (
        ("audit_event", "tradeguard_audit_event_purged_only", "OLD.pk"),
        ("audit_event_ref", "tradeguard_audit_event_ref_purged_only", "OLD.event_pk"),
    ):
        op.execute(
            f"""
            CREATE FUNCTION {function}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' AND {PURGED_EVENT.format(pk=pk)} THEN
                    RETURN OLD;
                END IF;
                RAISE EXCEPTION 'tradeguard: % is append-only (% refused)', TG_TABLE_NAME,
                    TG_OP USING ERRCODE = 'insufficient_privilege';
            END;
            $$
            """
        )
        # Same trigger name as before: only its function changes.
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
    op.execute("ALTER TABLE audit_chain DROP CONSTRAINT fk_audit_chain_event_pk_audit_event")


def _sqlite() -> None:
    for table in APPEND_ONLY_TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {table} is append-only "
                f"({operation} refused)'); END"
            )
    op.execute(
        "CREATE TRIGGER audit_archive_purge_sealed BEFORE INSERT ON audit_archive_purge "
        f"WHEN NOT ({PURGE_ALLOWED}) BEGIN SELECT RAISE(ABORT, 'tradeguard: a purge continues "
        "the last one and ends at a sealed segment''s end'); END"
    )
    # SQLite cannot drop a constraint: audit_chain is rebuilt without the foreign key, with
    # the same columns, constraint names and triggers.
    op.execute("DROP TRIGGER audit_chain_no_update")
    op.execute("DROP TRIGGER audit_chain_no_delete")
    op.execute(
        """
        CREATE TABLE audit_chain_rebuilt (
            seq BIGINT NOT NULL,
            event_pk INTEGER NOT NULL,
            leaf_hash BLOB NOT NULL,
            chain_hash BLOB NOT NULL,
            sequenced_ns BIGINT NOT NULL,
            CONSTRAINT pk_audit_chain PRIMARY KEY (seq),
            CONSTRAINT uq_audit_chain_event_pk UNIQUE (event_pk)
        )
        """
    )
    op.execute(
        "INSERT INTO audit_chain_rebuilt (seq, event_pk, leaf_hash, chain_hash, sequenced_ns) "
        "SELECT seq, event_pk, leaf_hash, chain_hash, sequenced_ns FROM audit_chain ORDER BY seq"
    )
    op.execute("DROP TABLE audit_chain")
    op.execute("ALTER TABLE audit_chain_rebuilt RENAME TO audit_chain")
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_chain_no_{operation.lower()} BEFORE {operation} ON "
            f"audit_chain BEGIN SELECT RAISE(ABORT, 'tradeguard: audit_chain is append-only "
            f"({operation} refused)'); END"
        )
    # After the rebuild: renaming a table re-checks every trigger that names audit_chain.
    for table, pk in (("audit_event", "OLD.pk"), ("audit_event_ref", "OLD.event_pk")):
        op.execute(f"DROP TRIGGER {table}_no_delete")
        op.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"WHEN NOT {PURGED_EVENT.format(pk=pk)} "
            f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {table} is append-only "
            "(DELETE refused)'); END"
        )


def downgrade() -> None:
    # After a purge the chain's foreign key cannot come back, and the records of what was
    # sealed and purged are part of the audit trail (AUD-2): never dropped.
    raise RuntimeError("the sealed audit archive cannot be downgraded")
