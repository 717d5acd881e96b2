"""How a route declares its permission, in a form the route-table audit can read.

Security invariant 1 (ARCHITECTURE.md) is deny by default: every route states the permission
it needs or that it is public. The declaration lives in the route's OpenAPI extension
`x-permission` (FastAPI `openapi_extra`), so one value is visible in three places: at the
decorator, in the OpenAPI document, and on the route object, where `route_permissions(app)`
reads it for every route the app serves (routes of included routers too)::

    @router.get("/health/live", openapi_extra=public())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from tradeguard.identity.guard import WEBSOCKET_PERMISSION_ATTRIBUTE

PERMISSION_EXTENSION: Final = "x-permission"
PUBLIC: Final = "public"


@dataclass(frozen=True, slots=True)
class DeclaredRoute:
    path: str
    methods: frozenset[str]
    permission: str | None


def public() -> dict[str, Any]:
    """`openapi_extra` for a route that anyone may call without authentication."""
    return {PERMISSION_EXTENSION: PUBLIC}


def declared_permission(route: object) -> str | None:
    """The permission a route declares ("public" or a permission name), or None if none."""
    extra = getattr(route, "openapi_extra", None)
    if isinstance(extra, dict):
        value = extra.get(PERMISSION_EXTENSION)
        return value if isinstance(value, str) else None
    # WebSocket routes have no OpenAPI entry: their endpoint carries the declaration.
    declared = getattr(getattr(route, "endpoint", None), WEBSOCKET_PERMISSION_ATTRIBUTE, None)
    return declared if isinstance(declared, str) else None


def route_permissions(app: FastAPI) -> list[DeclaredRoute]:
    """Every route of the app with its full path, methods and declared permission.

    Framework routes (the development-only API docs) have no declaration and show None.
    """
    return [
        DeclaredRoute(
            path=context.path or "",
            methods=frozenset(context.methods or ()),
            permission=declared_permission(context),
        )
        for context in iter_route_contexts(app.routes)
    ]
