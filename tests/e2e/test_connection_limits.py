"""Real slow clients against a real server process: the request-head deadline and the
per-client connection cap (API-2), seen from the sockets and the server's file descriptors.

Each test connects from its own loopback address (Linux routes all of 127.0.0.0/8 to the
loopback interface), so the per-client cap of one test never limits another.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import LOOPBACK, RunningServer, running_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.0/8 routed to loopback"),
]

HEADER_TIMEOUT_SECONDS = 1.0
MAX_CONNECTIONS_PER_CLIENT = 4
# Every wait is bounded by a socket timeout this many times the deadline: a server that never
# drops a slow client fails the test instead of hanging it.
BOUND = 8 * HEADER_TIMEOUT_SECONDS
# One byte every 0.2 s: the head below takes about 20 s to send, far beyond the deadline.
TRICKLE_INTERVAL_SECONDS = 0.2
SLOW_HEAD = b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 80 + b"\r\n\r\n"
REQUEST = b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(
        tmp_path_factory.mktemp("limits"),
        [
            "--header-timeout",
            str(HEADER_TIMEOUT_SECONDS),
            "--max-connections-per-client",
            str(MAX_CONNECTIONS_PER_CLIENT),
        ],
    ) as running:
        yield running


def connect(server: RunningServer, source: str) -> ssl.SSLSocket:
    """A TLS connection from loopback address `source`, handshake done."""
    raw = socket.create_connection(
        (LOOPBACK, server.port), timeout=BOUND, source_address=(source, 0)
    )
    try:
        return server.client_context().wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def dropped(sock: ssl.SSLSocket) -> bool:
    """Wait (bounded by the socket timeout) for the server to end the connection; True if it
    did without sending a byte of HTTP."""
    try:
        data = sock.recv(1)
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError):
        return True
    assert data == b"", f"the server answered: {data!r}"
    return True


def trickle(sock: ssl.SSLSocket, payload: bytes) -> int | None:
    """Send `payload` a byte at a time; the number of bytes sent when the server dropped the
    connection, or None if the whole payload went through."""
    for sent, byte in enumerate(payload):
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return sent
        readable, _, _ = select.select([sock], [], [], TRICKLE_INTERVAL_SECONDS)
        if readable:
            assert dropped(sock)
            return sent
    return None


def status_of(sock: ssl.SSLSocket, request: bytes) -> int:
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "connection closed before a response"
        head += chunk
    return int(head.split(b" ", 2)[1])


def open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


class TestRequestHeadDeadline:
    @pytest.mark.spec("API-2")
    def test_a_client_trickling_its_request_head_is_dropped_before_it_finishes(
        self, server: RunningServer
    ) -> None:
        with connect(server, "127.0.0.2") as sock:
            sent = trickle(sock, SLOW_HEAD)
        assert sent is not None, "the server waited for the whole slow head"
        assert sent < len(SLOW_HEAD)

    @pytest.mark.spec("API-2")
    def test_a_client_that_sends_nothing_after_the_handshake_is_dropped(
        self, server: RunningServer
    ) -> None:
        with connect(server, "127.0.0.3") as sock:
            assert dropped(sock)

    @pytest.mark.spec("API-2")
    def test_many_slow_clients_are_dropped_and_their_descriptors_freed(
        self, server: RunningServer
    ) -> None:
        baseline = open_descriptors(server.process.pid)
        with contextlib.ExitStack() as stack:
            # 24 clients, 3 per address (under the cap), each holding an unfinished head.
            clients = [
                stack.enter_context(connect(server, f"127.0.1.{1 + index // 3}"))
                for index in range(24)
            ]
            for sock in clients:
                sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: loc")
            held = open_descriptors(server.process.pid)
            assert all(dropped(sock) for sock in clients)
        assert held >= baseline + len(clients)
        deadline = time.monotonic() + BOUND
        while open_descriptors(server.process.pid) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_descriptors(server.process.pid) <= baseline

    @pytest.mark.spec("API-2")
    def test_a_kept_alive_connection_may_idle_between_requests(self, server: RunningServer) -> None:
        """The deadline runs from a request's first byte, not from the last response; idle
        keep-alive time is the keep-alive timeout's business (5 s here)."""
        with connect(server, "127.0.0.4") as sock:
            assert status_of(sock, REQUEST) == 200
            time.sleep(2 * HEADER_TIMEOUT_SECONDS)
            assert status_of(sock, REQUEST) == 200

    @pytest.mark.spec("API-2")
    def test_once_the_head_is_complete_a_slower_body_is_not_cut_by_the_head_deadline(
        self, server: RunningServer
    ) -> None:
        body = json.dumps({"login": "nobody", "password": "x" * 16}).encode()
        head = (
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
        )
        with connect(server, "127.0.0.5") as sock:
            sock.sendall(head)
            time.sleep(2 * HEADER_TIMEOUT_SECONDS)
            # The body limit (10 s) still applies; the head deadline no longer does.
            assert status_of(sock, body) == 401


class TestConnectionsPerClient:
    @pytest.mark.spec("API-2")
    def test_a_client_over_the_cap_is_refused_while_other_clients_are_served(
        self, server: RunningServer
    ) -> None:
        with contextlib.ExitStack() as stack:
            held = [
                stack.enter_context(connect(server, "127.0.0.6"))
                for _ in range(MAX_CONNECTIONS_PER_CLIENT)
            ]
            with connect(server, "127.0.0.6") as extra:
                assert dropped(extra)
            with connect(server, "127.0.0.7") as other:
                assert status_of(other, REQUEST) == 200
            # The held connections are still served (each within its head deadline).
            assert status_of(held[0], REQUEST) == 200
            held[1].close()
            # A freed slot is available again at once.
            with connect(server, "127.0.0.6") as again:
                assert status_of(again, REQUEST) == 200

    @pytest.mark.spec("API-2")
    def test_refusals_are_counted_in_the_metrics(self, server: RunningServer) -> None:
        with contextlib.ExitStack() as stack:
            for _ in range(MAX_CONNECTIONS_PER_CLIENT):
                stack.enter_context(connect(server, "127.0.0.9"))
            with connect(server, "127.0.0.9") as refused:
                assert dropped(refused)  # client_limit
        with connect(server, "127.0.0.10") as silent:
            assert dropped(silent)  # header_timeout
        with connect(server, "127.0.0.8") as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        text = response.decode()
        for reason in ("header_timeout", "client_limit"):
            line = f'tradeguard_connections_refused_total{{reason="{reason}"}} '
            (value,) = [row.removeprefix(line) for row in text.splitlines() if row.startswith(line)]
            assert float(value) >= 1
