"""Audit ledger search (AUD-3): event references, chain-ordered indexes; existing events indexed.

`audit_event_ref` holds the accounts and orders each event names, written by Ledger.append
in the event's transaction from now on; this migration indexes the events already stored,
with the rules of this revision (copied below, so that the migration does what it did the
day it was written; tests/integration/ledger/test_search_migration.py keeps them equal to
ledger/search/references.py). The table is append-only like the ledger.

audit_event's single-column indexes on event_type, actor_id and subject_id become
(column, txid, pk): still an index for equality, and now in chain order, so a page of
results is read from the index instead of sorted; (actor_id, occurred_ns, txid, pk) serves
an actor within a time range. The type index uses varchar_pattern_ops
on PostgreSQL so that a prefix (`trading:order:`) is a byte-order range in any collation.

On a large ledger the backfill and the index builds take a while (minutes per 10 million
events), with writes to audit_event blocked meanwhile: run it in a maintenance window.

Revision ID: 0012_audit_search
Revises: 0011_audit_personal
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0012_audit_search"
down_revision = "0011_audit_personal"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BATCH = 5_000
MAX_REFERENCE_CHARS = 100
ID_PATTERN = re.compile(r"^[^\x00-\x20\x7f-\x9f]{1,100}$")  # 100: MAX_REFERENCE_CHARS
# The reference rules of this revision (ledger/search/references.py).
DATA_KEYS = {
    "account_id": "account",
    "order_id": "order",
    "replaces_order_id": "order",
    "closed_by_order": "order",
    "cancelled_orders": "order",
}
PARAMS_KEYS = {"account_id": "account"}
PARTY_KINDS = {"account": "account", "order": "order"}

REFS = sa.table(
    "audit_event_ref",
    sa.column("kind", sa.String),
    sa.column("value", sa.String),
    sa.column("txid", sa.BigInteger),
    sa.column("event_pk", sa.BigInteger),
)
CHAIN_INDEXES = (
    ("ix_audit_event_event_type", "ix_audit_event_type_chain", "event_type"),
    ("ix_audit_event_actor_id", "ix_audit_event_actor_chain", "actor_id"),
    ("ix_audit_event_subject_id", "ix_audit_event_subject_chain", "subject_id"),
)


def _ids(value: Any) -> Iterator[str]:
    for item in value if isinstance(value, list) else (value,):
        text = str(item) if isinstance(item, uuid.UUID) else item
        if isinstance(text, str) and ID_PATTERN.fullmatch(text):
            yield text


def references(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: dict[tuple[str, str], None] = {}
    for name in ("actor", "subject"):
        party = document.get(name)
        if isinstance(party, Mapping) and party.get("kind") in PARTY_KINDS:
            for value in _ids(party.get("id")):
                found[(PARTY_KINDS[party["kind"]], value)] = None
    data = document.get("data")
    data = data if isinstance(data, Mapping) else {}
    for key, kind in DATA_KEYS.items():
        for value in _ids(data.get(key)):
            found[(kind, value)] = None
    params = data.get("params")
    if isinstance(params, Mapping):
        for key, kind in PARAMS_KEYS.items():
            for value in _ids(params.get(key)):
                found[(kind, value)] = None
    return list(found)


def upgrade() -> None:
    bind = op.get_bind()
    is_pg = bind.dialect.name == "postgresql"
    op.create_table(
        "audit_event_ref",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(100), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.Column("event_pk", PK, nullable=False),
        sa.ForeignKeyConstraint(
            ["event_pk"], ["audit_event.pk"], name="fk_audit_event_ref_event_pk_audit_event"
        ),
    )
    # Before the index and the txid trigger: a bulk load is faster without the index, and
    # the trigger would stamp this migration's transaction id on every copied reference.
    _index_existing_events(bind)
    op.create_index(
        "ix_audit_event_ref_lookup", "audit_event_ref", ["kind", "value", "txid", "event_pk"]
    )
    if is_pg:
        op.execute(
            "CREATE TRIGGER audit_event_ref_txid BEFORE INSERT ON audit_event_ref "
            "FOR EACH ROW EXECUTE FUNCTION tradeguard_audit_event_txid()"
        )
        op.execute(
            "CREATE TRIGGER audit_event_ref_append_only BEFORE UPDATE OR DELETE "
            "ON audit_event_ref FOR EACH ROW EXECUTE FUNCTION tradeguard_refuse_ledger_change()"
        )
        op.execute(
            "CREATE TRIGGER audit_event_ref_no_truncate BEFORE TRUNCATE ON audit_event_ref "
            "FOR EACH STATEMENT EXECUTE FUNCTION tradeguard_refuse_ledger_change()"
        )
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_event_ref_no_{operation.lower()} BEFORE {operation} "
                "ON audit_event_ref BEGIN SELECT RAISE(ABORT, 'tradeguard: audit_event_ref "
                f"is append-only ({operation} refused)'); END"
            )
    for old, new, column in CHAIN_INDEXES:
        op.drop_index(old, table_name="audit_event")
        op.create_index(
            new,
            "audit_event",
            [column, "txid", "pk"],
            postgresql_ops={"event_type": "varchar_pattern_ops"} if column == "event_type" else {},
        )
    op.create_index(
        "ix_audit_event_actor_time", "audit_event", ["actor_id", "occurred_ns", "txid", "pk"]
    )


def _index_existing_events(bind: sa.engine.Connection) -> None:
    last = -1
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT pk, txid, body FROM audit_event WHERE pk > :last ORDER BY pk LIMIT :batch"
            ),
            {"last": last, "batch": BATCH},
        ).all()
        if not rows:
            return
        found = []
        for pk, txid, body in rows:
            try:
                document = json.loads(bytes(body))
            except ValueError:
                continue  # not an event document (verify reports such rows); nothing to index
            if isinstance(document, Mapping):
                found += [
                    {"kind": kind, "value": value, "txid": txid, "event_pk": pk}
                    for kind, value in references(document)
                ]
        if found:
            bind.execute(sa.insert(REFS), found)
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_audit_event_actor_time", table_name="audit_event")
    for old, new, column in CHAIN_INDEXES:
        op.drop_index(new, table_name="audit_event")
        op.create_index(old, "audit_event", [column])
    # The references are derived from the events (which stay): dropping them loses nothing.
    op.drop_table("audit_event_ref")
