"""The connection guard inside a real uvicorn TLS server on loopback: a WebSocket upgrade
leaves the head deadline behind and still holds (then frees) its client's slot (API-2)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect as websocket_connect
from websockets.exceptions import InvalidMessage

from tests.unit.web.conftest import settings_with
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.web.connections import ConnectionGuard, client_key
from tradeguard.web.server import build_uvicorn_config
from tradeguard.web.tls import build_server_ssl_context, ensure_dev_certificate

HEADER_TIMEOUT_SECONDS = 0.3
LOOPBACK = "127.0.0.1"
WAIT_SECONDS = 10


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Plain HTTP 200, a WebSocket echo, and the lifespan protocol."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text")})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def serving(settings: Settings, guard: ConnectionGuard) -> AsyncIterator[int]:
    """uvicorn with our TLS context and guarded protocol on a free port; yields the port."""
    ensure_dev_certificate(settings, SystemClock())
    context = build_server_ssl_context(settings.effective_cert_file, settings.effective_key_file)
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    config = build_uvicorn_config(settings_with(settings, port=port), echo_app, context, guard)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(WAIT_SECONDS * 100):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT_SECONDS):
            await task


async def until(condition: Any) -> None:
    for _ in range(WAIT_SECONDS * 100):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
def client_tls(settings: Settings) -> ssl.SSLContext:
    ensure_dev_certificate(settings, SystemClock())
    return ssl.create_default_context(cafile=str(settings.dev_cert_file))


class TestWebSocketUpgrade:
    @pytest.mark.spec("API-2")
    async def test_an_upgraded_connection_outlives_the_head_deadline_and_frees_its_slot(
        self, settings: Settings, client_tls: ssl.SSLContext
    ) -> None:
        guard = ConnectionGuard(
            header_timeout_seconds=HEADER_TIMEOUT_SECONDS, max_connections_per_client=2
        )
        async with serving(settings, guard) as port:
            url = f"wss://localhost:{port}/stream"
            async with websocket_connect(url, ssl=client_tls) as websocket:
                await websocket.send("first")
                assert await websocket.recv() == "first"
                # Well past the head deadline: a completed upgrade is not subject to it.
                await asyncio.sleep(3 * HEADER_TIMEOUT_SECONDS)
                await websocket.send("second")
                assert await websocket.recv() == "second"
                assert guard.open_connections(LOOPBACK) == 1
            await until(lambda: guard.open_connections(LOOPBACK) == 0)

    @pytest.mark.spec("API-2")
    async def test_websocket_connections_count_against_the_per_client_cap(
        self, settings: Settings, client_tls: ssl.SSLContext
    ) -> None:
        guard = ConnectionGuard(
            header_timeout_seconds=HEADER_TIMEOUT_SECONDS, max_connections_per_client=2
        )
        async with serving(settings, guard) as port:
            url = f"wss://localhost:{port}/stream"
            async with (
                websocket_connect(url, ssl=client_tls),
                websocket_connect(url, ssl=client_tls),
            ):
                # The third is dropped right after its TLS handshake: no HTTP answer at all.
                with pytest.raises(InvalidMessage, match="did not receive a valid HTTP"):
                    async with websocket_connect(url, ssl=client_tls, open_timeout=WAIT_SECONDS):
                        pass
            await until(lambda: guard.open_connections(LOOPBACK) == 0)


class TestClientKey:
    @pytest.mark.parametrize(
        ("host", "key"),
        [
            ("203.0.113.7", "203.0.113.7"),
            ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            ("/run/tradeguard.sock", "/run/tradeguard.sock"),
        ],
    )
    def test_ipv6_clients_are_counted_by_their_64_block(self, host: str, key: str) -> None:
        assert client_key(host) == key


class TestConnectionGuard:
    def test_slots_are_counted_per_client_and_freed_to_nothing(self) -> None:
        refusals: list[str] = []

        class Counter:
            def refused(self, reason: str) -> None:
                refusals.append(reason)

        guard = ConnectionGuard(
            header_timeout_seconds=1, max_connections_per_client=2, counter=Counter()
        )
        assert guard.admit("a")
        assert guard.admit("a")
        assert not guard.admit("a")
        assert guard.admit("b")
        guard.release("a")
        assert guard.admit("a")
        for _ in range(3):
            guard.release("a")
        assert guard.open_connections("a") == 0
        assert refusals == ["client_limit"]

    @pytest.mark.parametrize(("timeout", "cap"), [(0, 1), (1, 0)])
    def test_limits_must_be_positive(self, timeout: float, cap: int) -> None:
        with pytest.raises(ValueError, match="positive"):
            ConnectionGuard(header_timeout_seconds=timeout, max_connections_per_client=cap)
