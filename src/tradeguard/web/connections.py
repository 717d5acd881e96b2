"""Connection limits below HTTP (API-2): a deadline for each request head, and a cap on the
connections one client address may hold open at once.

uvicorn bounds the TLS handshake (web/server.py), idle keep-alive and, through our
middleware, the request body; nothing bounds the time a client takes to send a request's
head. A client that trickles a header a byte at a time (slowloris) would hold its socket
for as long as it likes, and a few thousand such clients exhaust the process's file
descriptors. So the server's HTTP protocol is uvicorn's httptools protocol with two
additions:

- *Header deadline*: armed when the connection is established (after the TLS handshake,
  which has its own timeout) and again when the first byte of each further request on a
  keep-alive connection arrives; disarmed when the head is complete. A connection that
  misses it is aborted (no TLS close_notify exchange, so the socket is freed at once). Once
  a head is complete the deadline no longer applies: the body has its own (middleware), and
  a connection upgraded to WebSocket is the WebSocket protocol's business.
- *Per-client cap*: a connection from an address that already holds the maximum is aborted
  as soon as it is established. IPv6 clients are counted per /64, the block one subscriber
  usually gets, so one host cannot dodge the cap by rotating addresses. Behind a reverse
  proxy every connection comes from the proxy: raise the cap there.

Both are counted in the metrics (`tradeguard_connections_refused_total`); the first refusal
of an address that reached its cap is logged once until it drops back to zero connections,
so an attack shows up in the log without flooding it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any, ClassVar, Protocol

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger("tradeguard.web.connections")

HEADER_TIMEOUT = "header_timeout"
CLIENT_LIMIT = "client_limit"


class RefusalCounter(Protocol):
    """Where refusals are counted (ConnectionMetrics)."""

    def refused(self, reason: str) -> None: ...


def client_key(host: str) -> str:
    """The address a connection counts against: IPv4 as is, IPv6 by its /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a Unix socket path or similar: one bucket per name
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ConnectionGuard:
    """Per-client connection counts and the header deadline, shared by one server's connections."""

    def __init__(
        self,
        *,
        header_timeout_seconds: float,
        max_connections_per_client: int,
        counter: RefusalCounter | None = None,
    ) -> None:
        if header_timeout_seconds <= 0 or max_connections_per_client < 1:
            raise ValueError("the header timeout and the per-client cap must be positive")
        self.header_timeout_seconds = header_timeout_seconds
        self.max_connections_per_client = max_connections_per_client
        self._counter = counter
        self._open: dict[str, int] = {}
        self._capped: set[str] = set()

    def open_connections(self, key: str) -> int:
        return self._open.get(key, 0)

    def admit(self, key: str) -> bool:
        """Count a new connection from `key`; False (and counted as refused) over the cap."""
        held = self._open.get(key, 0)
        if held >= self.max_connections_per_client:
            self.refused(CLIENT_LIMIT)
            if key not in self._capped:
                self._capped.add(key)
                logger.warning(
                    "client %s reached %d concurrent connections; refusing more",
                    key,
                    held,
                    extra={"client_ip": key},
                )
            return False
        self._open[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._open.get(key, 0) - 1
        if held > 0:
            self._open[key] = held
        else:
            # Nothing is kept for an address without connections: memory is bounded by the
            # connections open, never by how many addresses ever connected.
            self._open.pop(key, None)
            self._capped.discard(key)

    def refused(self, reason: str) -> None:
        if self._counter is not None:
            self._counter.refused(reason)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol with a header deadline and a per-client cap.

    Abstract: `guarded_http_protocol` binds it to the ConnectionGuard of one server.
    """

    connection_guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client_key = "unknown"
        self._slot_held = False
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.client:
            self._client_key = client_key(self.client[0])
        if not self.connection_guard.admit(self._client_key):
            transport.abort()
            return
        self._slot_held = True
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        self._release_slot()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        # The first byte of a request: its head must be complete in time (for the first
        # request the deadline already runs from the start of the connection).
        if self._head_deadline is None:
            self._arm_head_deadline()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        # The transport now belongs to the WebSocket protocol, and this protocol's
        # connection_lost will never run: the slot is released when that one's does.
        upgraded = self.transport.get_protocol()
        if upgraded is not self and self._slot_held:
            self._slot_held = False
            _release_on_loss(upgraded, self.connection_guard, self._client_key)

    def _arm_head_deadline(self) -> None:
        self._head_deadline = self.loop.call_later(
            self.connection_guard.header_timeout_seconds, self._head_deadline_passed
        )

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_deadline_passed(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:
            # A pipelined request waits for the one before it, and we stopped reading: its
            # head is late through no fault of the client's.
            self._arm_head_deadline()
            return
        self.connection_guard.refused(HEADER_TIMEOUT)
        self.transport.abort()

    def _release_slot(self) -> None:
        if self._slot_held:
            self._slot_held = False
            self.connection_guard.release(self._client_key)


def guarded_http_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """The protocol class uvicorn instantiates per connection, bound to `guard`."""

    class BoundGuardedHttpProtocol(GuardedHttpProtocol):
        connection_guard = guard

    return BoundGuardedHttpProtocol


def _release_on_loss(protocol: asyncio.BaseProtocol, guard: ConnectionGuard, key: str) -> None:
    """Release `key`'s slot when `protocol` loses its connection (after its own handling)."""
    original = protocol.connection_lost

    def connection_lost(exc: Exception | None) -> None:
        try:
            original(exc)
        finally:
            guard.release(key)

    # An instance attribute: the transport looks the method up on the protocol object, so
    # this wraps exactly this connection's protocol and no other.
    protocol.connection_lost = connection_lost  # type: ignore[method-assign]
