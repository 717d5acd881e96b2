"""The search index of the audit ledger: event references and chain-ordered indexes.

`audit_event_ref` holds one row per account or order an event names (ledger/search/
references.py), written by `Ledger.append` in the event's transaction; append-only like the
ledger (triggers refuse UPDATE and DELETE). It has no primary key of its own: its one index,
(kind, value, txid, event_pk), is the lookup, and the event's pk is the identity.

Every index the search walks ends in (txid, pk), the order the sequencer chains events in
(txid: the inserting transaction's id on PostgreSQL, set by a trigger; NULL on SQLite), so a
page of "the newest 50 events of account X" reads 50 index entries instead of sorting all
of X's events. On PostgreSQL the type index uses varchar_pattern_ops: byte-order comparisons
that serve both equality and a prefix range whatever the database's collation (under a
natural-language collation `trading:order:` < `trading:order;` need not hold).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, Table

from tradeguard.db.base import Base
from tradeguard.ledger.models import AuditEventRow, PrimaryKey

REFERENCE_TABLE = "audit_event_ref"

audit_event_ref = Table(
    REFERENCE_TABLE,
    Base.metadata,
    Column("kind", String(16), nullable=False),
    Column("value", String(100), nullable=False),
    # PostgreSQL: the inserting transaction's id (the event's own, same transaction), set by
    # the same BEFORE INSERT trigger as audit_event's. SQLite: NULL.
    Column("txid", BigInteger, nullable=True),
    Column("event_pk", PrimaryKey, ForeignKey("audit_event.pk"), nullable=False),
)

Index(
    "ix_audit_event_ref_lookup",
    audit_event_ref.c.kind,
    audit_event_ref.c.value,
    audit_event_ref.c.txid,
    audit_event_ref.c.event_pk,
)

audit_event = Base.metadata.tables[AuditEventRow.__tablename__]
Index(
    "ix_audit_event_type_chain",
    audit_event.c.event_type,
    audit_event.c.txid,
    audit_event.c.pk,
    postgresql_ops={"event_type": "varchar_pattern_ops"},
)
Index("ix_audit_event_actor_chain", audit_event.c.actor_id, audit_event.c.txid, audit_event.c.pk)
# An actor within a time range: the range's entries hold the chain order too, so the page is
# sorted from the index alone (the system actor writes a third of the ledger; walking all of
# its newer events to reach last Tuesday would not be).
Index(
    "ix_audit_event_actor_time",
    audit_event.c.actor_id,
    audit_event.c.occurred_ns,
    audit_event.c.txid,
    audit_event.c.pk,
)
Index(
    "ix_audit_event_subject_chain", audit_event.c.subject_id, audit_event.c.txid, audit_event.c.pk
)
