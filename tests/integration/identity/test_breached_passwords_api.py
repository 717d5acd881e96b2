"""Breached-password checks against a real HTTP range server on loopback (AUTH-1)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import PASSWORD, running_api
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.errors import ConfigurationError
from tradeguard.identity.breach_provider import http_range_fetcher

BREACHED = "violet submarine orchestra 1987"


class RangeHandler(BaseHTTPRequestHandler):
    corpus: ClassVar[dict[str, int]] = {}
    paths: ClassVar[list[str]] = []
    headers_seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        type(self).headers_seen.append(self.headers.get("Add-Padding", ""))
        prefix = self.path.rsplit("/", 1)[-1]
        lines = [f"{h[5:]}:{n}" for h, n in self.corpus.items() if h.startswith(prefix)]
        lines.append("0000000000000000000000000000000000A:0")  # padding
        body = "\r\n".join(lines).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def range_server() -> Iterator[str]:
    RangeHandler.corpus = {
        hashlib.sha1(BREACHED.encode(), usedforsecurity=False).hexdigest().upper(): 42
    }
    RangeHandler.paths = []
    RangeHandler.headers_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class TestBreachedPasswordService:
    @pytest.mark.spec("AUTH-1")
    async def test_breached_password_is_refused_and_only_a_prefix_leaves(
        self, settings: Settings, engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        with range_server() as url:
            configured = settings.model_copy(update={"breached_password_api_url": url})
            async with running_api(configured, engine, clock) as api, api.client() as client:
                refused = await client.post(
                    "/api/v1/auth/register",
                    json={"username": "frank", "email": "frank@example.com", "password": BREACHED},
                )
                accepted = await client.post(
                    "/api/v1/auth/register",
                    json={"username": "grace", "email": "grace@example.com", "password": PASSWORD},
                )
        assert refused.status_code == 422
        assert refused.json()["reason"] == "BREACHED"
        assert BREACHED not in refused.text
        assert accepted.status_code == 201
        assert all(len(p.rsplit("/", 1)[-1]) == 5 for p in RangeHandler.paths)
        assert RangeHandler.headers_seen == ["true", "true"]

    @pytest.mark.parametrize(("fail_closed", "status"), [(False, 201), (True, 503)])
    async def test_unreachable_service_fails_open_or_closed_as_configured(
        self,
        settings: Settings,
        engine: AsyncEngine,
        clock: FrozenClock,
        fail_closed: bool,
        status: int,
    ) -> None:
        with range_server() as url:
            dead = url  # the server stops when the block ends
        configured = settings.model_copy(
            update={"breached_password_api_url": dead, "breached_password_fail_closed": fail_closed}
        )
        async with running_api(configured, engine, clock) as api, api.client() as client:
            response = await client.post(
                "/api/v1/auth/register",
                json={"username": "heidi", "email": "heidi@example.com", "password": PASSWORD},
            )
        assert response.status_code == status

    def test_plain_http_to_a_remote_host_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="https"):
            http_range_fetcher("http://breach.example.com")
