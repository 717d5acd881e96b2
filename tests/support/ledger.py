"""Helpers for ledger tests: tamper with rows the way an attacker with DB access would."""

from __future__ import annotations

import asyncio

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
    """Sequence until every committed event is chained.

    On PostgreSQL the sequencer waits for every writer of the database to finish, so another
    process writing to the same database (a parallel test run) can hold it back briefly.
    """
    sequencer = LedgerSequencer(engine)
    total = 0
    for _ in range(attempts):
        total += await sequencer.drain()
        async with engine.connect() as conn:
            if await repository.unchained_count(conn) == 0:
                return total
        await asyncio.sleep(0.02)
    raise AssertionError("audit events stayed unsequenced")
