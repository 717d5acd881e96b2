"""The notification outbox end to end: enqueue in a transaction, dispatch, deliver over SMTP.

Runs on SQLite and PostgreSQL (the `engine` fixture) against real aiosmtpd servers on loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from email import policy
from email.message import EmailMessage as MimeMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.integration.notify.conftest import SmtpServerFactory
from tests.integration.notify.support import (
    ADDRESS,
    BODY,
    CLAIM_TIMEOUT_SECONDS,
    CODE,
    MAIL_FROM,
    SUBJECT,
    CollectingHandler,
    Outbox,
    RecordingAuthenticator,
    SmtpCertificate,
    UnreachableSender,
    smtp_sender,
)
from tests.support.failures import SignallingObserver
from tradeguard.core.clock import NS_PER_SECOND, FrozenClock
from tradeguard.core.workers import BackoffPolicy, FailureTracker
from tradeguard.crypto.keyring import DecryptionFailed, LocalKeyring
from tradeguard.db.engine import create_engine, unit_of_work
from tradeguard.notify import repository
from tradeguard.notify.domain import EmailMessage
from tradeguard.notify.senders import SmtpEmailSender
from tradeguard.notify.tasks import CLAIM_EXPIRED, COMPONENT


def parse(raw: bytes) -> MimeMessage:
    return BytesParser(policy=policy.default).parsebytes(raw)


async def enqueue_then_fail(outbox: Outbox) -> None:
    async with unit_of_work(outbox.sessions) as session:
        await outbox.notifier.enqueue_email(
            session, to=ADDRESS, template="auth.email_verification", subject=SUBJECT, body=BODY
        )
        raise RuntimeError("the change failed")


@pytest.mark.spec("AUTH-5", "HALT-3")
class TestEmailDeliveryOverSmtp:
    async def test_committed_email_is_delivered_to_a_real_smtp_server(
        self, outbox: Outbox, smtp_server: SmtpServerFactory
    ) -> None:
        handler = CollectingHandler()
        dispatcher = outbox.dispatcher(smtp_sender(smtp_server(handler)))
        message_id = await outbox.enqueue_email()

        sent = await dispatcher.dispatch_once()

        assert sent == 1
        [mail] = handler.received
        assert mail.rcpt_tos == [ADDRESS]
        assert mail.mail_from == MAIL_FROM
        assert not mail.over_tls
        parsed = parse(mail.content)
        assert parsed["To"] == ADDRESS
        assert parsed["From"] == MAIL_FROM
        assert parsed["Subject"] == SUBJECT
        assert parsed["Message-ID"] == f"<{message_id}@tradeguard.test>"
        assert parsed["Auto-Submitted"] == "auto-generated"
        assert parsed.get_content().strip() == BODY
        row = await outbox.row(message_id)
        assert row.sent_ns == outbox.clock.now_ns()
        assert row.attempts == 1
        assert row.last_error is None
        assert await dispatcher.dispatch_once() == 0  # delivered once, not again

    async def test_email_enqueued_in_a_rolled_back_transaction_is_never_sent(
        self, outbox: Outbox, smtp_server: SmtpServerFactory
    ) -> None:
        handler = CollectingHandler()
        dispatcher = outbox.dispatcher(smtp_sender(smtp_server(handler)))

        with pytest.raises(RuntimeError, match="the change failed"):
            await enqueue_then_fail(outbox)

        assert (await dispatcher.dispatch_batch()).claimed == 0
        assert handler.received == []
        async with outbox.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM notify_outbox"))).scalar() == 0

    async def test_starttls_is_used_when_the_server_requires_it(
        self, outbox: Outbox, smtp_server: SmtpServerFactory, certificate: SmtpCertificate
    ) -> None:
        handler = CollectingHandler()
        port = smtp_server(handler, tls_context=certificate.server_context(), require_starttls=True)
        sender = smtp_sender(port, security="starttls", ssl_context=certificate.client_context())
        dispatcher = outbox.dispatcher(sender)
        await outbox.enqueue_email()

        assert await dispatcher.dispatch_once() == 1

        [mail] = handler.received
        assert mail.over_tls
        assert mail.rcpt_tos == [ADDRESS]
        assert parse(mail.content).get_content().strip() == BODY

    async def test_credentials_are_sent_only_inside_tls(
        self, outbox: Outbox, smtp_server: SmtpServerFactory, certificate: SmtpCertificate
    ) -> None:
        handler = CollectingHandler()
        authenticator = RecordingAuthenticator("mailer", "relay-password")
        port = smtp_server(
            handler,
            tls_context=certificate.server_context(),
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=True,
        )
        sender = SmtpEmailSender(
            "127.0.0.1",
            port,
            security="starttls",
            from_address=MAIL_FROM,
            username="mailer",
            password="relay-password",
            timeout=5,
            ssl_context=certificate.client_context(),
        )
        dispatcher = outbox.dispatcher(sender)
        await outbox.enqueue_email()

        assert await dispatcher.dispatch_once() == 1

        assert authenticator.logins == [("mailer", True)]
        assert len(handler.received) == 1

    async def test_wrong_relay_password_is_recorded_without_the_password(
        self, outbox: Outbox, smtp_server: SmtpServerFactory, certificate: SmtpCertificate
    ) -> None:
        handler = CollectingHandler()
        port = smtp_server(
            handler,
            tls_context=certificate.server_context(),
            require_starttls=True,
            authenticator=RecordingAuthenticator("mailer", "relay-password"),
            auth_required=True,
            auth_require_tls=True,
        )
        sender = SmtpEmailSender(
            "127.0.0.1",
            port,
            security="starttls",
            from_address=MAIL_FROM,
            username="mailer",
            password="wrong-password",
            timeout=5,
            ssl_context=certificate.client_context(),
        )
        message_id = await outbox.enqueue_email()

        assert await outbox.dispatcher(sender).dispatch_once() == 0

        assert handler.received == []
        last_error = (await outbox.row(message_id)).last_error
        assert last_error == "SMTPAuthenticationError 535"

    async def test_implicit_tls_delivers(
        self, outbox: Outbox, smtp_server: SmtpServerFactory, certificate: SmtpCertificate
    ) -> None:
        handler = CollectingHandler()
        port = smtp_server(handler, ssl_context=certificate.server_context())
        sender = smtp_sender(port, security="tls", ssl_context=certificate.client_context())
        dispatcher = outbox.dispatcher(sender)
        await outbox.enqueue_email()

        assert await dispatcher.dispatch_once() == 1

        [mail] = handler.received
        assert mail.over_tls


@pytest.mark.spec("AUTH-5")
class TestTlsIsNeverDowngraded:
    async def test_server_without_starttls_gets_nothing_and_the_message_waits(
        self, outbox: Outbox, smtp_server: SmtpServerFactory, certificate: SmtpCertificate
    ) -> None:
        handler = CollectingHandler()
        port = smtp_server(handler)  # no tls_context: the server does not offer STARTTLS
        sender = smtp_sender(port, security="starttls", ssl_context=certificate.client_context())
        dispatcher = outbox.dispatcher(sender)
        message_id = await outbox.enqueue_email()

        assert await dispatcher.dispatch_once() == 0

        assert handler.rcpt_attempts == 0
        assert handler.received == []
        row = await outbox.row(message_id)
        assert row.sent_ns is None
        assert row.dead_ns is None
        assert row.last_error == "SMTPNotSupportedError"

    async def test_untrusted_server_certificate_is_refused(
        self, outbox: Outbox, smtp_server: SmtpServerFactory, certificate: SmtpCertificate
    ) -> None:
        handler = CollectingHandler()
        port = smtp_server(handler, tls_context=certificate.server_context(), require_starttls=True)
        # The default context trusts the system CAs only, not the self-signed test certificate.
        dispatcher = outbox.dispatcher(smtp_sender(port, security="starttls"))
        message_id = await outbox.enqueue_email()

        assert await dispatcher.dispatch_once() == 0

        assert handler.received == []
        assert (await outbox.row(message_id)).last_error == "SSLCertVerificationError"


@pytest.mark.spec("AUTH-5")
class TestRetriesAndDeadLetters:
    async def test_refused_email_is_retried_with_backoff_then_dead(
        self, outbox: Outbox, smtp_server: SmtpServerFactory
    ) -> None:
        handler = CollectingHandler(refuse_with=f"550 5.1.1 <{ADDRESS}>: no such user here")
        dispatcher = outbox.dispatcher(smtp_sender(smtp_server(handler)), max_attempts=3)
        retry = dispatcher.retry_policy
        clock = outbox.clock
        message_id = await outbox.enqueue_email()

        for attempt in (1, 2):
            started = clock.now_ns()
            assert await dispatcher.dispatch_once() == 0
            row = await outbox.row(message_id)
            assert row.attempts == attempt
            assert row.dead_ns is None
            assert row.last_error == "SMTPRecipientsRefused 550"
            # Equal jitter: at least half the exponential step, at most all of it.
            step = int(retry.base_seconds * 2 ** (attempt - 1) * NS_PER_SECOND)
            wait = row.next_attempt_ns - started
            assert step // 2 <= wait <= step
            # Not due before its time.
            clock.advance(ns=wait - 1)
            assert (await dispatcher.dispatch_batch()).claimed == 0
            clock.advance(ns=1)

        assert await dispatcher.dispatch_once() == 0
        row = await outbox.row(message_id)
        assert row.attempts == 3
        assert row.dead_ns == clock.now_ns()
        assert row.sent_ns is None
        assert row.last_error == "SMTPRecipientsRefused 550"
        assert ADDRESS not in row.last_error
        clock.advance(seconds=86_400)
        assert (await dispatcher.dispatch_batch()).claimed == 0
        assert handler.rcpt_attempts == 3

    async def test_message_whose_claim_ran_out_is_sent_by_the_next_pass(
        self, outbox: Outbox, smtp_server: SmtpServerFactory
    ) -> None:
        handler = CollectingHandler()
        dispatcher = outbox.dispatcher(smtp_sender(smtp_server(handler)))
        message_id = await outbox.enqueue_email()
        # Another dispatcher claims the message, then its process dies before recording anything.
        async with outbox.engine.begin() as conn:
            now = outbox.clock.now_ns()
            claimed = await repository.claim_due(
                conn,
                now_ns=now,
                claim_until_ns=now + CLAIM_TIMEOUT_SECONDS * NS_PER_SECOND,
                max_attempts=8,
                limit=10,
            )
        assert [row.id for row in claimed] == [message_id]

        assert (await dispatcher.dispatch_batch()).claimed == 0  # still claimed by the other
        outbox.clock.advance(seconds=CLAIM_TIMEOUT_SECONDS)
        assert await dispatcher.dispatch_once() == 1

        assert len(handler.received) == 1
        row = await outbox.row(message_id)
        assert row.sent_ns is not None
        assert row.attempts == 2

    async def test_claim_that_ran_out_on_the_last_attempt_makes_the_message_dead(
        self, outbox: Outbox
    ) -> None:
        dispatcher = outbox.dispatcher(UnreachableSender(), max_attempts=1)
        message_id = await outbox.enqueue_email()
        async with outbox.engine.begin() as conn:
            now = outbox.clock.now_ns()
            await repository.claim_due(
                conn, now_ns=now, claim_until_ns=now + 1, max_attempts=1, limit=10
            )
        outbox.clock.advance(ns=1)

        assert (await dispatcher.dispatch_batch()).claimed == 0

        row = await outbox.row(message_id)
        assert row.dead_ns == outbox.clock.now_ns()
        assert row.last_error == CLAIM_EXPIRED

    async def test_message_sealed_under_another_key_is_kept_for_retry(self, outbox: Outbox) -> None:
        other_keyring = LocalKeyring.load_or_create(outbox.directory / "other.key")
        dispatcher = outbox.dispatcher(UnreachableSender(), keyring=other_keyring)
        message_id = await outbox.enqueue_email()

        assert await dispatcher.dispatch_once() == 0

        row = await outbox.row(message_id)
        assert row.last_error == "DecryptionFailed"
        assert row.sent_ns is None
        assert row.dead_ns is None
        assert row.next_attempt_ns > outbox.clock.now_ns()


@pytest.mark.spec("AUTH-4", "AUTH-5")
class TestPersonalDataAtRest:
    async def test_recipient_and_body_are_not_stored_in_plaintext(self, outbox: Outbox) -> None:
        phone = "+447700900123"
        email_id = await outbox.enqueue_email()
        sms_id = await outbox.enqueue_sms(to=phone, body=f"Your login code is {CODE}")

        async with outbox.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM notify_outbox"))).all()
        raw = b"".join(
            bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
            for row in rows
            for value in row
        )
        for personal in (ADDRESS, "alice.trader", phone, CODE):
            assert personal.encode() not in raw
        if outbox.engine.dialect.name == "sqlite":
            files = [outbox.directory / "test.db", outbox.directory / "test.db-wal"]
            on_disk = b"".join(path.read_bytes() for path in files if path.exists())
            assert on_disk
            assert ADDRESS.encode() not in on_disk
            assert CODE.encode() not in on_disk
        # The keyring opens each ciphertext only with its own row id as context.
        email_row = await outbox.row(email_id)
        recipient = bytes(email_row.recipient_enc)
        assert (
            outbox.keyring.decrypt(recipient, purpose="notify.recipient", context=email_id.encode())
            == ADDRESS.encode()
        )
        with pytest.raises(DecryptionFailed):
            outbox.keyring.decrypt(recipient, purpose="notify.recipient", context=sms_id.encode())


@pytest.mark.spec("AUTH-4")
class TestSmsDelivery:
    async def test_committed_sms_reaches_the_development_provider(self, outbox: Outbox) -> None:
        dispatcher = outbox.dispatcher(UnreachableSender())
        message_id = await outbox.enqueue_sms(to="+14155550123", body=f"Code {CODE}")

        assert await dispatcher.dispatch_once() == 1

        lines = outbox.sms_file.read_text().splitlines()
        assert [json.loads(line) for line in lines] == [
            {
                "ts": "2026-01-01T00:00:00.000000000Z",
                "reference": message_id,
                "to": "+14155550123",
                "body": f"Code {CODE}",
            }
        ]

    async def test_messages_are_sent_oldest_first_across_batches(self, outbox: Outbox) -> None:
        expected = []
        for index in range(5):
            expected.append(await outbox.enqueue_sms(to="+14155550123", body=f"n{index}"))
            outbox.clock.advance(seconds=1)
        dispatcher = outbox.dispatcher(UnreachableSender(), batch_size=2)

        sent = [await dispatcher.dispatch_once() for _ in range(4)]

        assert sent == [2, 2, 1, 0]
        lines = outbox.sms_file.read_text().splitlines()
        assert [json.loads(line)["reference"] for line in lines] == expected


class ClockJumpingSender:
    """Accepts mail, but each send takes as long as a whole claim (a very slow relay)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.sent: list[str] = []

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message.message_id)
        self.outbox.clock.advance(seconds=CLAIM_TIMEOUT_SECONDS)


class TestDispatcherEdges:
    async def test_batch_stops_once_its_claim_has_run_out(self, outbox: Outbox) -> None:
        first = await outbox.enqueue_email()
        second = await outbox.enqueue_email(to="bob@example.com")
        sender = ClockJumpingSender(outbox)
        dispatcher = outbox.dispatcher(sender)

        report = await dispatcher.dispatch_batch()

        assert (report.claimed, report.sent) == (2, 1)
        assert sender.sent == [first]
        assert (await outbox.row(second)).sent_ns is None
        assert await dispatcher.dispatch_once() == 1  # the next pass takes it
        assert sender.sent == [first, second]

    async def test_row_with_an_unknown_channel_is_kept_with_a_reason(self, outbox: Outbox) -> None:
        message_id = await outbox.enqueue_sms(to="+14155550123", body="hello")
        async with outbox.engine.begin() as conn:
            await conn.execute(
                text("UPDATE notify_outbox SET channel = 'pigeon' WHERE id = :id"),
                {"id": message_id},
            )

        assert await outbox.dispatcher(UnreachableSender()).dispatch_once() == 0

        assert (await outbox.row(message_id)).last_error == "UnknownChannel"

    async def test_run_forever_delivers_until_cancelled(self, outbox: Outbox) -> None:
        await outbox.enqueue_email()
        sender = SignallingSender()
        task = asyncio.create_task(outbox.dispatcher(sender).run_forever(5))

        async with asyncio.timeout(10):
            await sender.delivered.wait()
        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(sender.sent) == 1


class SignallingSender:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.delivered = asyncio.Event()

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message.message_id)
        self.delivered.set()


class TestRunForeverResilience:
    async def test_an_unexpected_failure_is_logged_once_with_its_traceback_and_retried(
        self,
        tmp_path: Path,
        keyring: LocalKeyring,
        clock: FrozenClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        # No tables: every pass fails, and not because the database is unavailable.
        unmigrated = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        outbox = Outbox.create(unmigrated, keyring=keyring, clock=clock, directory=tmp_path)
        dispatcher = outbox.dispatcher(UnreachableSender())
        observer = SignallingObserver()
        tracker = FailureTracker(
            COMPONENT,
            logger=logging.getLogger("tradeguard.notify.tasks"),
            clock=clock,
            policy=BackoffPolicy(base_seconds=0.01, cap_seconds=0.02),
            observer=observer,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run_forever(1, stop, tracker=tracker))
        try:
            await observer.wait_for(lambda: observer.failures >= 3)
        finally:
            stop.set()
            async with asyncio.timeout(10):
                await task
            await unmigrated.dispose()
        (logged,) = [r for r in caplog.records if r.name == "tradeguard.notify.tasks"]
        assert logged.levelno == logging.ERROR
        assert logged.getMessage().startswith(f"{COMPONENT} failing: OperationalError")
        assert logged.exc_info is not None
