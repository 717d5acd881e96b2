"""Structured JSON logs with redaction of secrets, card numbers and personal data.

Security invariant 3 (ARCHITECTURE.md): secrets, card numbers and personal data never reach
the logs. Every handler on the root logger gets `RedactionFilter`, which masks values of
sensitive keys (in `extra=` fields and in `key=value` / `"key": "value"` text) and anything
that looks like a card number (Luhn-valid, 13-19 digits), a US tax id (123-45-6789,
12-3456789), a JWT, a bearer token or an email address, in the message, the extra fields and
formatted tracebacks.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from tradeguard.core.context import request_id_var

REDACTED: Final = "[REDACTED]"


# Key names are compared word by word (snake_case, kebab-case and camelCase all split into
# words), so "access_token", "X-API-Key" and "cardNumber" match while "company" does not
# match "pan". Over-masking is the safe failure; the few keys below are known not to hold
# secrets and are too common in operational logs to lose.
_SENSITIVE_WORD_SEQUENCES: Final[tuple[tuple[str, ...], ...]] = (
    ("password",),
    ("passwd",),
    ("passphrase",),
    ("secret",),
    ("token",),
    ("authorization",),
    ("cookie",),
    ("otp",),
    ("code",),
    ("pan",),
    ("card",),
    ("cvv",),
    ("cvc",),
    ("pin",),
    ("ssn",),
    ("tax", "id"),
    ("taxid",),
    ("account", "number"),
    ("api", "key"),
    ("apikey",),
    ("private", "key"),
    ("credential",),
    ("credentials",),
    ("session",),
)
_NON_SECRET_KEYS: Final = frozenset(
    {"status_code", "reason_code", "error_code", "currency_code", "country_code"}
)

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_KEY_VALUE = re.compile(
    r"""(?P<key>[A-Za-z_][A-Za-z0-9_.-]{0,63})(?P<close>["']?)(?P<sep>\s*[:=]\s*)"""
    r"""(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s"',;&)}\]]+))"""
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Digits with optional single spaces or dashes between them, as card numbers are written.
_PAN_CANDIDATE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
# US tax ids as they are written: SSN and ITIN 123-45-6789, EIN 12-3456789. Bounded by
# anything but a digit or a dash, so dates (2026-01-05), phone numbers and UUIDs never match.
# A URL path segment of 8 or more digits: no route of ours has one (ids are UUIDs), so it is
# a number a client put where an id belongs: a bank account or phone number (issue #11).
_NUMBER_SEGMENT = re.compile(r"(?<=/)\d{8,}(?=[/?#]|$)")
REDACTED_NUMBER = "[REDACTED-NUMBER]"
_TAX_ID = re.compile(r"(?<![\d-])(?:\d{3}-\d{2}-\d{4}|\d{2}-\d{7})(?![\d-])")

# LogRecord attributes that are not `extra=` fields (plus uvicorn's ANSI-coloured copy of
# its message, which is noise in JSON).
_RECORD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "taskName", "color_message"}
)


@functools.lru_cache(maxsize=2048)
def is_sensitive_key(key: str) -> bool:
    """Whether a field with this name may hold a secret, card data or personal data."""
    normalized = _CAMEL_BOUNDARY.sub("_", key).lower()
    if normalized in _NON_SECRET_KEYS:
        return False
    words = tuple(word for word in _WORD_SPLIT.split(normalized) if word)
    for sequence in _SENSITIVE_WORD_SEQUENCES:
        size = len(sequence)
        for start in range(len(words) - size + 1):
            if words[start : start + size] == sequence:
                return True
    return False


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask_pan(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and _luhn_valid(digits):
        return "[REDACTED-PAN]"
    return match.group(0)


def _mask_key_value(match: re.Match[str]) -> str:
    if not is_sensitive_key(match.group("key")):
        return match.group(0)
    prefix = match.group("key") + match.group("close") + match.group("sep")
    if match.group("dq") is not None:
        return f'{prefix}"{REDACTED}"'
    if match.group("sq") is not None:
        return f"{prefix}'{REDACTED}'"
    return prefix + REDACTED


def redact_text(text: str) -> str:
    """Mask secrets and personal data inside free text."""
    # Each pattern needs a marker that a substring test finds far faster than the regex
    # engine; most log text (methods, paths, addresses) has none, and this runs per request.
    if "eyJ" in text:
        text = _JWT.sub("[REDACTED-JWT]", text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _AUTH_SCHEME.sub(lambda m: f"{m.group('scheme')} {REDACTED}", text)
    if "=" in text or ":" in text:
        text = _KEY_VALUE.sub(_mask_key_value, text)
    if "@" in text:
        text = _EMAIL.sub("[REDACTED-EMAIL]", text)
    if "-" in text:
        text = _TAX_ID.sub("[REDACTED-TAX-ID]", text)
    if "/" in text:
        text = _NUMBER_SEGMENT.sub(REDACTED_NUMBER, text)
    return _PAN_CANDIDATE.sub(_mask_pan, text)


def redact_client_key(key: str) -> str:
    """A name the client chose (an unknown JSON key), as an error may repeat it: a long
    number there is account data sent as a key, never a field of ours."""
    if len(key) >= 8 and key.isdigit():
        return REDACTED_NUMBER
    return redact_text(key)


def redact_value(key: str | None, value: Any) -> Any:
    """Mask a structured value: whole values under sensitive keys, patterns everywhere else."""
    if key is not None and value is not None and is_sensitive_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(None, item) for item in value]
    return value


class RedactionFilter(logging.Filter):
    """Rewrites each record in place so no handler can emit the unredacted text."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_tradeguard_redacted", False):
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A malformed format call must not crash the caller or leak its arguments.
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                setattr(record, name, redact_value(name, value))
        if record.exc_info or record.exc_text:
            # Exception messages can carry values (SQL parameters, parsed input). Formatters
            # reuse the traceback text cached on the record, so redacting the cache covers
            # every handler that formats after this one.
            text = record.exc_text
            if not text and record.exc_info:
                text = self._formatter.formatException(record.exc_info)
            record.exc_text = redact_text(text or "")
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        record._tradeguard_redacted = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, then extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                payload[name] = value
        if record.exc_info or record.exc_text:
            payload["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, default=str, ensure_ascii=False, separators=(",", ":"))


class _TradeguardHandler(logging.StreamHandler[TextIO]):
    """Marks the handler configure_logging installed, so reconfiguring replaces it."""


def configure_logging(level: str = "INFO") -> None:
    """JSON logs on stderr, redaction on every root handler, uvicorn routed through root."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _TradeguardHandler):
            root.removeHandler(handler)
    handler = _TradeguardHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    for existing in root.handlers:
        if not any(isinstance(f, RedactionFilter) for f in existing.filters):
            existing.addFilter(RedactionFilter())
    root.setLevel(level.upper())
    # uvicorn's own loggers propagate to root (and so through redaction); its access log is
    # replaced by the one the request middleware writes with route templates and request ids.
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
