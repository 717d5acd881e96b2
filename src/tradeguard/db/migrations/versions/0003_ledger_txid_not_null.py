"""Audit ledger: on PostgreSQL every event's txid is set by the database and never NULL.

The sequencer orders events by (txid, pk) and only chains those below the transaction
horizon, so an event with a NULL txid would never be chained, and one with a txid a client
chose could be slipped behind the sequencer's cursor. A BEFORE INSERT trigger now overwrites
whatever the client sent with the inserting transaction's id, and the column is NOT NULL.
SQLite is unchanged: its events keep txid NULL and are ordered by pk.

Revision ID: 0003_ledger_txid
Revises: 0002_identity
"""

from alembic import op

revision = "0003_ledger_txid"
down_revision = "0002_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # Rows with a NULL txid were never chained; rewriting audit rows inside a migration would
    # hide that, so the upgrade stops and an operator investigates them.
    orphans = bind.exec_driver_sql("SELECT count(*) FROM audit_event WHERE txid IS NULL").scalar()
    if orphans:
        raise RuntimeError(
            f"audit_event holds {orphans} row(s) with a NULL txid, which were never chained; "
            "investigate them before upgrading (this migration does not rewrite audit rows)"
        )
    op.execute(
        """
        CREATE FUNCTION tradeguard_audit_event_txid() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            NEW.txid := pg_current_xact_id()::text::bigint;
            RETURN NEW;
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_event_txid BEFORE INSERT ON audit_event "
        "FOR EACH ROW EXECUTE FUNCTION tradeguard_audit_event_txid()"
    )
    op.execute("ALTER TABLE audit_event ALTER COLUMN txid SET NOT NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE audit_event ALTER COLUMN txid DROP NOT NULL")
    op.execute("DROP TRIGGER audit_event_txid ON audit_event")
    op.execute("DROP FUNCTION tradeguard_audit_event_txid()")
