"""The listening sockets are bound before the app starts, and a failure says why in one line."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tradeguard.web.server import ListenerUnavailable, bind_listeners

LOOPBACK = "127.0.0.1"


@pytest.fixture
def occupied_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield sock.getsockname()[1]


class TestBindListeners:
    def test_a_free_port_is_bound_on_every_address_of_the_host(self) -> None:
        sockets = bind_listeners("localhost", 0)
        try:
            assert sockets
            assert all(sock.getsockname()[0] in {LOOPBACK, "::1"} for sock in sockets)
        finally:
            for sock in sockets:
                sock.close()

    def test_a_port_in_use_is_named_with_what_to_do(self, occupied_port: int) -> None:
        with pytest.raises(ListenerUnavailable) as caught:
            bind_listeners(LOOPBACK, occupied_port)
        assert caught.value.detail == (
            f"port {occupied_port} on {LOOPBACK} is already in use by another program; stop it "
            "or serve on another port (--port or TRADEGUARD_PORT)"
        )

    def test_an_address_of_another_machine_is_refused(self) -> None:
        with pytest.raises(ListenerUnavailable, match=r"192\.0\.2\.1 is not an address of this"):
            bind_listeners("192.0.2.1", 0)

    def test_a_host_name_that_does_not_resolve_is_refused(self) -> None:
        with pytest.raises(ListenerUnavailable, match="the name does not resolve"):
            bind_listeners("no-such-host.invalid", 0)
