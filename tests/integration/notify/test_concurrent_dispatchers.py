"""Several dispatchers (replicas) on one PostgreSQL outbox send each message exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.notify.support import Outbox
from tradeguard.core.clock import FrozenClock
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.db.engine import unit_of_work
from tradeguard.notify.domain import EmailMessage
from tradeguard.notify.tasks import OutboxDispatcher

MESSAGES = 60


class RecordingSender:
    """Accepts every email and remembers its id; yields to the loop so dispatchers interleave."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def send(self, message: EmailMessage) -> None:
        await asyncio.sleep(0)
        self.log.append(message.message_id)


async def drain(dispatcher: OutboxDispatcher) -> int:
    sent = 0
    while (report := await dispatcher.dispatch_batch()).claimed:
        sent += report.sent
    return sent


@pytest.fixture
def pg_outbox(
    pg_engine: AsyncEngine, keyring: LocalKeyring, clock: FrozenClock, tmp_path: Path
) -> Outbox:
    return Outbox.create(pg_engine, keyring=keyring, clock=clock, directory=tmp_path)


async def enqueue_many(outbox: Outbox, count: int) -> list[str]:
    async with unit_of_work(outbox.sessions) as session:
        return [
            await outbox.notifier.enqueue_email(
                session,
                to=f"user{index}@example.com",
                template="halt.notice",
                subject="Trading is halted",
                body="Trading in all symbols is halted; resting orders were cancelled.",
            )
            for index in range(count)
        ]


@pytest.mark.postgres
@pytest.mark.spec("HALT-3")
class TestConcurrentDispatchers:
    async def test_racing_dispatchers_send_each_message_exactly_once(
        self, pg_outbox: Outbox
    ) -> None:
        ids = await enqueue_many(pg_outbox, MESSAGES)
        log: list[str] = []
        replicas = [pg_outbox.dispatcher(RecordingSender(log), batch_size=7) for _ in range(3)]

        totals = await asyncio.gather(*(drain(replica) for replica in replicas))

        assert sum(totals) == MESSAGES
        assert Counter(log) == Counter(ids)  # every message, none twice
        async with pg_outbox.engine.connect() as conn:
            unsent = await conn.execute(
                text("SELECT count(*) FROM notify_outbox WHERE sent_ns IS NULL")
            )
            assert unsent.scalar() == 0

    async def test_a_claim_in_progress_is_skipped_not_waited_for(self, pg_outbox: Outbox) -> None:
        ids = await enqueue_many(pg_outbox, 4)
        log: list[str] = []
        dispatcher = pg_outbox.dispatcher(RecordingSender(log))

        async with pg_outbox.engine.connect() as other_replica:
            # Another replica is in the middle of claiming the two oldest messages.
            await other_replica.execute(
                text("SELECT id FROM notify_outbox WHERE id IN (:a, :b) FOR UPDATE"),
                {"a": ids[0], "b": ids[1]},
            )
            # Skipped at once (a plain FOR UPDATE would block here until the timeout).
            sent = await asyncio.wait_for(dispatcher.dispatch_once(), timeout=10)
            assert sent == 2
            assert sorted(log) == sorted(ids[2:])
            await other_replica.rollback()

        assert await dispatcher.dispatch_once() == 2
        assert Counter(log) == Counter(ids)
