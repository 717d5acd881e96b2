"""Which route a path belongs to, and which methods it allows (RFC 9110 sections 9.3.7, 15.5.6).

The framework router takes the first route whose pattern matches, so `DELETE
/api/v1/auth/mfa/backup-codes` used to land on `DELETE /api/v1/auth/mfa/{factor_id}` (and
failed there with a 401 or 422) instead of getting the 405 that a path served only by `POST`
deserves. Here a path belongs to the most specific templates that match it: at the first
segment where two templates differ, a fixed name beats a parameter. Only methods of those
templates are allowed; a 405 or an OPTIONS answer lists every one of them in `Allow`.

A route table in which an earlier parameter route would still capture a later fixed route of
the same method cannot be fixed at request time, so it is refused when the table is built.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from tradeguard.core.errors import ConfigurationError, MethodNotAllowed
from tradeguard.web.problems import send_problem

# Conventional order for Allow (RFC 9110 section 9 lists them so).
_METHOD_ORDER: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ROUTE_TEMPLATE_KEY: Final = "tradeguard.route_template"
_PARAMETER: Final = re.compile(r"{([^}:]+)(?::([^}]+))?}")
# A value each Starlette convertor accepts, to test whether one template captures another.
_SAMPLE_VALUES: Final = {
    "str": "x",
    "path": "x",
    "int": "0",
    "float": "0",
    "uuid": "00000000-0000-0000-0000-000000000000",
}
# Segment ranks: lower is more specific.
_FIXED, _MIXED, _PARAMETER_SEGMENT, _PATH_PARAMETER = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    path: str
    methods: frozenset[str]
    order: int
    regex: re.Pattern[str]
    rank: tuple[int, ...]

    @classmethod
    def of(cls, path: str, methods: Iterable[str], order: int) -> RouteTemplate:
        regex, _, _ = compile_path(path)
        return cls(path, frozenset(methods), order, regex, _rank(path))

    @property
    def is_fixed(self) -> bool:
        return all(rank == _FIXED for rank in self.rank)

    def sample_path(self) -> str:
        """A concrete path this template matches (each parameter filled with a valid value)."""
        return _PARAMETER.sub(lambda m: _SAMPLE_VALUES.get(m.group(2) or "str", "x"), self.path)


def _rank(path: str) -> tuple[int, ...]:
    ranks: list[int] = []
    for segment in path.strip("/").split("/"):
        parameter = _PARAMETER.search(segment)
        if parameter is None:
            ranks.append(_FIXED)
        elif parameter.group(2) == "path":
            # Spans the rest of the path: nothing after it can be compared segment by segment.
            ranks.append(_PATH_PARAMETER)
            break
        elif _PARAMETER.fullmatch(segment):
            ranks.append(_PARAMETER_SEGMENT)
        else:
            ranks.append(_MIXED)
    return tuple(ranks)


def allow_header(methods: Iterable[str]) -> str:
    listed = {*methods, "OPTIONS"}
    ordered = [m for m in _METHOD_ORDER if m in listed]
    return ", ".join(ordered + sorted(listed - set(_METHOD_ORDER)))


class RouteTable:
    """The app's HTTP routes by path template, resolved by specificity."""

    def __init__(self, templates: Sequence[RouteTemplate]) -> None:
        self._fixed: dict[str, frozenset[str]] = {}
        merged: dict[str, RouteTemplate] = {}
        for template in templates:
            known = merged.get(template.path)
            merged[template.path] = (
                template
                if known is None
                else RouteTemplate(
                    known.path,
                    known.methods | template.methods,
                    known.order,
                    known.regex,
                    known.rank,
                )
            )
        for template in merged.values():
            if template.is_fixed:
                self._fixed[template.path] = template.methods
        self._parametric = sorted(
            (t for t in merged.values() if not t.is_fixed), key=lambda t: t.rank
        )
        _refuse_captured_routes(tuple(templates))

    @classmethod
    def of_routes(cls, routes: Sequence[BaseRoute]) -> RouteTable:
        templates = [
            RouteTemplate.of(context.path, context.methods, order)
            for order, context in enumerate(iter_route_contexts(routes))
            # Mounts and WebSocket routes have no method set; the router handles them.
            if context.path and context.methods
        ]
        return cls(templates)

    def resolve(self, path: str) -> tuple[str, frozenset[str]] | None:
        """The most specific template matching `path` and the methods allowed there."""
        fixed = self._fixed.get(path)
        if fixed is not None:
            return path, fixed
        best: tuple[int, ...] | None = None
        template_path = ""
        methods: set[str] = set()
        for template in self._parametric:
            if best is not None and template.rank > best:
                break  # sorted by rank: every later template is less specific
            if template.regex.match(path):
                best = template.rank
                template_path = template_path or template.path
                methods |= template.methods
        return None if best is None else (template_path, frozenset(methods))


@functools.lru_cache(maxsize=8)
def _refuse_captured_routes(templates: tuple[RouteTemplate, ...]) -> None:
    """A parameter route registered before a more specific route of the same method would
    capture its requests (the router takes the first match): refuse such a table. The check
    compares every pair; a table already found sound is not checked again (the test suite
    starts an app per test, all with the same routes)."""
    for earlier in templates:
        for later in templates:
            if (
                later.order > earlier.order
                and later.rank < earlier.rank
                and earlier.methods & later.methods
                and earlier.regex.match(later.sample_path())
            ):
                raise ConfigurationError(
                    f"route {sorted(earlier.methods & later.methods)} {earlier.path} is "
                    f"registered before {later.path} and would capture its requests; "
                    "register the fixed path first"
                )


class RouteResolutionMiddleware:
    """Answer OPTIONS and wrong-method requests for known paths; pass the rest to the router.

    Sits inside the body guard and the request context, so its answers get security headers,
    a request id and metrics like any other response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._table: RouteTable | None = None
        self._built_from: int = -1

    def table(self, scope: Scope) -> RouteTable:
        routes: Sequence[BaseRoute] = scope["app"].routes
        # Rebuilt when routes were added after the first request (tests add some).
        if self._table is None or self._built_from != len(routes):
            self._table = RouteTable.of_routes(routes)
            self._built_from = len(routes)
        return self._table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The path as routes see it (no root_path: the app is never mounted under a prefix).
        resolved = self.table(scope).resolve(scope["path"])
        if resolved is None:
            await self.app(scope, receive, send)  # the router's 404 (or a mount)
            return
        template, methods = resolved
        method: str = scope["method"]
        if method in methods:
            await self.app(scope, receive, send)
            return
        scope[ROUTE_TEMPLATE_KEY] = template
        allow = allow_header(methods)
        if method == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [(b"allow", allow.encode("ascii"))],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        error = MethodNotAllowed(f"{template} allows {allow}")
        await send_problem(send, error, instance=scope["path"], headers={"Allow": allow})
