"""An undeclared query parameter is a 422 invalid-input problem naming it, on every route
(L2): `GET /api/v1/access/requests?foo=1` and `GET /api/v1/backoffice/users?bogus=1` used to
answer as if the parameter were not there, while `/api/v1/me/access-log` refused it. A
guarded route still answers 401 first."""

from __future__ import annotations

import httpx
from fastapi.routing import APIRoute, iter_route_contexts

from tests.support.access import staff
from tests.support.api import Api, is_problem
from tests.support.cases import Cases
from tradeguard.access.domain import Role
from tradeguard.web.query_parameters import declared_query_names, refuse_unknown_query


def unknown_named(response: httpx.Response, *names: str) -> bool:
    return is_problem(response, 422, "invalid-input") and [
        e["loc"] for e in response.json()["errors"]
    ] == [["query", name] for name in names]


UNDECLARED: dict[str, tuple[str, dict[str, str]]] = {
    "access-list": ("/api/v1/access/requests", {"foo": "1"}),
    "misspelt-filter": ("/api/v1/access/requests", {"status": "pending", "stauts": "approved"}),
    "backoffice-users": ("/api/v1/backoffice/users", {"bogus": "1"}),
    "halts": ("/api/v1/admin/halts", {"limit": "5", "x": ""}),
    "access-log": ("/api/v1/me/access-log", {"foo": "1"}),
}


class TestUnknownQueryParameters:
    async def test_an_undeclared_parameter_is_refused_and_named(self, api: Api) -> None:
        cases = Cases()
        async with api.client() as client:
            ada = await staff(api, client, "ada", Role.ADMIN)
            for case_id, (path, params) in UNDECLARED.items():
                response = await ada.get(path, params=params)
                declared = {
                    k: v for k, v in params.items() if k not in {"foo", "stauts", "bogus", "x"}
                }
                fine = await ada.get(path, params=declared)
                unknown = sorted(set(params) - set(declared))
                with cases.case(case_id):
                    assert unknown_named(response, *unknown), response.text
                    # The value is never echoed.
                    assert "approved" not in response.text
                    assert fine.status_code == 200, fine.text
        cases.check()

    async def test_several_unknown_parameters_are_all_named(self, api: Api) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", Role.ADMIN)
            response = await ada.get("/api/v1/backoffice/users", params={"zz": "1", "aa": "2"})
        assert unknown_named(response, "aa", "zz"), response.text

    async def test_a_guarded_route_answers_401_before_judging_parameters(self, api: Api) -> None:
        async with api.client() as client:
            response = await client.get("/api/v1/access/requests", params={"foo": "1"})
        assert is_problem(response, 401, "unauthorized"), response.text

    async def test_health_probes_and_emailed_link_pages_are_not_held_to_it(self, api: Api) -> None:
        async with api.client() as client:
            probe = await client.get("/health/live", params={"nocache": "1"})
            page = await client.get("/verify-email", params={"utm_source": "mail"})
        assert probe.status_code == 200, probe.text
        assert page.status_code != 422, page.text

    def test_every_route_declares_what_its_dependencies_take(self, api: Api) -> None:
        routes = {
            (route.path, method): route
            for context in iter_route_contexts(api.app.routes)
            if isinstance(route := context.original_route, APIRoute)
            for method in route.methods
        }
        assert len(routes) > 50
        # A query model's members, by alias.
        assert declared_query_names(routes["/api/v1/me/access-log", "GET"].dependant) >= {
            "cursor",
            "limit",
        }
        assert "status" in declared_query_names(routes["/api/v1/access/requests", "GET"].dependant)
        # Every API route carries the check, after its own dependencies (the guard first).
        for (path, _), route in routes.items():
            exempt = route.endpoint.__module__ in {"tradeguard.web.health", "tradeguard.web.pages"}
            if not exempt:
                assert route.dependencies[-1].dependency is refuse_unknown_query, path
