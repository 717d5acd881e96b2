"""Unknown query parameters are refused on every route (422 invalid-input naming them).

A route used to ignore a query parameter it does not declare (`GET /api/v1/access/requests
?foo=1` answered as if `foo` were not there), while routes taking a query model that forbids
extra members answered 422: a client with a misspelt filter (`?stauts=pending`) silently got
everything. Every API route of an included router gets one more dependency, after its own
(so a guarded route still answers 401/403 first, and an anonymous caller learns nothing about
its parameters), that compares the request's query parameters with the ones the route
declares, its dependencies' included, and refuses the rest as the framework's own validation
does.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends
from fastapi.routing import APIRoute
from pydantic import BaseModel

UNKNOWN_PARAMETER = "Extra inputs are not permitted"
# Per route dependant (kept alive with it, so an id is never reused for another one).
_declared: dict[int, tuple[Dependant, frozenset[str]]] = {}


def declared_query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameter names a route accepts: its own and its dependencies' (a query
    model's members by alias)."""
    names: set[str] = set()
    pending = [dependant]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for field in current.query_params:
            annotation = field.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                for name, info in annotation.model_fields.items():
                    names.add(info.alias or name)
            else:
                names.add(field.alias)
        pending.extend(current.dependencies)
    return frozenset(names)


async def refuse_unknown_query(request: Request) -> None:
    """The dependency: 422 naming every query parameter the matched route does not declare.

    `async` although it waits for nothing: FastAPI runs a plain `def` dependency on a worker
    thread, two thread hand-offs per request."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if not isinstance(dependant, Dependant):
        return
    cached = _declared.get(id(dependant))
    if cached is None or cached[0] is not dependant:
        cached = _declared[id(dependant)] = (dependant, declared_query_names(dependant))
    allowed = cached[1]
    unknown = sorted({name for name in request.query_params if name not in allowed})
    if unknown:
        raise RequestValidationError(
            [
                {"type": "extra_forbidden", "loc": ("query", name), "msg": UNKNOWN_PARAMETER}
                for name in unknown
            ]
        )


def strict_query(router: APIRouter) -> APIRouter:
    """`router` with the check appended to each of its API routes (call before including it:
    the app builds a route's handler from its dependencies when first included/matched)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and not any(
            d.dependency is refuse_unknown_query for d in route.dependencies
        ):
            route.dependencies.append(Depends(refuse_unknown_query))
    return router
