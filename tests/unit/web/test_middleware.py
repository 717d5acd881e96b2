"""Edge middleware: security headers, request ids, body size and time limits, last-resort 500."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message

from tests.unit.web.conftest import serving, settings_with
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.web.app import create_app
from tradeguard.web.logging import RedactionFilter
from tradeguard.web.problems import PROBLEM_CONTENT_TYPE

SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}
UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(settings: Settings, clock: FrozenClock, sqlite_engine: AsyncEngine) -> AppFactory:
    """An app with test routes, built from the test settings with some values changed."""

    def build(**changes: Any) -> FastAPI:
        app = create_app(settings_with(settings, **changes), clock=clock, engine=sqlite_engine)

        @app.post("/echo")
        async def echo(request: Request) -> dict[str, int]:
            return {"length": len(await request.body())}

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("lost connection to db password=hunter2 user=alice@example.com")

        return app

    return build


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert "permissions-policy" in response.headers
    assert "server" not in response.headers


async def drive(app: FastAPI, receive: Callable[[], Any], *, path: str = "/echo") -> list[Message]:
    """Call the ASGI app directly with a hand-written receive channel."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
    }
    await app(scope, receive, send)
    return sent


def response_status(sent: list[Message]) -> int:
    start = next(m for m in sent if m["type"] == "http.response.start")
    return int(start["status"])


def response_headers(sent: list[Message]) -> dict[bytes, bytes]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    return dict(start["headers"])


class TestSecurityHeaders:
    @pytest.mark.spec("TLS-2")
    async def test_present_on_success(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live")
        assert response.status_code == 200
        assert_security_headers(response)

    @pytest.mark.spec("TLS-2")
    async def test_present_on_unknown_route(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/no/such/route")
        assert response.status_code == 404
        assert_security_headers(response)

    @pytest.mark.spec("TLS-2")
    async def test_present_on_rejected_body_and_on_crash(self, make_app: AppFactory) -> None:
        async with serving(make_app(max_body_bytes=1024)) as client:
            too_large = await client.post("/echo", content=b"x" * 2048)
            crashed = await client.get("/boom")
        assert too_large.status_code == 413
        assert crashed.status_code == 500
        assert_security_headers(too_large)
        assert_security_headers(crashed)

    @pytest.mark.spec("TLS-2")
    async def test_docs_page_gets_its_own_policy_still_denying_framing(
        self, make_app: AppFactory
    ) -> None:
        async with serving(make_app(enable_api_docs=True)) as client:
            response = await client.get("/docs")
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy
        assert "default-src 'none'" in policy
        assert response.headers["strict-transport-security"]


class TestRequestId:
    @pytest.mark.spec("IAC-4")
    async def test_well_formed_incoming_id_is_echoed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live", headers={"X-Request-ID": "edge-42.a_B"})
        assert response.headers["x-request-id"] == "edge-42.a_B"

    @pytest.mark.spec("IAC-4")
    async def test_missing_id_is_generated_as_uuid7(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health/live")
        assert UUID7.fullmatch(response.headers["x-request-id"])

    @pytest.mark.spec("IAC-4")
    @pytest.mark.parametrize(
        "incoming",
        ["x" * 65, "has space", 'quote"d', "semi;colon", "ünïcode", "{json}", ""],
    )
    async def test_malformed_incoming_id_is_replaced(
        self, client: httpx.AsyncClient, incoming: str
    ) -> None:
        response = await client.get(
            "/health/live", headers=[(b"X-Request-ID", incoming.encode("utf-8"))]
        )
        assert UUID7.fullmatch(response.headers["x-request-id"])

    @pytest.mark.parametrize("incoming", ["4111111111111111", "4111-1111-1111-1111", "078-05-1120"])
    async def test_an_id_that_looks_like_a_card_number_or_tax_id_is_replaced_not_echoed(
        self, client: httpx.AsyncClient, incoming: str
    ) -> None:
        response = await client.get("/missing", headers={"X-Request-ID": incoming})
        assert UUID7.fullmatch(response.headers["x-request-id"])
        assert incoming not in response.text
        assert response.json()["request_id"] == response.headers["x-request-id"]

    @pytest.mark.parametrize("path", ["/cards/4111111111111111", "/people/078-05-1120"])
    async def test_a_card_number_or_tax_id_in_the_path_is_not_echoed_as_the_instance(
        self, client: httpx.AsyncClient, path: str
    ) -> None:
        response = await client.get(path)
        assert response.status_code == 404
        secret = path.rsplit("/", 1)[1]
        assert secret not in response.text
        assert response.json()["instance"].startswith(path.rsplit("/", 1)[0] + "/[REDACTED-")

    @pytest.mark.spec("IAC-4")
    async def test_problem_body_carries_the_request_id(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/missing", headers={"X-Request-ID": "trace-1"})
        assert response.json()["request_id"] == "trace-1"


class TestBodySizeLimit:
    @pytest.mark.spec("API-2")
    async def test_declared_length_over_limit_is_refused_before_reading(
        self, make_app: AppFactory
    ) -> None:
        async with serving(make_app(max_body_bytes=1024)) as client:
            response = await client.post("/echo", content=b"x" * 1025)
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        assert response.headers["connection"] == "close"
        assert response.json()["type"].endswith("/payload-too-large")
        assert response.json()["max_body_bytes"] == 1024
        assert "limit of 1024 bytes" in response.json()["detail"]

    @pytest.mark.spec("API-2")
    async def test_chunked_body_over_limit_is_refused_while_streaming(
        self, make_app: AppFactory
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 512

        async with serving(make_app(max_body_bytes=1024)) as client:
            response = await client.post("/echo", content=chunks())
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        assert response.json()["max_body_bytes"] == 1024

    @pytest.mark.spec("API-2")
    async def test_body_within_limit_reaches_the_route(self, make_app: AppFactory) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"a" * 512
            yield b"b" * 512

        async with serving(make_app(max_body_bytes=1024)) as client:
            exact = await client.post("/echo", content=b"z" * 1024)
            streamed = await client.post("/echo", content=chunks())
        assert exact.json() == {"length": 1024}
        assert streamed.json() == {"length": 1024}


class TestBodyDeadline:
    @pytest.mark.spec("API-2")
    async def test_stalled_body_gets_408(self, make_app: AppFactory) -> None:
        app = make_app(body_read_timeout_seconds=0.1)
        calls = 0

        async def stalling_receive() -> Message:
            nonlocal calls
            calls += 1
            if calls == 1:
                return {"type": "http.request", "body": b'{"partial":', "more_body": True}
            await asyncio.Event().wait()  # the client never sends the rest
            raise AssertionError("unreachable")

        async with serving(app):
            sent = await asyncio.wait_for(drive(app, stalling_receive), timeout=5)
        assert response_status(sent) == 408
        headers = response_headers(sent)
        assert headers[b"content-type"] == PROBLEM_CONTENT_TYPE.encode()
        assert headers[b"connection"] == b"close"
        assert b"strict-transport-security" in headers

    @pytest.mark.spec("API-2")
    async def test_trickled_body_past_the_deadline_gets_408(
        self, make_app: AppFactory, clock: FrozenClock
    ) -> None:
        # Each chunk arrives promptly, but together they take longer than the deadline:
        # the limit is on the whole body, not on the gap between chunks.
        app = make_app(body_read_timeout_seconds=10)

        async def trickling_receive() -> Message:
            clock.advance(seconds=4)
            return {"type": "http.request", "body": b"x", "more_body": True}

        async with serving(app):
            sent = await asyncio.wait_for(drive(app, trickling_receive), timeout=5)
        assert response_status(sent) == 408

    @pytest.mark.spec("API-2")
    async def test_disconnect_wait_after_the_body_has_no_deadline(
        self, make_app: AppFactory, clock: FrozenClock
    ) -> None:
        app = make_app(body_read_timeout_seconds=1)
        messages = [{"type": "http.request", "body": b"done", "more_body": False}]

        async def receive() -> Message:
            if messages:
                return messages.pop()
            clock.advance(seconds=30)
            return {"type": "http.disconnect"}

        async with serving(app):
            sent = await drive(app, receive)
        assert response_status(sent) == 200


class TestUnhandledErrors:
    async def test_crash_is_a_generic_problem_without_details(
        self, make_app: AppFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.handler.addFilter(RedactionFilter())
        async with serving(make_app()) as client:
            response = await client.get("/boom", headers={"X-Request-ID": "crash-1"})
        assert response.status_code == 500
        assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
        body = response.json()
        assert body["detail"] == "Internal error"
        for leaked in ("hunter2", "RuntimeError", "Traceback", "alice"):
            assert leaked not in response.text
        record = next(r for r in caplog.records if r.name == "tradeguard.web.errors")
        assert record.request_id == "crash-1"  # type: ignore[attr-defined]
        assert record.exc_text is not None
        assert "RuntimeError" in record.exc_text
        assert "hunter2" not in record.exc_text
        assert "alice@example.com" not in record.exc_text

    @pytest.mark.spec("IAC-4")
    async def test_every_request_writes_one_access_log_line(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="tradeguard.access"):
            await client.get("/health/live?token=abc", headers={"X-Request-ID": "acc-1"})
        (record,) = [r for r in caplog.records if r.name == "tradeguard.access"]
        assert record.path == "/health/live"  # type: ignore[attr-defined]
        assert record.status == 200  # type: ignore[attr-defined]
        assert record.method == "GET"  # type: ignore[attr-defined]
        assert "token" not in record.getMessage()
