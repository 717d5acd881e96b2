"""Route resolution: a fixed path segment beats a parameter; 405 and OPTIONS list every
method of the path (RFC 9110 sections 9.3.7 and 15.5.6)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.unit.web.conftest import serving
from tradeguard.core.errors import PROBLEM_BASE, ConfigurationError
from tradeguard.web.problems import PROBLEM_CONTENT_TYPE
from tradeguard.web.routing import RouteTable, RouteTemplate, allow_header


def table(*routes: tuple[str, str]) -> RouteTable:
    return RouteTable(
        [RouteTemplate.of(path, {method}, order) for order, (method, path) in enumerate(routes)]
    )


class TestRouteTable:
    def test_a_fixed_segment_is_never_captured_by_a_parameter(self) -> None:
        routes = table(("DELETE", "/mfa/{factor_id}"), ("POST", "/mfa/backup-codes"))
        assert routes.resolve("/mfa/backup-codes") == ("/mfa/backup-codes", {"POST"})
        assert routes.resolve("/mfa/0190a3b4") == ("/mfa/{factor_id}", {"DELETE"})

    def test_methods_of_every_route_of_the_path_are_allowed(self) -> None:
        routes = table(
            ("POST", "/devices/{device_id}"),
            ("DELETE", "/devices/{device_id}"),
            ("GET", "/devices"),
        )
        assert routes.resolve("/devices/d-1") == ("/devices/{device_id}", {"POST", "DELETE"})
        assert routes.resolve("/devices") == ("/devices", {"GET"})

    def test_the_first_differing_segment_decides(self) -> None:
        routes = table(
            ("GET", "/a/{x}/b"),
            ("PUT", "/a/fixed/{y}"),
        )
        assert routes.resolve("/a/fixed/b") == ("/a/fixed/{y}", {"PUT"})
        assert routes.resolve("/a/other/b") == ("/a/{x}/b", {"GET"})

    def test_an_unknown_path_resolves_to_nothing(self) -> None:
        routes = table(("GET", "/devices"), ("DELETE", "/devices/{device_id}"))
        assert routes.resolve("/nothing") is None
        assert routes.resolve("/devices/a/b") is None

    def test_a_parameter_route_registered_before_a_fixed_one_of_its_method_is_refused(
        self,
    ) -> None:
        with pytest.raises(ConfigurationError, match="register the fixed path first"):
            table(("GET", "/items/{item_id}"), ("GET", "/items/special"))

    def test_a_fixed_route_registered_first_is_fine(self) -> None:
        routes = table(("GET", "/items/special"), ("GET", "/items/{item_id}"))
        assert routes.resolve("/items/special") == ("/items/special", {"GET"})

    def test_allow_lists_methods_in_the_usual_order_with_options(self) -> None:
        assert allow_header({"DELETE", "POST", "GET"}) == "GET, POST, DELETE, OPTIONS"


class TestMethodResolutionOverHttp:
    async def test_delete_on_a_fixed_path_served_only_by_post_is_405_not_the_parameter_route(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.delete("/api/v1/auth/mfa/backup-codes")
        assert response.status_code == 405
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        assert response.json()["type"] == PROBLEM_BASE + "method-not-allowed"
        assert response.headers["allow"] == "POST, OPTIONS"

    async def test_405_lists_the_methods_of_every_route_of_the_path(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.patch("/api/v1/auth/devices/0190a3b4-5c6d")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST, DELETE, OPTIONS"

    async def test_options_answers_204_with_every_documented_method(
        self, client: httpx.AsyncClient
    ) -> None:
        allowlist = await client.options("/api/v1/auth/ip-allowlist")
        factor = await client.options("/api/v1/auth/mfa/0190a3b4-5c6d")
        unknown = await client.options("/api/v1/nothing-here")
        assert allowlist.status_code == 204
        assert allowlist.headers["allow"] == "GET, PUT, OPTIONS"
        assert allowlist.content == b""
        assert allowlist.headers["cache-control"] == "no-store"
        assert factor.headers["allow"] == "DELETE, OPTIONS"
        assert unknown.status_code == 404

    async def test_options_and_405_agree_with_the_openapi_document(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()
        for path, item in document["paths"].items():
            concrete = path.replace("{", "x").replace("}", "")
            documented = {method.upper() for method in item}
            response = await client.options(concrete)
            assert set(response.headers["allow"].split(", ")) == documented | {"OPTIONS"}, path
            undocumented = next(
                m for m in ("PATCH", "PUT", "DELETE", "POST", "GET") if m not in documented
            )
            refused = await client.request(undocumented, concrete)
            assert refused.status_code == 405, path
            assert refused.headers["allow"] == response.headers["allow"]

    async def test_a_405_is_counted_under_its_route_template(
        self, client: httpx.AsyncClient
    ) -> None:
        await client.patch("/api/v1/auth/devices/dev-55512")
        metrics = (await client.get("/metrics")).text
        assert 'route="/api/v1/auth/devices/{device_id}",status="405"' in metrics
        assert "dev-55512" not in metrics

    async def test_an_app_whose_routes_capture_each_other_does_not_start(
        self, app: FastAPI
    ) -> None:
        @app.get("/items/{item_id}")
        async def item(item_id: str) -> None:
            return None

        @app.get("/items/special")
        async def special() -> None:
            return None

        with pytest.raises(ConfigurationError, match="/items/special"):
            async with serving(app):
                pass
