"""Notification values and rules: messages, recipient validation, retry back-off, error summaries.

Pure: imports only core and the standard library (and email-validator, a pure parser).
"""

from __future__ import annotations

import re
import smtplib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from email_validator import EmailNotValidError, validate_email

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import InvalidInput

# Column widths of notify_outbox (models.py).
MAX_TEMPLATE_CHARS = 60
MAX_SUBJECT_CHARS = 200
MAX_LAST_ERROR_CHARS = 200
# Generous bounds that still stop a caller from queueing megabytes per message.
MAX_EMAIL_BODY_CHARS = 100_000
# Ten concatenated GSM-7 segments; gateways reject or bill far longer bodies.
MAX_SMS_BODY_CHARS = 1_530

# E.164: "+", a country code that does not start with 0, at most 15 digits in all.
# fullmatch, not "^...$": "$" also matches before a trailing newline, which would let
# "+15551234567\n" through to a gateway API.
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_TEMPLATE = re.compile(r"[a-z][a-z0-9_.\-]*")


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class EmailMessage:
    """One email as the senders see it; `message_id` is the outbox id."""

    message_id: str
    to: str = field(repr=False)
    subject: str
    body: str = field(repr=False)
    # When the message was enqueued: the RFC 5322 Date (section 3.6.1, the origination
    # date is when the message was ready to enter the delivery system, not when it left).
    created_ns: int


class EmailSender(Protocol):
    """Delivers one email or raises; raising means "not delivered, try again later"."""

    async def send(self, message: EmailMessage) -> None: ...


class SmsProvider(Protocol):
    """An SMS gateway (Twilio-like HTTP API, SMPP, or the development file provider).

    `send` returns once the gateway has accepted the message and raises otherwise. A real
    gateway implementation should:

    - speak HTTPS only, with certificate verification, and keep its API credentials out of
      logs and exception messages;
    - pass `reference` (the outbox id) as the gateway's client reference where it has one,
      so delivery receipts can be matched and a repeated send recognised;
    - raise on any non-success response so the outbox retries with back-off.
    """

    async def send(self, to: str, body: str, *, reference: str) -> None: ...


def normalize_email_address(raw: str) -> str:
    """Validate an address's syntax (no DNS lookups) and return its normalized ASCII form."""
    try:
        # Display names ("Name <a@b>") and SMTPUTF8 local parts are refused: the address goes
        # into an SMTP envelope as-is, and an internationalized domain is sent as IDNA.
        result = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        # The library's message quotes parts of the address: personal data stays out.
        raise InvalidInput("recipient is not a valid email address") from None
    return result.ascii_email or result.normalized


def validate_phone_number(raw: str) -> str:
    """Return an E.164 phone number unchanged, or refuse it."""
    if not _E164.fullmatch(raw):
        raise InvalidInput("recipient is not an E.164 phone number (+ and 7 to 15 digits)")
    return raw


def validate_template(name: str) -> str:
    if len(name) > MAX_TEMPLATE_CHARS or not _TEMPLATE.fullmatch(name):
        raise InvalidInput(
            f"template must be a lowercase name of at most {MAX_TEMPLATE_CHARS} characters"
        )
    return name


def validate_subject(subject: str) -> str:
    # A CR or LF in a header value would let the caller add headers of their own (header
    # injection); other control characters have no place in a subject either.
    if not subject.strip() or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in subject):
        raise InvalidInput("subject must be one line of printable text")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise InvalidInput(f"subject is longer than {MAX_SUBJECT_CHARS} characters")
    return subject


def validate_body(body: str, *, limit: int) -> str:
    if not body.strip():
        raise InvalidInput("message body is empty")
    if len(body) > limit:
        raise InvalidInput(f"message body is longer than {limit} characters")
    return body


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter, and a cap on attempts before a message is dead."""

    max_attempts: int = 8
    base_seconds: float = 30.0
    cap_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.base_seconds <= self.cap_seconds:
            raise ValueError("need 0 < base_seconds <= cap_seconds")

    def delay_ns(self, attempts: int, jitter: float) -> int:
        """Wait after the `attempts`-th failure; `jitter` is uniform in [0, 1).

        "Equal jitter": half the exponential step is fixed, half random. The fixed half keeps
        a minimum spacing (a failing server is not hammered); the random half spreads
        replicas and messages that failed together, so they do not retry in lockstep.
        """
        # The exponent is clamped: 2.0 ** 1024 overflows a float, and any step past 2 ** 64
        # base intervals is far beyond every sensible cap anyway.
        exponent = min(max(attempts - 1, 0), 64)
        step = min(self.cap_seconds, self.base_seconds * 2.0**exponent)
        return int((step / 2 + step / 2 * jitter) * NS_PER_SECOND)

    def max_delay_ns(self, attempts: int) -> int:
        return self.delay_ns(attempts, 1.0)


def failure_summary(exc: BaseException) -> str:
    """A short, personal-data-free description of a delivery failure: class name + SMTP codes.

    Exception messages are never used: smtplib's carry recipient addresses and server
    replies that echo them, and a gateway's may carry the phone number or message text.
    """
    name = type(exc).__name__
    codes: list[int] = []
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({int(code) for code, _reply in exc.recipients.values()})
    elif isinstance(exc, smtplib.SMTPResponseException):
        codes = [int(exc.smtp_code)]
    summary = name + (" " + ",".join(str(code) for code in codes) if codes else "")
    return summary[:MAX_LAST_ERROR_CHARS]
