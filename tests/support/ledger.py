"""Helpers for ledger tests: tamper with rows the way an attacker with DB access would."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard.ledger import repository
from tradeguard.ledger.sequencer import LedgerSequencer


async def tamper_event_body(engine: AsyncEngine, *, seq: int, new_body: bytes) -> None:
    """Drop the append-only trigger, rewrite one event's body, restore the trigger."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
            )
            await conn.execute(
                text(
                    "UPDATE audit_event SET body = :body WHERE pk = "
                    "(SELECT event_pk FROM audit_chain WHERE seq = :seq)"
                ),
                {"body": new_body, "seq": seq},
            )
            await conn.execute(
                text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")
            )
            return
        trigger = (
            await conn.execute(
                text(
                    "SELECT sql FROM sqlite_master WHERE type='trigger' AND name='audit_event_no_update'"
                )
            )
        ).scalar_one()
        await conn.execute(text("DROP TRIGGER audit_event_no_update"))
        await conn.execute(
            text(
                "UPDATE audit_event SET body = :body WHERE pk = "
                "(SELECT event_pk FROM audit_chain WHERE seq = :seq)"
            ),
            {"body": new_body, "seq": seq},
        )
        await conn.execute(text(trigger))


async def settle(engine: AsyncEngine, *, attempts: int = 500) -> int:
    """Sequence until every committed event after the sequencer's cursor is chained.

    On PostgreSQL the sequencer waits for every writer of the database to finish, so another
    process writing to the same database (a parallel test run) can hold it back briefly.
    """
    sequencer = LedgerSequencer(engine)
    total = 0
    for _ in range(attempts):
        total += await sequencer.drain()
        async with engine.connect() as conn:
            # Nothing after the cursor; an event smuggled in behind it never will be chained.
            state = await repository.load_state(conn)
            if await repository.count_after_cursor(conn, state) == 0:
                return total
        await asyncio.sleep(0.02)
    raise AssertionError("audit events stayed unsequenced")


async def event_bodies(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every ledger event's document, in order, once all are chained."""
    await settle(engine)
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT body FROM audit_event ORDER BY pk"))
        return [json.loads(bytes(r.body)) for r in rows.all()]


async def event_types(engine: AsyncEngine) -> list[str]:
    return [body["type"] for body in await event_bodies(engine)]


async def smuggle_event_behind_cursor(engine: AsyncEngine, *, event_id: str) -> int:
    """Insert an event the sequencer has already passed, as an attacker with DB access could.

    Its key sorts at or below any cursor: pk 0 on SQLite; txid 1 on PostgreSQL, written with
    the txid trigger disabled (the trigger would otherwise stamp the current transaction).
    Returns the new event's pk.
    """
    row = {
        "event_id": event_id,
        "event_type": "test:smuggled:event",
        "occurred_ns": 1,
        "body": b'{"smuggled":true}',
    }
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_txid"))
            pk = (
                await conn.execute(
                    text(
                        "INSERT INTO audit_event (event_id, event_type, occurred_ns, body, txid) "
                        "VALUES (:event_id, :event_type, :occurred_ns, :body, 1) RETURNING pk"
                    ),
                    row,
                )
            ).scalar_one()
            await conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_txid"))
            return int(pk)
        await conn.execute(
            text(
                "INSERT INTO audit_event (pk, event_id, event_type, occurred_ns, body) "
                "VALUES (0, :event_id, :event_type, :occurred_ns, :body)"
            ),
            row,
        )
        return 0


async def cut_chain_after(engine: AsyncEngine, *, seq: int) -> None:
    """Delete every chain row after `seq` behind the triggers, leaving the sequencer's state."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("ALTER TABLE audit_chain DISABLE TRIGGER audit_chain_append_only")
            )
            await conn.execute(text("DELETE FROM audit_chain WHERE seq > :seq"), {"seq": seq})
            await conn.execute(
                text("ALTER TABLE audit_chain ENABLE TRIGGER audit_chain_append_only")
            )
            return
        trigger = (
            await conn.execute(
                text(
                    "SELECT sql FROM sqlite_master WHERE type='trigger' AND name='audit_chain_no_delete'"
                )
            )
        ).scalar_one()
        await conn.execute(text("DROP TRIGGER audit_chain_no_delete"))
        await conn.execute(text("DELETE FROM audit_chain WHERE seq > :seq"), {"seq": seq})
        await conn.execute(text(trigger))


async def change_chain_behind_triggers(
    engine: AsyncEngine, statements: list[tuple[str, dict[str, object]]]
) -> None:
    """Run UPDATE/DELETE statements on audit_chain with its append-only triggers lifted."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("ALTER TABLE audit_chain DISABLE TRIGGER audit_chain_append_only")
            )
            for sql, params in statements:
                await conn.execute(text(sql), params)
            await conn.execute(
                text("ALTER TABLE audit_chain ENABLE TRIGGER audit_chain_append_only")
            )
            return
        triggers = (
            await conn.execute(
                text(
                    "SELECT sql FROM sqlite_master WHERE type='trigger' "
                    "AND name IN ('audit_chain_no_update', 'audit_chain_no_delete')"
                )
            )
        ).scalars()
        saved = list(triggers)
        await conn.execute(text("DROP TRIGGER audit_chain_no_update"))
        await conn.execute(text("DROP TRIGGER audit_chain_no_delete"))
        for sql, params in statements:
            await conn.execute(text(sql), params)
        for trigger in saved:
            await conn.execute(text(trigger))


async def rewrite_behind_triggers(
    engine: AsyncEngine, table: str, statement: str, params: dict[str, object] | None = None
) -> None:
    """Run an UPDATE or DELETE on an append-only table with its triggers out of the way, as
    an attacker with full database access could."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            await conn.execute(text(statement), params or {})
            await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
            return
        triggers = (
            await conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name=:t"),
                {"t": table},
            )
        ).all()
        for name, _ in triggers:
            await conn.execute(text(f'DROP TRIGGER "{name}"'))
        await conn.execute(text(statement), params or {})
        for _, sql in triggers:
            await conn.execute(text(sql))


@asynccontextmanager
async def writer_in_flight(engine: AsyncEngine) -> AsyncIterator[int]:
    """PostgreSQL: another client of the database in the middle of a write (a request, a
    worker, another test process): a transaction holding its transaction id (returned) until
    the block ends, rolled back."""
    async with engine.connect() as conn, conn.begin():
        yield int(
            (await conn.execute(text("SELECT pg_current_xact_id()::text::bigint"))).scalar_one()
        )


class _Signal(logging.Handler):
    def __init__(self, event: asyncio.Event, words: str) -> None:
        super().__init__(logging.INFO)
        self.event = event
        self.words = words

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


@contextmanager
def drain_waiting() -> Iterator[asyncio.Event]:
    """An event set once a sequencer's drain waits for older transactions of the database
    (it logs so), for a test that must act only when it is waiting."""
    logger = logging.getLogger("tradeguard.ledger.sequencer")
    waiting = asyncio.Event()
    signal = _Signal(waiting, "waiting for older transactions")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(signal)
    try:
        yield waiting
    finally:
        logger.removeHandler(signal)
        logger.setLevel(level)
