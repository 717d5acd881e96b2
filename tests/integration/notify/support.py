"""Outbox test support: a harness over one database, and real SMTP servers (aiosmtpd) on loopback."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.db.engine import session_factory, unit_of_work
from tradeguard.notify import repository
from tradeguard.notify.domain import EmailSender
from tradeguard.notify.senders import FileSmsProvider, SmtpEmailSender, SmtpSecurity
from tradeguard.notify.service import Notifier
from tradeguard.notify.tasks import OutboxDispatcher


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    over_tls: bool


@dataclass
class CollectingHandler:
    """An aiosmtpd handler that keeps every accepted message, or refuses every recipient."""

    refuse_with: str | None = None
    received: list[ReceivedMail] = field(default_factory=list)
    rcpt_attempts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook names are fixed
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self._lock:
            self.rcpt_attempts += 1
        if self.refuse_with is not None:
            return self.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook names are fixed
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        # session.ssl is set after STARTTLS; an implicit-TLS transport reports its SSL object.
        over_tls = session.ssl is not None or (
            server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None
        )
        with self._lock:
            self.received.append(
                ReceivedMail(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    content=bytes(envelope.original_content),
                    over_tls=over_tls,
                )
            )
        return "250 Message accepted for delivery"


@dataclass
class RecordingAuthenticator:
    """aiosmtpd authenticator: accepts one login, and notes whether TLS was up when it came."""

    username: str
    password: str
    logins: list[tuple[str, bool]] = field(default_factory=list)

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        ok = (auth_data.login.decode(), auth_data.password.decode()) == (
            self.username,
            self.password,
        )
        self.logins.append((auth_data.login.decode(), session.ssl is not None))
        # handled=False: aiosmtpd answers the client itself (535 on failure).
        return AuthResult(success=ok, handled=False)


@dataclass(frozen=True)
class SmtpCertificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trusts exactly this self-signed certificate, with host name checking on."""
        return ssl.create_default_context(cafile=str(self.cert_file))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_smtp_server(handler: CollectingHandler, **smtp_options: Any) -> Iterator[int]:
    """Start an aiosmtpd server on 127.0.0.1 (its own thread and event loop); yield its port."""
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, server_hostname="localhost", **smtp_options
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


ADDRESS = "alice.trader@example.com"
CODE = "482913"
SUBJECT = "Confirm your email address"
BODY = f"Your verification code is {CODE}. It expires in 5 minutes."
MAIL_FROM = "no-reply@tradeguard.test"
CLAIM_TIMEOUT_SECONDS = 600


@dataclass
class Outbox:
    """One database (SQLite or PostgreSQL), a notifier on it, and dispatchers to build."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    notifier: Notifier
    keyring: LocalKeyring
    clock: FrozenClock
    directory: Path

    async def enqueue_email(self, *, to: str = ADDRESS) -> str:
        async with unit_of_work(self.sessions) as session:
            return await self.notifier.enqueue_email(
                session, to=to, template="auth.email_verification", subject=SUBJECT, body=BODY
            )

    async def enqueue_sms(self, *, to: str, body: str) -> str:
        async with unit_of_work(self.sessions) as session:
            return await self.notifier.enqueue_sms(
                session, to=to, template="auth.sms_otp", body=body
            )

    async def row(self, message_id: str) -> Any:
        async with self.engine.connect() as conn:
            row = await repository.get_message(conn, message_id)
        assert row is not None
        return row

    @classmethod
    def create(
        cls, engine: AsyncEngine, *, keyring: LocalKeyring, clock: FrozenClock, directory: Path
    ) -> Outbox:
        notifier = Notifier(clock=clock, ids=IdGenerator(clock), keyring=keyring)
        return cls(engine, session_factory(engine), notifier, keyring, clock, directory)

    @property
    def sms_file(self) -> Path:
        return self.directory / "sms" / "outbox.jsonl"

    def dispatcher(
        self, email_sender: EmailSender, *, keyring: LocalKeyring | None = None, **options: Any
    ) -> OutboxDispatcher:
        return OutboxDispatcher(
            engine=self.engine,
            keyring=keyring or self.keyring,
            email_sender=email_sender,
            sms_provider=FileSmsProvider(self.directory / "sms", clock=self.clock),
            clock=self.clock,
            claim_timeout_seconds=CLAIM_TIMEOUT_SECONDS,
            **options,
        )


def smtp_sender(
    port: int, *, security: SmtpSecurity = "none", ssl_context: Any = None
) -> SmtpEmailSender:
    return SmtpEmailSender(
        "127.0.0.1",
        port,
        security=security,
        from_address=MAIL_FROM,
        timeout=5,
        ssl_context=ssl_context,
    )


class SentNothing(Exception):
    """Raised by a sender that must not be reached."""


class UnreachableSender:
    """An email sender for tests that send no email: every call fails."""

    async def send(self, message: Any) -> None:
        raise SentNothing
