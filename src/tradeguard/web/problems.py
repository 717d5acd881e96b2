"""RFC 9457 problem details (application/problem+json) for every error the API returns.

Bodies never carry stack traces, request input or exception messages from outside
tradeguard: a client sees the problem type, a fixed title, a detail we wrote ourselves,
the request path (without its query string, which may hold secrets) and the request id to
quote to support.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, Final, Literal, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from tradeguard.core import errors
from tradeguard.core.context import request_id_var
from tradeguard.web.logging import redact_client_key, redact_text

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
JSON_CONTENT_TYPE: Final = "application/json"

logger = logging.getLogger("tradeguard.web.errors")

# Statuses the framework raises on its own (unknown route, wrong method, ...) mapped to our
# problem types, so clients see one vocabulary whichever layer rejected the request. (No 429:
# only tradeguard throttles, and they always know the Retry-After to send.)
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
        errors.UnsupportedMediaType,
        errors.InvalidInput,
        errors.ServiceUnavailable,
    )
}
# What the stdlib JSON parser says (json.decoder / _json scanner). Only these fixed phrases are
# passed on: a message from any other parser could quote the document.
_JSON_PARSER_MESSAGES: Final = frozenset(
    {
        "Expecting value",
        "Expecting property name enclosed in double quotes",
        "Expecting ',' delimiter",
        "Expecting ':' delimiter",
        "Unterminated string starting at",
        "Invalid control character at",
        "Invalid \\escape",
        "Invalid \\uXXXX escape",
        "Extra data",
        "Illegal trailing comma before end of object",
        "Illegal trailing comma before end of array",
    }
)
# FastAPI's answer when the body cannot even be decoded (not UTF-8/16/32).
_UNREADABLE_BODY_DETAIL: Final = "There was an error parsing the body"
SEND_JSON: Final = "send the request body as JSON with the header Content-Type: application/json"


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response of the API carries them."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(description="URI naming the problem type; stable, safe to branch on")
    title: str = Field(description="Short summary of the problem type")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What went wrong and what to do next")
    instance: str | None = Field(default=None, description="The request path")
    request_id: str | None = Field(default=None, description="Quote this to support")


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid", title="FieldError")

    loc: list[str] = Field(description='Where: ["body", "password"], ["path", "device_id"]')
    msg: str = Field(description="What is wrong (the value itself is never echoed)")


class ValidationProblem(Problem):
    """A 422: the request was well-formed but some fields are not valid."""

    model_config = ConfigDict(extra="allow", title="ValidationProblem")

    status: Literal[422] = 422
    errors: list[FieldError] | None = None


class ThrottledProblem(Problem):
    """A 429: also sent as the Retry-After header."""

    model_config = ConfigDict(extra="allow", title="ThrottledProblem")

    status: Literal[429] = 429
    retry_after_seconds: int = Field(ge=1, description="Seconds to wait before trying again")


class MalformedJsonProblem(Problem):
    """A 400 for a body that is not JSON: where the parser stopped, never what it read."""

    model_config = ConfigDict(extra="allow", title="MalformedJsonProblem")

    status: Literal[400] = 400
    line: int | None = Field(default=None, ge=1)
    column: int | None = Field(default=None, ge=1)


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_CONTENT_TYPE


def _scrubbed_instance(path: str) -> str:
    """The request path as the problem's `instance`, with anything that looks like a card
    number, tax id, token or email address masked: a client that puts one in a path segment
    (`/cards/4111111111111111`) must not get it back in the error, nor have it logged."""
    return redact_text(path)


def problem_body(error: errors.TradeguardError, *, instance: str) -> dict[str, Any]:
    """The problem object for a tradeguard error, tagged with the current request id."""
    body = error.to_problem(instance=_scrubbed_instance(instance))
    if error.operator_detail:
        # The client reads the title only (no key names, versions, classes or files): the
        # detail is logged, under the request id the client can quote.
        logger.error(
            "problem detail withheld from the client: %s: %s",
            error.slug,
            redact_text(error.detail),
            extra={"problem": error.slug},
        )
    request_id = request_id_var.get()
    if request_id is not None:
        body["request_id"] = request_id
    return body


def problem_response(
    error: errors.TradeguardError, *, instance: str, headers: dict[str, str] | None = None
) -> ProblemResponse:
    return ProblemResponse(
        problem_body(error, instance=instance),
        status_code=error.status,
        headers={**error.headers(), **(headers or {})},
    )


async def send_problem(
    send: Send,
    error: errors.TradeguardError,
    *,
    instance: str,
    close: bool = False,
    headers: dict[str, str] | None = None,
) -> None:
    """Send a problem response straight over ASGI (for middleware outside the router)."""
    payload = json.dumps(problem_body(error, instance=instance), separators=(",", ":")).encode()
    fields = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(payload)).encode()),
        *(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in {**error.headers(), **(headers or {})}.items()
        ),
    ]
    if close:
        # The client may still be sending a body we refuse to read; closing the connection
        # after the response is the only way to stop it without reading it all.
        fields.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": fields})
    await send({"type": "http.response.body", "body": payload})


async def _tradeguard_error_handler(request: Request, exc: Exception) -> Response:
    error = cast(errors.TradeguardError, exc)
    if error.status >= 500 and not error.operator_detail:  # else problem_body logs it
        logger.error("request failed: %s", type(error).__name__, extra={"problem": error.slug})
    return problem_response(error, instance=request.url.path)


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    http_error = cast(StarletteHTTPException, exc)
    status = http_error.status_code
    error_class = _FRAMEWORK_STATUS_ERRORS.get(status)
    if status == 400 and http_error.detail == _UNREADABLE_BODY_DETAIL:
        error = errors.MalformedJson(
            "The request body could not be decoded: " + SEND_JSON + " (UTF-8)"
        )
        return problem_response(error, instance=request.url.path)
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
        body["instance"] = _scrubbed_instance(request.url.path)
        request_id = request_id_var.get()
        if request_id is not None:
            body["request_id"] = request_id
    # Framework-supplied headers (Allow on 405, WWW-Authenticate on 401) are protocol
    # metadata, not input, so they pass through.
    return ProblemResponse(body, status_code=status, headers=http_error.headers)


def _json_position(document: object, position: object) -> tuple[int, int] | None:
    """1-based line and column of a character offset into the document, if both are known."""
    if not isinstance(position, int) or position < 0:
        return None
    if isinstance(document, bytes | bytearray):
        document = bytes(document).decode("utf-8", errors="replace")
    if not isinstance(document, str):
        return None
    before = document[:position]
    line = before.count("\n") + 1
    column = position - (before.rfind("\n") + 1) + 1
    return line, column


def _malformed_json(validation_error: RequestValidationError) -> errors.MalformedJson | None:
    """The 400 for a body that failed JSON parsing, or None if that is not what happened."""
    for error in validation_error.errors():
        if error.get("type") != "json_invalid":
            continue
        loc = error.get("loc", ())
        ctx = error.get("ctx") or {}
        message = ctx.get("error") if isinstance(ctx, dict) else None
        where = _json_position(validation_error.body, loc[1] if len(loc) > 1 else None)
        what = message if message in _JSON_PARSER_MESSAGES else "Not valid JSON"
        if where is None:
            return errors.MalformedJson(f"The request body is not valid JSON: {what}")
        line, column = where
        return errors.MalformedJson(
            f"The request body is not valid JSON: {what} (line {line}, column {column})",
            line=line,
            column=column,
        )
    return None


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    validation_error = cast(RequestValidationError, exc)
    malformed = _malformed_json(validation_error)
    if malformed is not None:
        return problem_response(malformed, instance=request.url.path)
    if isinstance(validation_error.body, bytes | bytearray):
        # FastAPI hands a route its body as JSON only when the Content-Type says JSON; raw
        # bytes reaching validation mean the client sent some other type, or none at all.
        error: errors.TradeguardError = errors.UnsupportedMediaType(SEND_JSON)
        return problem_response(error, instance=request.url.path)
    # Only where and what: pydantic's "input" and "ctx" members echo what the client sent,
    # which may be a password, a card number or a token. The location echoes the client's
    # own key names (an unknown field) and the message a validator's text, so both are
    # scrubbed too: a card number sent as a key must not come back.
    details = [
        {
            "loc": [redact_client_key(str(part)) for part in error.get("loc", ())],
            "msg": redact_text(str(error.get("msg", ""))),
        }
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
