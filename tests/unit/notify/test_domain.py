"""Pure notification rules: recipient and content validation, back-off, failure summaries."""

from __future__ import annotations

import smtplib
import ssl
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.core.clock import NS_PER_SECOND, FrozenClock
from tradeguard.core.errors import InvalidInput
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.notify.domain import (
    MAX_EMAIL_BODY_CHARS,
    MAX_SUBJECT_CHARS,
    RetryPolicy,
    failure_summary,
    normalize_email_address,
    validate_body,
    validate_phone_number,
    validate_subject,
    validate_template,
)
from tradeguard.notify.service import Notifier
from tradeguard.notify.tasks import OutboxDispatcher


class UntouchableSession:
    """Stands in for a session that validation failures must never reach."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the session was used ({name}) for invalid input")


@pytest.mark.spec("AUTH-5")
class TestEmailAddresses:
    @pytest.mark.parametrize(
        ("raw", "normalized"),
        [
            ("alice@example.com", "alice@example.com"),
            ("  alice@Example.COM ", "alice@example.com"),
            ("bob@bücher.example", "bob@xn--bcher-kva.example"),
        ],
    )
    def test_valid_address_is_normalized(self, raw: str, normalized: str) -> None:
        assert normalize_email_address(raw) == normalized

    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@@example.com",
            "Alice <alice@example.com>",
            "alice@example.com\r\nBcc: mallory@example.com",
            "alice@example.com, mallory@example.com",
            "jöran@example.com",
            "alice@localhost",
        ],
    )
    def test_invalid_address_is_refused_without_echoing_it(self, raw: str) -> None:
        with pytest.raises(InvalidInput) as caught:
            normalize_email_address(raw)
        assert caught.value.detail == "recipient is not a valid email address"
        assert caught.value.__cause__ is None


@pytest.mark.spec("AUTH-4")
class TestPhoneNumbers:
    @pytest.mark.parametrize(
        "raw", ["+14155550123", "+447700900123", "+4930123", "+123456789012345"]
    )
    def test_e164_number_is_accepted(self, raw: str) -> None:
        assert validate_phone_number(raw) == raw

    @pytest.mark.parametrize(
        "raw",
        [
            "14155550123",
            "+04155550123",
            "+1 415 555 0123",
            "+1-415-555-0123",
            "+14155550123\n",
            "+123456",
            "+1234567890123456",
            "+1415555012a",
            "",
        ],
    )
    def test_anything_else_is_refused_without_echoing_it(self, raw: str) -> None:
        with pytest.raises(InvalidInput) as caught:
            validate_phone_number(raw)
        assert raw.strip() == "" or raw.strip() not in caught.value.detail


class TestMessageContent:
    @pytest.mark.parametrize("name", ["auth.email_verification", "halt-3.notice", "x"])
    def test_template_names_are_lowercase_identifiers(self, name: str) -> None:
        assert validate_template(name) == name

    @pytest.mark.parametrize("name", ["", "Auth", "1st", "a b", "a/b", "a" * 61])
    def test_other_template_names_are_refused(self, name: str) -> None:
        with pytest.raises(InvalidInput):
            validate_template(name)

    @pytest.mark.parametrize(
        "subject",
        [
            "Hello\r\nBcc: mallory@example.com",
            "Hello\nthere",
            "tab\there",
            "esc\x1b[2J",
            "   ",
            "x" * (MAX_SUBJECT_CHARS + 1),
        ],
    )
    def test_subject_that_could_inject_headers_or_is_unusable_is_refused(
        self, subject: str
    ) -> None:
        with pytest.raises(InvalidInput):
            validate_subject(subject)

    def test_subject_of_printable_text_is_kept(self) -> None:
        assert validate_subject("Trading halted — all symbols") == "Trading halted — all symbols"

    @pytest.mark.parametrize("body", ["", " \n ", "x" * (MAX_EMAIL_BODY_CHARS + 1)])
    def test_empty_or_oversized_body_is_refused(self, body: str) -> None:
        with pytest.raises(InvalidInput):
            validate_body(body, limit=MAX_EMAIL_BODY_CHARS)


@pytest.mark.spec("AUTH-4", "AUTH-5")
class TestNotifierValidation:
    @pytest.fixture
    def notifier(self, tmp_path: Any) -> Notifier:
        clock = FrozenClock()
        keyring = LocalKeyring.load_or_create(tmp_path / "notify.key")
        return Notifier(clock=clock, ids=IdGenerator(clock), keyring=keyring)

    async def test_bad_email_recipient_is_refused_before_touching_the_database(
        self, notifier: Notifier
    ) -> None:
        with pytest.raises(InvalidInput, match="not a valid email address"):
            await notifier.enqueue_email(
                UntouchableSession(),  # type: ignore[arg-type]
                to="not-an-address",
                template="auth.email_verification",
                subject="Confirm",
                body="code 123456",
            )

    async def test_bad_phone_number_is_refused_before_touching_the_database(
        self, notifier: Notifier
    ) -> None:
        with pytest.raises(InvalidInput, match=r"E\.164"):
            await notifier.enqueue_sms(
                UntouchableSession(),  # type: ignore[arg-type]
                to="0044 7700 900123",
                template="auth.sms_otp",
                body="code 123456",
            )

    async def test_header_injection_in_the_subject_is_refused(self, notifier: Notifier) -> None:
        with pytest.raises(InvalidInput, match="one line"):
            await notifier.enqueue_email(
                UntouchableSession(),  # type: ignore[arg-type]
                to="alice@example.com",
                template="auth.email_verification",
                subject="Confirm\r\nBcc: mallory@example.com",
                body="code 123456",
            )


class TestRetryPolicy:
    def test_delay_doubles_per_attempt_until_the_cap(self) -> None:
        policy = RetryPolicy(max_attempts=8, base_seconds=30, cap_seconds=600)
        maxima = [policy.max_delay_ns(attempt) // NS_PER_SECOND for attempt in range(1, 8)]
        assert maxima == [30, 60, 120, 240, 480, 600, 600]

    def test_jitter_spans_the_upper_half_of_the_step(self) -> None:
        policy = RetryPolicy(base_seconds=30)
        assert policy.delay_ns(1, 0.0) == 15 * NS_PER_SECOND
        assert policy.delay_ns(1, 0.5) == int(22.5 * NS_PER_SECOND)

    @given(
        attempts=st.integers(min_value=1, max_value=10_000),
        jitter=st.floats(min_value=0, max_value=1, exclude_max=True),
    )
    def test_delay_is_always_between_half_a_step_and_the_cap(
        self, attempts: int, jitter: float
    ) -> None:
        policy = RetryPolicy(base_seconds=30, cap_seconds=3600)
        delay = policy.delay_ns(attempts, jitter)
        assert 15 * NS_PER_SECOND <= delay <= 3600 * NS_PER_SECOND
        assert delay >= policy.max_delay_ns(attempts) // 2

    @pytest.mark.parametrize(
        "options",
        [
            {"max_attempts": 0},
            {"base_seconds": 0},
            {"base_seconds": 60, "cap_seconds": 30},
        ],
    )
    def test_nonsense_policies_are_refused(self, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=r"must|need"):
            RetryPolicy(**options)


class TestFailureSummary:
    def test_refused_recipients_give_only_class_and_codes(self) -> None:
        exc = smtplib.SMTPRecipientsRefused(
            {"alice@example.com": (550, b"5.1.1 <alice@example.com> unknown user")}
        )
        assert failure_summary(exc) == "SMTPRecipientsRefused 550"

    @pytest.mark.parametrize(
        ("exc", "summary"),
        [
            (
                smtplib.SMTPSenderRefused(553, b"bad <a@b.example>", "a@b.example"),
                "SMTPSenderRefused 553",
            ),
            (smtplib.SMTPDataError(554, b"rejected: contains 123456"), "SMTPDataError 554"),
            (
                smtplib.SMTPAuthenticationError(535, b"bad credentials for bob"),
                "SMTPAuthenticationError 535",
            ),
            (
                smtplib.SMTPNotSupportedError("STARTTLS extension not supported"),
                "SMTPNotSupportedError",
            ),
            (
                ConnectionRefusedError(111, "refused for alice@example.com"),
                "ConnectionRefusedError",
            ),
            (ssl.SSLCertVerificationError("hostname mismatch"), "SSLCertVerificationError"),
        ],
    )
    def test_messages_are_never_copied(self, exc: BaseException, summary: str) -> None:
        assert failure_summary(exc) == summary


class TestDispatcherSettings:
    @pytest.mark.parametrize(
        ("options", "message"),
        [({"batch_size": 0}, "batch_size"), ({"claim_timeout_seconds": 0}, "claim_timeout")],
    )
    def test_nonsense_settings_are_refused(self, options: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            OutboxDispatcher(
                engine=cast(Any, None),
                keyring=cast(Any, None),
                email_sender=cast(Any, None),
                sms_provider=cast(Any, None),
                clock=FrozenClock(),
                **options,
            )
