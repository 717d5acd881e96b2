"""The key table's database guard (PCI DSS 3.6/3.7): which updates a key version row may take.

A key version row is retired (active -> retired, once), has its usage count recorded, or is
re-wrapped under another key-encrypting key (its `wrapped_key` and `kek_id` change, the KEK
id must change); nothing else, and never deleted. Re-wrapping does not weaken "a wrapped key
cannot be swapped": the wrapped bytes are bound (AES-GCM associated data, or the KMS
encryption context) to the row's class, kind and version, so only a holder of a KEK can
write bytes that open there, and they open to the same key.

Migrations build their triggers and the rewrap progress table from these (the platform's
0013 and 0018, the vault's v0002): they are history once applied, so a change here needs a
new migration that carries the old text for its downgrade.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa

_SAME_SLOT: Final = (
    "NEW.data_class = OLD.data_class AND NEW.kind = OLD.kind AND NEW.version = OLD.version "
    "AND NEW.created_ns = OLD.created_ns AND NEW.activates_ns = OLD.activates_ns"
)
# Retire, or record the usage count (PostgreSQL and SQLite spell "equal, NULLs included"
# differently).
RETIRE: Final = {
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
# A re-wrap under another KEK (the KEK id changes), the slot, state and times unchanged. A
# row with no wrapped key (version 0, the legacy scheme) cannot gain one.
REWRAP: Final = {
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
REFUSED: Final = "rows are only ever retired or re-wrapped"


def allowed_update(dialect: str) -> str:
    """The condition an UPDATE of a key row must meet on `dialect` (postgresql, sqlite)."""
    return f"({RETIRE[dialect]}) OR ({REWRAP[dialect]})"


def postgres_guard_function(name: str, allowed: str, refused: str = REFUSED) -> str:
    """A trigger function that lets an UPDATE meeting `allowed` through and refuses every
    other UPDATE, DELETE or TRUNCATE (CREATE OR REPLACE: a later migration may widen it)."""
    return f"""
        CREATE OR REPLACE FUNCTION {name}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF {allowed} THEN
                    RETURN NEW;
                END IF;
            END IF;
            RAISE EXCEPTION 'tradeguard: % {refused} (% refused)',
                TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """


def sqlite_update_guard(trigger: str, table: str, allowed: str, refused: str = REFUSED) -> str:
    """A SQLite trigger refusing every UPDATE of `table` that does not meet `allowed`."""
    return (
        f"CREATE TRIGGER {trigger} BEFORE UPDATE ON {table} WHEN NOT ({allowed}) "
        f"BEGIN SELECT RAISE(ABORT, 'tradeguard: {table} {refused} (UPDATE refused)'); END"
    )


def rewrap_progress_columns() -> list[sa.Column[Any] | sa.PrimaryKeyConstraint]:
    """`crypto_rewrap_progress` (crypto/models.py CryptoRewrapProgressRow): where a rewrap
    of one stored location stands, in each database that holds a key table."""
    return [
        sa.Column("data_class", sa.String(40), nullable=False),
        sa.Column("location", sa.String(120), nullable=False),
        sa.Column("target_version", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.String(200), nullable=True),
        sa.Column("rows_rewrapped", sa.BigInteger(), nullable=False),
        sa.Column("started_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.Column("finished_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("data_class", "location", name="pk_crypto_rewrap_progress"),
    ]
