"""Swagger UI works offline: every asset comes from this origin, under a strict CSP."""

from __future__ import annotations

import re

import httpx

from tradeguard.web.docs import DOCS_ASSET_PATHS


class TestOfflineDocs:
    async def test_the_page_loads_only_same_origin_assets(self, client: httpx.AsyncClient) -> None:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        referenced = set(re.findall(r'(?:src|href)="([^"]+)"', page.text))
        assert referenced == DOCS_ASSET_PATHS
        assert "http" not in page.text
        assert "<script>" not in page.text  # no inline script: every script has a src

    async def test_every_asset_is_served_from_the_installed_package(
        self, client: httpx.AsyncClient
    ) -> None:
        types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
        for path in DOCS_ASSET_PATHS:
            response = await client.get(path)
            assert response.status_code == 200, path
            suffix = path[path.rindex(".") :]
            assert response.headers["content-type"].startswith(types[suffix]), path
            assert len(response.content) > 100, path
        bundle = await client.get("/docs/swagger-ui-bundle.js")
        assert b"SwaggerUIBundle" in bundle.content

    async def test_the_start_up_script_loads_our_schema(self, client: httpx.AsyncClient) -> None:
        script = (await client.get("/docs/swagger-ui-init.js")).text
        assert 'url: "/openapi.json"' in script
        assert "http" not in script

    async def test_the_page_policy_allows_only_this_origin_and_nothing_inline(
        self, client: httpx.AsyncClient
    ) -> None:
        policy = (await client.get("/docs")).headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert directives["connect-src"] == "'self'"
        assert "unsafe" not in policy
        assert "http" not in policy
