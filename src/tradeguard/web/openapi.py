"""The OpenAPI document: what each operation answers, errors included, as the code behaves.

FastAPI's generated document is completed here rather than by hand in every decorator:

- every error response (4xx, 5xx) is `application/problem+json` with the real RFC 9457
  schema (`Problem`, `ValidationProblem` for 422, `ThrottledProblem` for 429, which also
  documents Retry-After; FastAPI's `HTTPValidationError` is never what the API sends);
- the errors every operation of a kind can answer are added from what it declares: 401 and
  403 for guarded routes (with the `bearerAuth` scheme and WWW-Authenticate), 404 for routes
  with path parameters, 422 for routes with input, 400/413/415 for routes with a JSON body;
  route-specific ones (409, 429, ...) come from the route's `responses`;
- a summary is the route's own `summary=` or the first line of its docstring;
- operation ids are the route's `operation_id=` (readable names such as `auth.login`) or a
  name made from its path; two operations with one id stop the document being built.
"""

from __future__ import annotations

import inspect
import re
import warnings
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from tradeguard.core.errors import ConfigurationError
from tradeguard.web.problems import (
    PROBLEM_CONTENT_TYPE,
    FieldError,
    MalformedJsonProblem,
    Problem,
    ThrottledProblem,
    ValidationProblem,
)
from tradeguard.web.route_policy import PERMISSION_EXTENSION, PUBLIC

BEARER_SCHEME: Final = "bearerAuth"
OPERATION_ID_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
_SCHEMA_REF: Final = "#/components/schemas/{model}"
_PROBLEM_MODELS: Final = (Problem, FieldError, ValidationProblem, ThrottledProblem)
_BODY_PROBLEMS: Final = {
    400: ("MalformedJsonProblem", "The body is not valid JSON (says where, never echoes it)"),
    413: ("Problem", "The body is larger than the configured limit (the detail states it)"),
    415: ("Problem", "The body is not sent as application/json"),
}
_DESCRIPTIONS: Final = {
    401: "No access token, or it is invalid, expired or revoked; or the credentials or code "
    "in the body were refused",
    403: "The session lacks the permission this operation declares, or a step-up is needed",
    404: "No such resource (or not yours)",
    422: "Some fields are not valid; `errors` names them without echoing their values",
    429: "Too many attempts; wait Retry-After seconds",
}


def operation_id_from_path(route: APIRoute) -> str:
    """A readable id for a route that does not name its own: `GET /api/v1/auth/me` ->
    `auth.me.get`."""
    path = route.path_format.removeprefix("/api/v1")
    methods = route.methods or set()
    words = [
        re.sub(r"[^a-z0-9_]", "_", segment.strip("{}").lower())
        for segment in path.strip("/").split("/")
        if segment
    ]
    return ".".join([*words, *sorted(m.lower() for m in methods)])


def install_openapi(app: FastAPI, *, description: str) -> None:
    """Replace `app.openapi` with the completed document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, description=description)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI, *, description: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        # FastAPI only warns about a duplicate id; a document with one is refused here.
        warnings.filterwarnings("error", message="Duplicate Operation ID", category=UserWarning)
        try:
            document = get_openapi(
                title=app.title, version=app.version, description=description, routes=app.routes
            )
        except UserWarning as duplicate:
            raise ConfigurationError(f"{duplicate}: an operation id is already used") from None
    routes: dict[tuple[str, str], APIRoute] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path:
            for method in context.methods or ():
                routes[(context.path, method.lower())] = route
    components = document.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for model in (*_PROBLEM_MODELS, MalformedJsonProblem):
        schema = model.model_json_schema(ref_template=_SCHEMA_REF)
        for name, nested in schema.pop("$defs", {}).items():
            schemas.setdefault(name, nested)
        schemas[model.__name__] = schema
    components["securitySchemes"] = {
        BEARER_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from POST /api/v1/auth/login (or mfa/verify)",
        }
    }
    seen: dict[str, str] = {}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            _describe(operation, routes.get((path, method)))
            _check_operation_id(operation["operationId"], f"{method.upper()} {path}", seen)
            _complete_errors(operation)
    return document


def _describe(operation: dict[str, Any], route: APIRoute | None) -> None:
    if route is None or route.summary:
        return
    doc = inspect.cleandoc(route.description or "")
    first, _, rest = doc.partition("\n")
    if first:
        operation["summary"] = first.rstrip(".")
        rest = rest.strip()
        if rest:
            operation["description"] = rest
        else:
            operation.pop("description", None)


def _check_operation_id(operation_id: str, where: str, seen: dict[str, str]) -> None:
    if not OPERATION_ID_PATTERN.fullmatch(operation_id):
        raise ConfigurationError(f"{where}: operation id {operation_id!r} is not dotted lowercase")
    if operation_id in seen:
        raise ConfigurationError(
            f"{where}: operation id {operation_id!r} is already used by {seen[operation_id]}"
        )
    seen[operation_id] = where


def _complete_errors(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    guarded = operation.get(PERMISSION_EXTENSION) not in {None, PUBLIC}
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    if guarded:
        operation["security"] = [{BEARER_SCHEME: []}]
        for status in (401, 403):
            responses.setdefault(str(status), {})
    else:
        operation["security"] = []
    if any(p.get("in") == "path" for p in parameters):
        responses.setdefault("404", {})
    if parameters or has_body:
        responses.setdefault("422", {})  # its content (HTTPValidationError) is replaced below
    if has_body:
        for status in _BODY_PROBLEMS:
            responses.setdefault(str(status), {})
    for key, response in responses.items():
        if key.isdigit() and int(key) >= 400:
            responses[key] = _problem_response(int(key), response)


def _problem_response(status: int, response: dict[str, Any]) -> dict[str, Any]:
    schema_name = "Problem"
    description = _DESCRIPTIONS.get(status) or HTTPStatus(status).phrase
    if status == 422:
        schema_name = "ValidationProblem"
    elif status == 429:
        schema_name = "ThrottledProblem"
    elif status in _BODY_PROBLEMS:
        schema_name, description = _BODY_PROBLEMS[status]
    given = response.get("description")
    # FastAPI fills in the bare reason phrase (or "Validation Error"); ours say more.
    if given in {None, "", HTTPStatus(status).phrase, "Validation Error"}:
        given = description
    documented: dict[str, Any] = {
        "description": given,
        "content": {
            PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _SCHEMA_REF.format(model=schema_name)}}
        },
    }
    headers = dict(response.get("headers", {}))
    if status == 429:
        headers["Retry-After"] = {
            "description": "Seconds to wait before trying again (RFC 9110 section 10.2.3)",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    if status == 401:
        headers["WWW-Authenticate"] = {
            "description": 'Bearer challenge; error="invalid_token" or "invalid_request" '
            "when the access token itself was refused (RFC 6750 section 3)",
            "required": True,
            "schema": {"type": "string"},
        }
    if headers:
        documented["headers"] = headers
    return documented
