"""The error hierarchy. The web layer renders these as RFC 9457 problem+json.

Messages are shown to clients: they never contain secrets, card numbers or personal data.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://tradeguard.dev/problems/"


class TradeguardError(Exception):
    """Base of every error tradeguard raises on purpose."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = extensions

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def to_problem(self, *, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem details object (section 3.1 members plus extensions)."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class InvalidInput(TradeguardError):
    status = 422
    slug = "invalid-input"
    title = "The request is not valid"


class BadRequest(TradeguardError):
    status = 400
    slug = "bad-request"
    title = "Malformed request"


class Unauthorized(TradeguardError):
    status = 401
    slug = "unauthorized"
    title = "Authentication required"


class Forbidden(TradeguardError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class NotFound(TradeguardError):
    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(TradeguardError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"


class Conflict(TradeguardError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PayloadTooLarge(TradeguardError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class RequestTimeout(TradeguardError):
    status = 408
    slug = "request-timeout"
    title = "Request body not received in time"


class TooManyRequests(TradeguardError):
    status = 429
    slug = "too-many-requests"
    title = "Too many requests"


class ServiceUnavailable(TradeguardError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"


class ConfigurationError(TradeguardError):
    """Settings that stop start-up; the message names the setting and what is wrong."""

    status = 500
    slug = "configuration-error"
    title = "Invalid configuration"


class LedgerIntegrityError(TradeguardError):
    """The audit ledger failed verification."""

    status = 500
    slug = "ledger-integrity"
    title = "Audit ledger verification failed"
