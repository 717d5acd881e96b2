"""Interactive API docs (Swagger UI) served offline from the installed swagger-ui-bundle package.

Nothing is fetched from a CDN: the page, its script and its stylesheet all come from this
origin, so the page's Content-Security-Policy allows scripts and styles from 'self' only and
no inline script at all (the start-up code is a file of its own, not an inline block).
Development only: production refuses to start with the docs enabled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

import swagger_ui_bundle
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DOCS_URL: Final = "/docs"
# Swagger UI's own files, by the name it is served under and its media type.
_BUNDLE_FILES: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
INIT_SCRIPT: Final = "swagger-ui-init.js"
DOCS_ASSET_PATHS: Final = frozenset(f"{DOCS_URL}/{name}" for name in (*_BUNDLE_FILES, INIT_SCRIPT))
DOCS_PATHS: Final = frozenset({DOCS_URL, *DOCS_ASSET_PATHS})

_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} API</title>
<link rel="stylesheet" href="{docs}/swagger-ui.css">
<link rel="icon" type="image/png" href="{docs}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{docs}/swagger-ui-bundle.js"></script>
<script src="{docs}/{init}"></script>
</body>
</html>
"""


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    media_type: str


@cache
def _bundle_file(name: str) -> _Asset:
    path = Path(swagger_ui_bundle.swagger_ui_path) / name
    return _Asset(path.read_bytes(), _BUNDLE_FILES[name])


def docs_routes(*, title: str, openapi_url: str) -> list[Route]:
    """Routes for the page, its start-up script and Swagger UI's files.

    Plain Starlette routes, like the framework's own docs and schema routes: not API
    operations, not in the schema, and only present in development.
    """
    page = _PAGE.format(title=title, docs=DOCS_URL, init=INIT_SCRIPT).encode()
    init = (
        "window.ui = SwaggerUIBundle({"
        f"url: {json.dumps(openapi_url)}, dom_id: '#swagger-ui', deepLinking: true, "
        "presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout', "
        # No badge from the public online validator: the page must not reach other hosts.
        "validatorUrl: null});\n"
    ).encode()

    async def docs_page(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8")

    async def docs_init(request: Request) -> Response:
        return Response(init, media_type="text/javascript; charset=utf-8")

    def bundle_file(name: str) -> Route:
        async def serve(request: Request) -> Response:
            asset = _bundle_file(name)
            return Response(asset.body, media_type=asset.media_type)

        return Route(f"{DOCS_URL}/{name}", serve, methods=["GET"], include_in_schema=False)

    return [
        Route(DOCS_URL, docs_page, methods=["GET"], include_in_schema=False),
        Route(f"{DOCS_URL}/{INIT_SCRIPT}", docs_init, methods=["GET"], include_in_schema=False),
        *(bundle_file(name) for name in _BUNDLE_FILES),
    ]
