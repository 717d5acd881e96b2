"""Email and SMS delivery: SMTP (RFC 5321) with STARTTLS (RFC 3207) or implicit TLS (RFC 8314),
and file-based development senders that keep the demo working offline.

Messages are RFC 5322 documents built with the standard library's `email` package.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage as MimeMessage
from email.parser import BytesParser
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Literal

from tradeguard.config import Settings
from tradeguard.core.clock import Clock, SystemClock, ns_to_datetime, ns_to_iso
from tradeguard.core.errors import ConfigurationError
from tradeguard.notify.domain import (
    EmailMessage,
    EmailSender,
    SmsProvider,
)

SmtpSecurity = Literal["starttls", "tls", "none"]

DEFAULT_MAIL_FROM = "tradeguard@localhost"
MAILBOX_DIRNAME = "mailbox"
SMS_DIRNAME = "sms"
SMS_OUTBOX_FILENAME = "outbox.jsonl"


# The operator's sender address: one "@", no spaces, angle brackets, quotes or line breaks
# (it goes into the From header and the SMTP envelope). Unlike recipients, local names such as
# tradeguard@localhost are fine here.
_MAIL_FROM = re.compile(r"[^@\s<>\"\x00-\x1f\x7f]+@[^@\s<>\"\x00-\x1f\x7f]+")


def check_mail_from(address: str) -> str:
    if not address.isascii() or not _MAIL_FROM.fullmatch(address):
        raise ConfigurationError("mail-from must be a plain address such as alerts@example.com")
    return address


def build_mime(message: EmailMessage, *, from_address: str) -> MimeMessage:
    """The RFC 5322 message for an outbox email."""
    mime = MimeMessage(policy=policy.SMTP)
    mime["From"] = from_address
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(ns_to_datetime(message.created_ns))
    # Derived from the outbox id, so a repeated delivery (at-least-once, see tasks.py) carries
    # the same Message-ID and mail clients and filters can recognise the duplicate.
    domain = from_address.rsplit("@", 1)[-1]
    mime["Message-ID"] = f"<{message.message_id}@{domain}>"
    # RFC 3834: automatic mail; vacation responders and list servers must not answer it.
    mime["Auto-Submitted"] = "auto-generated"
    mime.set_content(message.body)
    return mime


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SmtpEmailSender:
    """Send through an SMTP relay, TLS-protected unless the relay is on this machine.

    smtplib is blocking, so each delivery runs in a worker thread (`asyncio.to_thread`); the
    socket timeout bounds every network operation.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: SmtpSecurity,
        from_address: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in {"starttls", "tls", "none"}:
            raise ConfigurationError("SMTP security must be one of starttls, tls, none")
        # Without TLS, message bodies (one-time codes) cross the network in clear text, where
        # anyone on the path can read them. Only a relay on this host, reached over the
        # loopback interface, is exempt.
        if security == "none" and not _is_loopback(host):
            raise ConfigurationError(
                "SMTP security 'none' is only allowed for a relay on a loopback address"
            )
        if (username is None) != (password is None):
            raise ConfigurationError("SMTP username and password go together")
        if username is not None and security == "none":
            raise ConfigurationError("SMTP credentials are only sent over TLS")
        if timeout <= 0:
            raise ConfigurationError("SMTP timeout must be positive")
        self._from = check_mail_from(from_address)
        self._host = host
        self._port = port
        self._security: SmtpSecurity = security
        self._username = username
        self._password = password
        self._timeout = timeout
        # The default context verifies the certificate chain and the host name, and
        # refuses SSLv3, TLS 1.0 and 1.1.
        self._ssl_context = ssl_context or ssl.create_default_context()

    def __repr__(self) -> str:
        return f"SmtpEmailSender({self._host!r}, {self._port}, security={self._security!r})"

    async def send(self, message: EmailMessage) -> None:
        mime = build_mime(message, from_address=self._from)
        await asyncio.to_thread(self._deliver, mime, message.to)

    def _deliver(self, mime: MimeMessage, recipient: str) -> None:
        client: smtplib.SMTP
        if self._security == "tls":
            client = smtplib.SMTP_SSL(
                self._host, self._port, timeout=self._timeout, context=self._ssl_context
            )
        else:
            client = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        with client:
            if self._security == "starttls":
                client.ehlo()
                # starttls() raises SMTPNotSupportedError when the server does not offer it.
                # We never fall back to plain text: a network attacker can strip STARTTLS from
                # the EHLO reply (RFC 3207 section 6), so "TLS if offered" is no protection.
                client.starttls(context=self._ssl_context)
                # RFC 3207 section 4.2: forget what was learned before TLS; ask again.
                client.ehlo()
            if self._username is not None and self._password is not None:
                client.login(self._username, self._password)
            # One recipient per message: if it is refused, send_message raises
            # SMTPRecipientsRefused, so returning means the relay accepted the message.
            client.send_message(mime, from_addr=self._from, to_addrs=[recipient])


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable only by its owner, atomically (readers never see half a file)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _private_directory(directory: Path) -> None:
    # Development mail and SMS hold one-time codes: only the service account may read them.
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def mailbox_filename(message: EmailMessage) -> str:
    """`<UTC time, ns>-<outbox id>.eml`: sorts by time; a repeated delivery overwrites itself."""
    stamp = ns_to_iso(message.created_ns).replace("-", "").replace(":", "")
    return f"{stamp}-{message.message_id}.eml"


class FileEmailSender:
    """Development sender: each message becomes an `.eml` file (mode 0600) in a directory."""

    def __init__(self, directory: Path, *, from_address: str = DEFAULT_MAIL_FROM) -> None:
        self.directory = directory
        self._from = check_mail_from(from_address)

    def __repr__(self) -> str:
        return f"FileEmailSender({str(self.directory)!r})"

    async def send(self, message: EmailMessage) -> None:
        data = build_mime(message, from_address=self._from).as_bytes()
        await asyncio.to_thread(self._store, mailbox_filename(message), data)

    def _store(self, filename: str, data: bytes) -> None:
        _private_directory(self.directory)
        _write_private(self.directory / filename, data)


class FileSmsProvider:
    """Development SMS provider: appends one JSON object per message to `outbox.jsonl` (0600)."""

    def __init__(self, directory: Path, *, clock: Clock | None = None) -> None:
        self.directory = directory
        self.path = directory / SMS_OUTBOX_FILENAME
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"FileSmsProvider({str(self.directory)!r})"

    async def send(self, to: str, body: str, *, reference: str) -> None:
        record = {
            "ts": ns_to_iso(self._clock.now_ns()),
            "reference": reference,
            "to": to,
            "body": body,
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        _private_directory(self.directory)
        # O_APPEND: concurrent writers each add whole lines at the end.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class MailboxEntry:
    """One message in the development mailbox."""

    message_id: str
    path: Path
    date: datetime | None
    to: str
    subject: str


def read_dev_mailbox(directory: Path) -> list[MailboxEntry]:
    """The development mailbox, oldest first (empty when nothing was sent yet)."""
    if not directory.is_dir():
        return []
    entries = []
    for path in sorted(directory.glob("*.eml")):
        parsed = _parse(path)
        date_header = parsed["Date"]
        entries.append(
            MailboxEntry(
                message_id=path.stem.split("-", 1)[1] if "-" in path.stem else path.stem,
                path=path,
                date=parsedate_to_datetime(str(date_header)) if date_header else None,
                to=str(parsed["To"] or ""),
                subject=str(parsed["Subject"] or ""),
            )
        )
    return entries


def read_text_body(path: Path) -> str:
    """The text/plain body of a stored message, with local line ends."""
    body = _parse(path).get_body(preferencelist=("plain",))
    if body is None:
        return ""
    # Text travels with CRLF line ends (RFC 2046 section 4.1.1); show it with plain LF.
    return str(body.get_content()).replace("\r\n", "\n")


def _parse(path: Path) -> MimeMessage:
    with path.open("rb") as handle:
        return BytesParser(policy=policy.default).parse(handle)


@dataclass(frozen=True, slots=True)
class Senders:
    email: EmailSender
    sms: SmsProvider


def senders_from_settings(
    settings: Settings,
    *,
    smtp_host: str | None = None,
    smtp_port: int = 587,
    smtp_security: SmtpSecurity = "starttls",
    smtp_username: str | None = None,
    smtp_password: str | None = None,
    mail_from: str = DEFAULT_MAIL_FROM,
    smtp_timeout_seconds: float = 30.0,
    sms_provider: Literal["file", "disabled"] = "file",
    clock: Clock | None = None,
) -> Senders:
    """The configured senders: SMTP when a host is set, else the file mailbox under data_dir.

    Production refuses the file senders: they write one-time codes to local disk, and mail
    that never leaves the server would look like working login and withdrawal verification.
    """
    if settings.is_production and smtp_host is None:
        raise ConfigurationError(
            "TRADEGUARD_SMTP_HOST: production needs an SMTP relay; "
            "the file mailbox is for development only"
        )
    if settings.is_production and sms_provider == "file":
        raise ConfigurationError(
            "TRADEGUARD_SMS_PROVIDER: production needs an SMS gateway; "
            "the file provider is for development only"
        )
    email: EmailSender
    if smtp_host is None:
        email = FileEmailSender(settings.data_dir / MAILBOX_DIRNAME, from_address=mail_from)
    else:
        email = SmtpEmailSender(
            smtp_host,
            smtp_port,
            security=smtp_security,
            from_address=mail_from,
            username=smtp_username,
            password=smtp_password,
            timeout=smtp_timeout_seconds,
        )
    sms: SmsProvider
    if sms_provider == "disabled":
        sms = DisabledSmsProvider()
    else:
        sms = FileSmsProvider(settings.data_dir / SMS_DIRNAME, clock=clock)
    return Senders(email=email, sms=sms)


class SmsDisabledError(RuntimeError):
    """SMS is switched off; a queued text can never be delivered."""


class DisabledSmsProvider:
    """For platforms that offer no SMS: identity refuses SMS factors, and anything queued
    anyway fails (and is dead-lettered) instead of pretending to be delivered."""

    async def send(self, to: str, body: str, *, reference: str) -> None:
        raise SmsDisabledError("SMS delivery is disabled (TRADEGUARD_SMS_PROVIDER=disabled)")
