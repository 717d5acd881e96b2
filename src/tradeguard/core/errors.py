"""The error hierarchy. The web layer renders these as RFC 9457 problem+json.

Messages are shown to clients: they never contain secrets, card numbers or personal data.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, Final

PROBLEM_BASE = "https://tradeguard.dev/problems/"
# The realm named in every WWW-Authenticate challenge (RFC 6750 section 3).
BEARER_REALM: Final = "tradeguard"
# RFC 6750 section 3: error_description is %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash).
_CHALLENGE_TEXT: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


class TradeguardError(Exception):
    """Base of every error tradeguard raises on purpose."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    # True for errors whose detail is for operators only (it names keys, their versions and
    # data classes, key-encrypting keys, files): a problem body carries the title instead,
    # and the detail goes to the logs (web/problems.py) and to a CLI's error line.
    operator_detail: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = extensions

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    @property
    def client_detail(self) -> str:
        """The detail a client may read: the title alone for an operator-only detail."""
        return self.title if self.operator_detail else self.detail

    def headers(self) -> dict[str, str]:
        """HTTP header fields the response must carry (Retry-After, WWW-Authenticate, ...)."""
        return {}

    def to_problem(self, *, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem details object (section 3.1 members plus extensions)."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.client_detail,
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


class MalformedJson(BadRequest):
    """The body is not JSON; `line`/`column` say where the parser stopped (never what it read)."""

    slug = "malformed-json"
    title = "The request body is not valid JSON"


class Unauthorized(TradeguardError):
    """401. Every 401 carries a Bearer challenge (RFC 9110 section 15.5.2 requires one).

    `bearer_error` is the RFC 6750 section 3.1 error code: "invalid_token" when an access
    token was sent but is bad, expired or revoked, "invalid_request" when the Authorization
    header is malformed. None when no token was sent (section 3.1: then no error code), or when
    what was refused is not the access token (a password, a code, a link).
    """

    status = 401
    slug = "unauthorized"
    title = "Authentication required"
    bearer_error: ClassVar[str | None] = None

    def __init__(
        self, detail: str | None = None, *, bearer_error: str | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail, **extensions)
        self._bearer_error = bearer_error or type(self).bearer_error

    def headers(self) -> dict[str, str]:
        challenge = f'Bearer realm="{BEARER_REALM}"'
        if self._bearer_error is not None:
            challenge += f', error="{self._bearer_error}"'
            if _CHALLENGE_TEXT.fullmatch(self.detail):
                challenge += f', error_description="{self.detail}"'
        return {"WWW-Authenticate": challenge}


class CodeExpired(Unauthorized):
    """A one-time code, emailed link or sign-in ticket that was valid has run out of time.

    Only said where it tells the caller nothing new: whoever presents an expired code or link
    already holds the ticket, session or mailbox it was issued to.
    """

    slug = "code-expired"
    title = "The code or link has expired"


class Forbidden(TradeguardError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class PermissionMissing(Forbidden):
    """A refusal for lack of one named permission: the command line records it in the ledger
    as the API's guard records a denied check (IAC-4 sees denials from either)."""

    def __init__(self, detail: str, *, permission: str) -> None:
        super().__init__(detail)
        self.permission = permission


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


class UnsupportedMediaType(TradeguardError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported request body format"


class RequestTimeout(TradeguardError):
    status = 408
    slug = "request-timeout"
    title = "Request body not received in time"


class TooManyRequests(TradeguardError):
    """429 with Retry-After (RFC 6585 section 4): every caller must say when to come back."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(
        self, detail: str | None = None, *, retry_after_seconds: float, **extensions: Any
    ) -> None:
        # Whole seconds, rounded up: a client that waits exactly this long is not refused again.
        seconds = max(1, math.ceil(retry_after_seconds))
        super().__init__(detail, retry_after_seconds=seconds, **extensions)
        self.retry_after_seconds = seconds

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class AccountLocked(TooManyRequests):
    """The account is locked for a while after repeated wrong second factors.

    Never the answer to a password: a password login keeps the one 401 for unknown user,
    wrong password and locked account. Only a caller past the first factor (it holds an MFA
    ticket, a session or a reset link) is told, and it learns nothing it could not infer.
    """

    slug = "account-locked"
    title = "The account is temporarily locked"


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
