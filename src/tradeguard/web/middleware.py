"""Pure ASGI middleware at the edge: request ids, security headers, access log, metrics,
request body size and time limits, and the last-resort 500.

Pure ASGI (not BaseHTTPMiddleware) because it runs on every request, including the
benchmarked health check, and must see the raw receive/send channels to count body bytes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Final, NoReturn

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradeguard.core.clock import Clock
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import PayloadTooLarge, RequestTimeout, TradeguardError
from tradeguard.core.ids import IdGenerator
from tradeguard.web.logging import redact_text
from tradeguard.web.metrics import UNMATCHED_ROUTE, HttpMetrics
from tradeguard.web.problems import send_problem
from tradeguard.web.routing import ROUTE_TEMPLATE_KEY

REQUEST_ID_HEADER: Final = b"x-request-id"
# Incoming ids are echoed into headers and logs, so only a short, plain alphabet is trusted:
# no CR/LF (header injection), no quotes or spaces (log forging), bounded length.
_REQUEST_ID_PATTERN: Final = re.compile(rb"[A-Za-z0-9._-]{1,64}")

# HSTS for two years on this host and its subdomains: the API is TLS-only, so a browser that
# once saw it never tries plain HTTP (which the server would not answer anyway).
_COMMON_SECURITY_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (
        b"permissions-policy",
        b"accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        b"microphone=(), payment=(), usb=()",
    ),
    # Responses carry account and order data: no shared or browser cache may keep them.
    (b"cache-control", b"no-store"),
)
# JSON APIs never need to load anything, so the policy forbids everything.
API_CSP: Final = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# Swagger UI (development only: production refuses to start with docs enabled) is served from
# this origin (web/docs.py) and boots from a script file, so nothing else and nothing inline
# may run; it fetches only /openapi.json.
DOCS_CSP: Final = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

_API_HEADERS: Final = (*_COMMON_SECURITY_HEADERS, (b"content-security-policy", API_CSP))
_DOCS_HEADERS: Final = (*_COMMON_SECURITY_HEADERS, (b"content-security-policy", DOCS_CSP))

access_logger = logging.getLogger("tradeguard.access")
error_logger = logging.getLogger("tradeguard.web.errors")


def _incoming_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            # A client's id is echoed in every log line and error body of its request: one
            # that looks like a card number or tax id is replaced by ours, never repeated.
            if _REQUEST_ID_PATTERN.fullmatch(value):
                text = value.decode("ascii")
                return text if redact_text(text) == text else None
            return None
    return None


def _route_template(scope: Scope) -> str | None:
    """The matched route's full path template ("/api/orders/{order_id}"), None if unmatched."""
    resolved = scope.get(ROUTE_TEMPLATE_KEY)
    if isinstance(resolved, str):
        return resolved  # answered by route resolution (405, OPTIONS)
    # FastAPI >= 0.16x serves routes of an included router through an effective route
    # context that knows the full prefixed template, while scope["route"] is the router's
    # own route with only its unprefixed path.
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        context = fastapi_scope.get("effective_route_context")
        template = getattr(context, "path_format", None)
        if isinstance(template, str):
            return template
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else None


class RequestContextMiddleware:
    """Outermost layer: everything that must hold for every response, errors included."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        clock: Clock,
        ids: IdGenerator,
        metrics: HttpMetrics,
        docs_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self._clock = clock
        self._ids = ids
        self._metrics = metrics
        self._docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_ns = self._clock.monotonic_ns()
        request_id = _incoming_request_id(scope["headers"]) or self._ids.new_str()
        token = request_id_var.set(request_id)
        path: str = scope["path"]
        added_headers = [
            *(_DOCS_HEADERS if path in self._docs_paths else _API_HEADERS),
            (REQUEST_ID_HEADER, request_id.encode("ascii")),
        ]
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in added_headers if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Logged with the request id and path only: never the body, the query string or
            # the headers, which may carry credentials.
            error_logger.exception(
                "unhandled error", extra={"method": scope["method"], "path": path}
            )
            if not response_started:
                await send_problem(send_with_headers, TradeguardError(), instance=path)
        finally:
            duration_ns = self._clock.monotonic_ns() - started_ns
            template = _route_template(scope)
            self._metrics.observe(
                method=scope["method"],
                route=template or UNMATCHED_ROUTE,
                status=status,
                seconds=duration_ns / 1e9,
            )
            if access_logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_logger.info(
                    "%s %s %d",
                    scope["method"],
                    template or path,
                    status,
                    extra={
                        "method": scope["method"],
                        "path": template or path,
                        "status": status,
                        "duration_ms": round(duration_ns / 1e6, 3),
                        "client_ip": client[0] if client else None,
                    },
                )
            request_id_var.reset(token)


def too_large(max_body_bytes: int) -> PayloadTooLarge:
    """The 413, stating the limit so a client knows how much to cut."""
    return PayloadTooLarge(
        f"The request body is larger than the limit of {max_body_bytes} bytes",
        max_body_bytes=max_body_bytes,
    )


class _BodyAborted(Exception):
    """Raised into the app from receive() once the body limit or deadline is broken."""


class RequestBodyGuardMiddleware:
    """Refuse bodies over the size limit (413) or not fully received in time (408).

    A declared Content-Length over the limit is refused before any byte is read. Chunked or
    under-declared bodies are counted as they stream in. The deadline covers the whole body
    from the start of the request, so a client trickling one byte at a time (slowloris on
    the body) cannot hold a connection and a worker for longer than the limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        read_timeout_seconds: float,
        clock: Clock,
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self._max_body_bytes = max_body_bytes
        # Exact paths whose bodies may be larger (document uploads), with their own limit.
        self._path_limits = dict(path_limits or {})
        self._timeout_ns = int(read_timeout_seconds * 1_000_000_000)
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._path_limits.get(scope["path"], self._max_body_bytes)
        declared_length: int | None = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                has_body = True
                if value.isdigit():
                    declared_length = int(value)
            elif name == b"transfer-encoding":
                has_body = True
        if declared_length is not None and declared_length > limit:
            await send_problem(send, too_large(limit), instance=scope["path"], close=True)
            return
        if not has_body or declared_length == 0:
            # RFC 9112 section 6.3: without Content-Length or Transfer-Encoding a request has
            # no body, so there is nothing to limit (the fast path for GET).
            await self.app(scope, receive, send)
            return
        request = _GuardedRequest(
            self.app,
            scope,
            receive,
            send,
            clock=self._clock,
            deadline_ns=self._clock.monotonic_ns() + self._timeout_ns,
            max_body_bytes=limit,
        )
        await request.run()


class _GuardedRequest:
    """The state of one request with a body passing through RequestBodyGuardMiddleware."""

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        clock: Clock,
        deadline_ns: int,
        max_body_bytes: int,
    ) -> None:
        self._app = app
        self._scope = scope
        self._receive = receive
        self._send = send
        self._clock = clock
        self._deadline_ns = deadline_ns
        self._max_body_bytes = max_body_bytes
        self._received = 0
        self._body_complete = False
        self._failure: TradeguardError | None = None
        self._response_started = False

    async def run(self) -> None:
        try:
            await self._app(self._scope, self.receive, self.send)
        except Exception:
            # The app may let _BodyAborted (or whatever it wrapped it in) escape; that is
            # expected once we have decided the answer. Anything else is a real error.
            if self._failure is None:
                raise
        if self._failure is not None and not self._response_started:
            await send_problem(self._send, self._failure, instance=self._scope["path"], close=True)

    async def receive(self) -> Message:
        if self._failure is not None:
            raise _BodyAborted
        if self._body_complete:
            # After the body only http.disconnect can arrive; waiting for it is not reading
            # the body and has no deadline.
            return await self._receive()
        remaining_ns = self._deadline_ns - self._clock.monotonic_ns()
        if remaining_ns <= 0:
            self._fail(RequestTimeout())
        try:
            async with asyncio.timeout(remaining_ns / 1e9):
                message = await self._receive()
        except TimeoutError:
            self._fail(RequestTimeout())
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._max_body_bytes:
                self._fail(too_large(self._max_body_bytes))
            if not message.get("more_body", False):
                self._body_complete = True
        return message

    async def send(self, message: Message) -> None:
        if self._failure is not None and not self._response_started:
            # The app answered the aborted read (FastAPI turns it into a 400); our 413/408
            # replaces that answer.
            return
        if message["type"] == "http.response.start":
            self._response_started = True
        await self._send(message)

    def _fail(self, error: TradeguardError) -> NoReturn:
        self._failure = error
        raise _BodyAborted
