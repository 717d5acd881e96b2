"""RFC 9457 problem details (application/problem+json) for every error the API returns.

Bodies never carry stack traces, request input or exception messages from outside
tradeguard: a client sees the problem type, a fixed title, a detail we wrote ourselves,
the request path (without its query string, which may hold secrets) and the request id to
quote to support.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Final, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from tradeguard.core import errors
from tradeguard.core.context import request_id_var

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"

logger = logging.getLogger("tradeguard.web.errors")

# Statuses the framework raises on its own (unknown route, wrong method, ...) mapped to our
# problem types, so clients see one vocabulary whichever layer rejected the request.
_FRAMEWORK_STATUS_ERRORS: Final[dict[int, type[errors.TradeguardError]]] = {
    error.status: error
    for error in (
        errors.BadRequest,
        errors.Unauthorized,
        errors.Forbidden,
        errors.NotFound,
        errors.MethodNotAllowed,
        errors.RequestTimeout,
        errors.Conflict,
        errors.PayloadTooLarge,
        errors.InvalidInput,
        errors.TooManyRequests,
        errors.ServiceUnavailable,
    )
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_CONTENT_TYPE


def problem_body(error: errors.TradeguardError, *, instance: str) -> dict[str, Any]:
    """The problem object for a tradeguard error, tagged with the current request id."""
    body = error.to_problem(instance=instance)
    request_id = request_id_var.get()
    if request_id is not None:
        body["request_id"] = request_id
    return body


def problem_response(
    error: errors.TradeguardError, *, instance: str, headers: dict[str, str] | None = None
) -> ProblemResponse:
    return ProblemResponse(
        problem_body(error, instance=instance), status_code=error.status, headers=headers
    )


async def send_problem(
    send: Send,
    error: errors.TradeguardError,
    *,
    instance: str,
    close: bool = False,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send a problem response straight over ASGI (for middleware outside the router)."""
    payload = json.dumps(problem_body(error, instance=instance), separators=(",", ":")).encode()
    headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(payload)).encode()),
        *extra_headers,
    ]
    if close:
        # The client may still be sending a body we refuse to read; closing the connection
        # after the response is the only way to stop it without reading it all.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _tradeguard_error_handler(request: Request, exc: Exception) -> Response:
    error = cast(errors.TradeguardError, exc)
    if error.status >= 500:
        logger.error("request failed: %s", type(error).__name__, extra={"problem": error.slug})
    return problem_response(error, instance=request.url.path)


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    http_error = cast(StarletteHTTPException, exc)
    status = http_error.status_code
    error_class = _FRAMEWORK_STATUS_ERRORS.get(status)
    if error_class is not None:
        body = problem_body(error_class(), instance=request.url.path)
    else:
        # A status we have no problem type for: RFC 9457 section 4.2.1 "about:blank",
        # titled with the standard reason phrase.
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
        body = {"type": "about:blank", "title": title, "status": status}
        body["instance"] = request.url.path
        request_id = request_id_var.get()
        if request_id is not None:
            body["request_id"] = request_id
    # Framework-supplied headers (Allow on 405, WWW-Authenticate on 401) are protocol
    # metadata, not input, so they pass through.
    return ProblemResponse(body, status_code=status, headers=http_error.headers)


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    validation_error = cast(RequestValidationError, exc)
    # Only where and what: pydantic's "input" and "ctx" members echo what the client sent,
    # which may be a password, a card number or a token.
    details = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in validation_error.errors()
    ]
    error = errors.InvalidInput("The request did not pass validation", errors=details)
    return problem_response(error, instance=request.url.path)


def install_problem_handlers(app: FastAPI) -> None:
    """Render tradeguard errors, HTTP errors and validation errors as problem+json.

    Unhandled exceptions become a generic 500 in the request middleware, which sits
    outside the router and so also covers errors raised by inner middleware.
    """
    app.add_exception_handler(errors.TradeguardError, _tradeguard_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
