"""Structured logs: JSON lines, and redaction of secrets, card numbers and personal data."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tradeguard.web.logging import (
    REDACTED,
    JsonFormatter,
    RedactionFilter,
    configure_logging,
    is_sensitive_key,
    redact_client_key,
    redact_text,
    request_id_var,
)

VISA_TEST_PAN = "4111111111111111"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1c2VyLTEiLCJyb2xlIjoiVFJBREVSIn0."
    "c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing JSON through the redaction filter into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactionFilter())
    logger = logging.getLogger("tests.web.redaction")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestSensitiveKeys:
    @pytest.mark.parametrize(
        "key",
        [
            "password",
            "new_password",
            "client_secret",
            "access_token",
            "Authorization",
            "set-cookie",
            "otp",
            "backup_code",
            "pan",
            "card_number",
            "cardNumber",
            "ssn",
            "tax_id",
            "taxId",
            "account_number",
            "X-API-Key",
            "apiKey",
            "private_key",
        ],
    )
    def test_secret_bearing_keys_are_sensitive(self, key: str) -> None:
        assert is_sensitive_key(key)

    @pytest.mark.parametrize(
        "key", ["status", "status_code", "company", "method", "path", "duration_ms", "user_id"]
    )
    def test_operational_keys_are_not(self, key: str) -> None:
        assert not is_sensitive_key(key)


class TestRedactText:
    @pytest.mark.parametrize(
        "pan", [VISA_TEST_PAN, "4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"]
    )
    def test_luhn_valid_card_numbers_are_masked(self, pan: str) -> None:
        assert redact_text(f"charged card {pan} ok") == "charged card [REDACTED-PAN] ok"

    def test_digit_runs_that_fail_luhn_are_kept(self) -> None:
        assert redact_text("order 4111111111111112 filled") == "order 4111111111111112 filled"

    def test_jwts_and_bearer_tokens_are_masked(self) -> None:
        text = redact_text(f"token {JWT} and header Bearer abc.DEF-123_x")
        assert "eyJ" not in text
        assert "abc.DEF" not in text
        assert "[REDACTED-JWT]" in text
        assert f"Bearer {REDACTED}" in text

    def test_a_long_number_as_a_path_segment_is_masked(self) -> None:
        text = redact_text("POST /api/v1/funds/bank-accounts/73914682005517/verify 422")
        assert text == "POST /api/v1/funds/bank-accounts/[REDACTED-NUMBER]/verify 422"
        assert redact_text("GET /x/12345678?y=1") == "GET /x/[REDACTED-NUMBER]?y=1"

    @pytest.mark.parametrize(
        "text", ["GET /api/v1/orders/1234567 200", "took 1767625200000000000 ns", "/v1/a12345678"]
    )
    def test_short_segments_and_numbers_outside_paths_are_kept(self, text: str) -> None:
        assert redact_text(text) == text

    def test_a_long_number_as_a_clients_key_is_masked(self) -> None:
        assert redact_client_key("73914682005517") == "[REDACTED-NUMBER]"
        assert redact_client_key("nickname") == "nickname"
        assert redact_client_key("0") == "0"

    @pytest.mark.parametrize("tax_id", ["078-05-1120", "912-70-1234", "12-3456789"])
    def test_tax_ids_written_with_dashes_are_masked(self, tax_id: str) -> None:
        assert redact_text(f"refused tax id {tax_id}.") == "refused tax id [REDACTED-TAX-ID]."

    @pytest.mark.parametrize(
        "text",
        [
            "session on 2026-01-05 at 15:00",
            "call 415-555-0100",
            "event 0190c5a0-0000-7000-8000-000000000001",
            "range 1234-56-78901",
            "order 123-45-67890",
        ],
    )
    def test_dates_phone_numbers_uuids_and_longer_runs_are_not_tax_ids(self, text: str) -> None:
        assert redact_text(text) == text

    def test_emails_are_masked(self) -> None:
        assert redact_text("sent to alice.smith+x@example.co.uk") == "sent to [REDACTED-EMAIL]"

    def test_sensitive_key_values_in_text_are_masked(self) -> None:
        text = redact_text(
            "login password=hunter2 user=bob {\"api_key\": \"k-123 456\", 'otp': '987654'} "
            "?token=abc&page=2"
        )
        for secret in ("hunter2", "k-123", "987654", "abc&"):
            assert secret not in text
        assert "user=bob" in text
        assert "page=2" in text


class TestRedactionFilter:
    def test_password_field_in_extra_is_masked(
        self, captured: tuple[logging.Logger, io.StringIO]
    ) -> None:
        logger, stream = captured
        logger.info("login attempt", extra={"username": "bob", "password": "hunter2"})
        (line,) = lines(stream)
        assert line["password"] == REDACTED
        assert line["username"] == "bob"

    def test_nested_values_are_masked_by_key_and_by_pattern(
        self, captured: tuple[logging.Logger, io.StringIO]
    ) -> None:
        logger, stream = captured
        logger.info(
            "payload",
            extra={
                "payload": {"card": {"number": VISA_TEST_PAN}, "note": [f"pan {VISA_TEST_PAN}"]}
            },
        )
        (line,) = lines(stream)
        assert VISA_TEST_PAN not in json.dumps(line)
        assert line["payload"] == {"card": REDACTED, "note": ["pan [REDACTED-PAN]"]}

    def test_format_arguments_are_redacted_after_formatting(
        self, captured: tuple[logging.Logger, io.StringIO]
    ) -> None:
        logger, stream = captured
        logger.warning("user %s sent %s", "carol@example.com", {"password": "pw1", "jwt": JWT})
        (line,) = lines(stream)
        message = str(line["message"])
        for secret in ("carol@example.com", "pw1", "eyJ"):
            assert secret not in message

    def test_tracebacks_are_redacted(self, captured: tuple[logging.Logger, io.StringIO]) -> None:
        logger, stream = captured
        try:
            raise ValueError(f"card {VISA_TEST_PAN} declined for dave@example.org")
        except ValueError:
            logger.exception("payment failed")
        (line,) = lines(stream)
        assert "ValueError" in str(line["exc"])
        assert VISA_TEST_PAN not in str(line["exc"])
        assert "dave@example.org" not in str(line["exc"])

    def test_a_broken_format_call_does_not_raise(
        self, captured: tuple[logging.Logger, io.StringIO]
    ) -> None:
        logger, stream = captured
        logger.info("two %s %s", "args-missing")  # noqa: PLE1206 - the malformed call under test
        assert lines(stream)[0]["message"] == "two %s %s"


class TestJsonFormat:
    @pytest.mark.spec("IAC-4")
    def test_one_object_per_line_with_the_request_id(
        self, captured: tuple[logging.Logger, io.StringIO]
    ) -> None:
        logger, stream = captured
        token = request_id_var.set("req-77")
        try:
            logger.info("first")
        finally:
            request_id_var.reset(token)
        logger.info("second")
        first, second = lines(stream)
        assert set(first) >= {"ts", "level", "logger", "message", "request_id"}
        assert first["request_id"] == "req-77"
        assert first["level"] == "INFO"
        assert first["logger"] == "tests.web.redaction"
        assert str(first["ts"]).endswith("+00:00")
        assert second["request_id"] is None


class TestConfigureLogging:
    def test_every_root_handler_gets_the_filter_and_reconfiguring_does_not_stack(self) -> None:
        root = logging.getLogger()
        saved_handlers, saved_level = list(root.handlers), root.level
        saved_filters = {h: list(h.filters) for h in saved_handlers}
        try:
            configure_logging("debug")
            configure_logging("INFO")
            ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
            assert len(ours) == 1
            for handler in root.handlers:
                assert sum(isinstance(f, RedactionFilter) for f in handler.filters) == 1
            assert root.level == logging.INFO
            assert logging.getLogger("uvicorn.access").disabled
        finally:
            for handler in list(root.handlers):
                if handler not in saved_handlers:
                    root.removeHandler(handler)
            for handler, filters in saved_filters.items():
                handler.filters = filters
            root.setLevel(saved_level)
            logging.getLogger("uvicorn.access").disabled = False
