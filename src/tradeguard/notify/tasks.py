"""The outbox dispatcher: delivers queued notifications, at least once, with retries.

Delivery guarantee and crash safety
-----------------------------------
Each pass runs three kinds of short transactions, and holds no database lock while it talks
to a mail server or SMS gateway (on SQLite that lock would stop every other writer):

1. *Claim*: due messages get `attempts + 1` and `next_attempt_ns = now + claim timeout`, in
   one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL), and commit. Other dispatchers,
   in this process or on other replicas, now see them as not due.
2. *Send* each claimed message, outside any transaction.
3. *Record* each outcome at once in its own transaction: `sent_ns`, or a retry time with
   exponential back-off and jitter and a `last_error`, or `dead_ns` after `max_attempts`.

A message is never lost: `sent_ns` is only written after the server or gateway accepted it.
If the process dies between claiming and recording, the claim simply runs out and another
pass takes the message again (the attempt still counts, so a message that crashes the
dispatcher is eventually marked dead instead of crashing it for ever). The price is that a
crash between a successful send and its record sends that message twice: delivery is
*at least once*. Email duplicates carry the same Message-ID; the development senders
overwrite rather than duplicate; SMS gateways get the outbox id as their client reference.
The same holds when recording fails (the database went away mid-pass): the pass stops, and
that message and the rest of the batch are taken again once their claim runs out.

Dead messages (`dead_ns` set) are never retried automatically; they stay in the table with
their `last_error` for an operator.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard.core.clock import NS_PER_SECOND, Clock
from tradeguard.core.workers import (
    BackoffPolicy,
    FailureObserver,
    FailureTracker,
    run_until_stopped,
)
from tradeguard.crypto.keyring import FieldKeyring
from tradeguard.db.availability import unavailable_reason
from tradeguard.db.engine import write_gate
from tradeguard.notify import repository
from tradeguard.notify.domain import (
    Channel,
    EmailMessage,
    EmailSender,
    RetryPolicy,
    SmsProvider,
    failure_summary,
)
from tradeguard.notify.service import BODY_PURPOSE, RECIPIENT_PURPOSE, seal_context

logger = logging.getLogger(__name__)

# last_error of a message whose final claim ran out with no outcome recorded.
CLAIM_EXPIRED = "ClaimExpired"
COMPONENT = "notify-dispatcher"
# For failed passes (the database unreachable), not for failed sends: those are recorded per
# message with the RetryPolicy's own, much longer back-off.
PASS_BACKOFF = BackoffPolicy(base_seconds=1.0, cap_seconds=60.0)


@dataclass(frozen=True, slots=True)
class DispatchReport:
    claimed: int
    sent: int


class OutboxDispatcher:
    """Claims due outbox messages, sends them, and records each outcome."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        keyring: FieldKeyring,
        email_sender: EmailSender,
        sms_provider: SmsProvider,
        clock: Clock,
        batch_size: int = 50,
        max_attempts: int = 8,
        backoff_base_seconds: float = 30.0,
        backoff_cap_seconds: float = 3600.0,
        claim_timeout_seconds: float = 600.0,
    ) -> None:
        """`claim_timeout_seconds` must exceed the time one batch can take to send
        (`batch_size` times the sender's timeout, in the worst case); otherwise a slow batch's
        later messages can be claimed and sent by another dispatcher as well.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if claim_timeout_seconds <= 0:
            raise ValueError("claim_timeout_seconds must be positive")
        self._engine = engine
        self._keyring = keyring
        self._email = email_sender
        self._sms = sms_provider
        self._clock = clock
        self._batch_size = batch_size
        self._retry = RetryPolicy(
            max_attempts=max_attempts,
            base_seconds=backoff_base_seconds,
            cap_seconds=backoff_cap_seconds,
        )
        self._claim_ns = int(claim_timeout_seconds * NS_PER_SECOND)
        # Jitter needs no secrecy, but SystemRandom has no seed to share between replicas
        # forked from one parent, which would put them back in lockstep.
        self._jitter = random.SystemRandom()

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    async def dispatch_once(self) -> int:
        """One pass over the due messages (at most `batch_size`); returns how many were sent."""
        return (await self.dispatch_batch()).sent

    async def dispatch_batch(self) -> DispatchReport:
        """One pass; reports how many messages were claimed and how many of them were sent."""
        now = self._clock.now_ns()
        claim_until = now + self._claim_ns
        async with write_gate(self._engine), self._engine.begin() as conn:
            buried = await repository.bury_exhausted(
                conn, now_ns=now, max_attempts=self._retry.max_attempts, reason=CLAIM_EXPIRED
            )
            rows = await repository.claim_due(
                conn,
                now_ns=now,
                claim_until_ns=claim_until,
                max_attempts=self._retry.max_attempts,
                limit=self._batch_size,
            )
        if buried:
            logger.error("notify: %d message(s) dead after their last claim ran out", buried)
        sent = 0
        for row in rows:
            if self._clock.now_ns() >= claim_until:
                # Our claim on the rest has run out and another dispatcher may hold it now;
                # sending anyway would make a duplicate likely rather than merely possible.
                break
            error = await self._send(row)
            await self._record(row, error)
            sent += error is None
        return DispatchReport(claimed=len(rows), sent=sent)

    async def run_forever(
        self,
        interval_ms: int,
        stop: asyncio.Event | None = None,
        *,
        tracker: FailureTracker | None = None,
    ) -> None:
        """Dispatch until `stop` is set: again at once after a full batch, else after
        `interval_ms`; a failing pass (the database unreachable or similar) is retried with
        exponential back-off. A pass in progress when `stop` is set finishes first."""

        async def one_pass() -> float:
            report = await self.dispatch_batch()
            return 0.0 if report.claimed >= self._batch_size else interval_ms / 1000

        # Send failures never reach the tracker (they are recorded per message), so nothing
        # it logs comes from a message's content.
        await run_until_stopped(one_pass, tracker=tracker or self.failure_tracker(), stop=stop)

    def failure_tracker(self, observer: FailureObserver | None = None) -> FailureTracker:
        """A tracker with this worker's name, back-off and logger, reporting to `observer`."""
        return FailureTracker(
            COMPONENT,
            logger=logger,
            clock=self._clock,
            policy=PASS_BACKOFF,
            observer=observer,
            describe=unavailable_reason,
        )

    async def _send(self, row: Any) -> str | None:
        """Deliver one claimed message; None on success, else a summary free of personal data."""
        try:
            context = seal_context(row.id)
            recipient = self._keyring.decrypt(
                bytes(row.recipient_enc), purpose=RECIPIENT_PURPOSE, context=context
            ).decode()
            body = self._keyring.decrypt(
                bytes(row.body_enc), purpose=BODY_PURPOSE, context=context
            ).decode()
            if row.channel == Channel.EMAIL:
                await self._email.send(
                    EmailMessage(
                        message_id=row.id,
                        to=recipient,
                        subject=row.subject,
                        body=body,
                        created_ns=row.created_ns,
                    )
                )
            elif row.channel == Channel.SMS:
                await self._sms.send(recipient, body, reference=row.id)
            else:
                raise UnknownChannel
        except Exception as exc:
            # Deliberately broad: whatever a sender raises, the message must get a recorded
            # outcome (retry or dead), and the loop must go on to the next message.
            return failure_summary(exc)
        return None

    async def _record(self, row: Any, error: str | None) -> None:
        now = self._clock.now_ns()
        async with write_gate(self._engine), self._engine.begin() as conn:
            if error is None:
                await repository.mark_sent(conn, message_id=row.id, now_ns=now)
                logger.info("notify: %s message %s sent", row.channel, row.id)
            elif row.attempts >= self._retry.max_attempts:
                await repository.mark_dead(conn, message_id=row.id, now_ns=now, error=error)
                logger.error(
                    "notify: %s message %s dead after %d attempts: %s",
                    row.channel,
                    row.id,
                    row.attempts,
                    error,
                )
            else:
                delay = self._retry.delay_ns(row.attempts, self._jitter.random())
                await repository.schedule_retry(
                    conn, message_id=row.id, next_attempt_ns=now + delay, error=error
                )
                logger.warning(
                    "notify: %s message %s attempt %d failed: %s",
                    row.channel,
                    row.id,
                    row.attempts,
                    error,
                )


class UnknownChannel(Exception):
    """An outbox row names a channel this dispatcher cannot deliver."""
