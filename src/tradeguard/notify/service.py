"""Enqueue notifications into the transactional outbox (AUTH-4, AUTH-5, ACCT-2, HALT-3).

A message is inserted in the caller's transaction and sent later by `tasks.OutboxDispatcher`:
if the change that causes the message rolls back, the message was never queued; if it
commits, the message is durable and will be delivered (at least once) or marked dead.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.clock import Clock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import FieldKeyring
from tradeguard.notify import repository
from tradeguard.notify.domain import (
    MAX_EMAIL_BODY_CHARS,
    MAX_SMS_BODY_CHARS,
    Channel,
    normalize_email_address,
    validate_body,
    validate_phone_number,
    validate_subject,
    validate_template,
)

# Separate keys for the two columns: a recipient ciphertext copied into the body column (or
# the reverse) fails authentication instead of decrypting.
RECIPIENT_PURPOSE = "notify.recipient"
BODY_PURPOSE = "notify.body"


def seal_context(message_id: str) -> bytes:
    """Associated data binding a ciphertext to its row, so it cannot be moved to another."""
    return message_id.encode("ascii")


class Notifier:
    """Queues email and SMS messages; never commits (the caller's unit of work does)."""

    def __init__(self, *, clock: Clock, ids: IdGenerator, keyring: FieldKeyring) -> None:
        self._clock = clock
        self._ids = ids
        self._keyring = keyring

    async def enqueue_email(
        self, session: AsyncSession, *, to: str, template: str, subject: str, body: str
    ) -> str:
        """Queue an email; returns the outbox message id.

        The subject is stored in plaintext (operators see it when a message is stuck): it
        must never carry a code or personal data. Those belong in the body, which is
        encrypted.
        """
        address = normalize_email_address(to)
        return await self._insert(
            session,
            channel=Channel.EMAIL,
            recipient=address,
            template=validate_template(template),
            subject=validate_subject(subject),
            body=validate_body(body, limit=MAX_EMAIL_BODY_CHARS),
        )

    async def enqueue_sms(self, session: AsyncSession, *, to: str, template: str, body: str) -> str:
        """Queue a text message to an E.164 number; returns the outbox message id."""
        number = validate_phone_number(to)
        return await self._insert(
            session,
            channel=Channel.SMS,
            recipient=number,
            template=validate_template(template),
            subject="",
            body=validate_body(body, limit=MAX_SMS_BODY_CHARS),
        )

    async def _insert(
        self,
        session: AsyncSession,
        *,
        channel: Channel,
        recipient: str,
        template: str,
        subject: str,
        body: str,
    ) -> str:
        message_id = self._ids.new_str()
        now = self._clock.now_ns()
        context = seal_context(message_id)
        await repository.insert_message(
            session,
            {
                "id": message_id,
                "channel": channel.value,
                "template": template,
                "recipient_enc": self._keyring.encrypt(
                    recipient.encode(), purpose=RECIPIENT_PURPOSE, context=context
                ),
                "subject": subject,
                "body_enc": self._keyring.encrypt(
                    body.encode(), purpose=BODY_PURPOSE, context=context
                ),
                "created_ns": now,
                "next_attempt_ns": now,
                "attempts": 0,
            },
        )
        return message_id
