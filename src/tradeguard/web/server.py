"""Run the API over TLS with uvicorn: one HTTPS listener, no plain-HTTP port (TLS-2).

uvicorn does not pass a TLS handshake timeout to `loop.create_server`, so asyncio's default
(60 s) would apply and a client that connects and never finishes the handshake would hold a
socket that long. The event loop we run uvicorn on fills in `ssl_handshake_timeout` from the
settings for every server it creates, which needs no change to uvicorn itself; the same
bound applies to the closing TLS exchange (`ssl_shutdown_timeout`, 30 s by default), so a
client that never answers our close_notify cannot hold the socket either. Request heads
have their own deadline and each client address a connection cap (web/connections.py).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

import uvicorn
from starlette.types import ASGIApp

from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import TradeguardError
from tradeguard.web.app import create_app
from tradeguard.web.connections import ConnectionGuard, RefusalCounter, guarded_http_protocol
from tradeguard.web.logging import configure_logging
from tradeguard.web.tls import build_server_ssl_context, ensure_dev_certificate

# Bounded so a stuck connection cannot stall a deploy or a restart forever.
GRACEFUL_SHUTDOWN_SECONDS = 10
WEBSOCKET_MAX_MESSAGE_BYTES = 16 * 1024

logger = logging.getLogger("tradeguard.web.server")


class _HandshakeTimeoutLoop(asyncio.SelectorEventLoop):
    """The standard asyncio loop with a TLS handshake deadline on every server socket."""

    tls_handshake_timeout: float = 10.0

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.tls_handshake_timeout)
            kwargs.setdefault("ssl_shutdown_timeout", self.tls_handshake_timeout)
        return await super().create_server(*args, **kwargs)


def tls_event_loop_factory(handshake_timeout: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory (uvloop when installed) whose servers time out slow TLS handshakes."""
    try:
        import uvloop  # noqa: PLC0415 - optional accelerator, installed by uvicorn[standard]
    except ImportError:  # pragma: no cover - platforms without uvloop wheels

        def make_asyncio_loop() -> asyncio.AbstractEventLoop:
            loop = _HandshakeTimeoutLoop()
            loop.tls_handshake_timeout = handshake_timeout
            return loop

        return make_asyncio_loop

    class _HandshakeTimeoutUvloop(uvloop.Loop):
        async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", handshake_timeout)
                kwargs.setdefault("ssl_shutdown_timeout", handshake_timeout)
            # uvloop's server is duck-type compatible with asyncio.Server (what uvicorn uses).
            return cast(asyncio.Server, await super().create_server(*args, **kwargs))

    return _HandshakeTimeoutUvloop


class ListenerUnavailable(TradeguardError):
    """The listening socket cannot be opened (port taken, address not ours, no privilege)."""

    status = 503
    slug = "listener-unavailable"
    title = "Cannot listen on the configured address"


def _listen_failure(exc: OSError, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use by another program; stop it or serve on "
            "another port (--port or TRADEGUARD_PORT)"
        )
    if exc.errno == errno.EACCES:
        return (
            f"not allowed to listen on {where}: ports below 1024 need extra privileges; "
            "use a higher port (--port or TRADEGUARD_PORT)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; check --host or TRADEGUARD_HOST"
    return f"cannot listen on {where}: {exc.strerror or type(exc).__name__}"


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Bind the listening sockets before anything starts, so a taken port fails up front.

    One socket per address the host resolves to (as asyncio's create_server would bind);
    IPv6 sockets are IPv6-only so that an IPv4 socket on the same port does not clash.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        raise ListenerUnavailable(
            f"cannot listen on {host}: the name does not resolve; check --host or TRADEGUARD_HOST"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenerUnavailable(_listen_failure(exc, host, port)) from None
    return sockets


class _Server(uvicorn.Server):
    """uvicorn's server, telling the caller once it really serves (lifespan done, listening)."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()


def connection_guard(settings: Settings, counter: RefusalCounter | None = None) -> ConnectionGuard:
    """The header deadline and per-client cap from the settings, counting into `counter`."""
    return ConnectionGuard(
        header_timeout_seconds=settings.header_read_timeout_seconds,
        max_connections_per_client=settings.max_connections_per_client,
        counter=counter,
    )


def build_uvicorn_config(
    settings: Settings,
    app: ASGIApp,
    context: ssl.SSLContext,
    guard: ConnectionGuard | None = None,
) -> uvicorn.Config:
    """uvicorn settings for the TLS listener, serving with our SSL context."""
    return uvicorn.Config(
        app,
        # HTTP/1.1 by httptools (uvicorn's fast parser), with our header deadline and
        # per-client connection cap; WebSocket upgrades go to uvicorn's WebSocket protocol.
        http=guarded_http_protocol(guard or connection_guard(settings)),
        host=settings.host,
        port=settings.port,
        # Our context replaces uvicorn's own (which would accept every TLS 1.2 suite OpenSSL
        # offers); the files are named too so uvicorn reports the listener as https.
        ssl_certfile=str(settings.effective_cert_file),
        ssl_keyfile=str(settings.effective_key_file),
        ssl_context_factory=lambda _config, _default: context,
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        # Clients only ever send small control messages over WebSocket (auth, ping): a frame
        # above this closes the connection (1009) instead of pinning megabytes of memory.
        ws_max_size=WEBSOCKET_MAX_MESSAGE_BYTES,
        ws_ping_interval=settings.stream_ping_interval_seconds,
        ws_ping_timeout=settings.stream_ping_timeout_seconds,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        lifespan="on",
        # Logging is ours (JSON, redacted); the access log is written by the middleware.
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        # No "Server: uvicorn" banner to fingerprint; no trust in X-Forwarded-* headers,
        # which any client can send (a proxy setup must opt in explicitly).
        server_header=False,
        date_header=True,
        proxy_headers=False,
    )


def serve(
    settings: Settings,
    *,
    app: ASGIApp | None = None,
    sockets: list[socket.socket] | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve the app over HTTPS until SIGINT/SIGTERM; blocks the calling thread.

    Uses the configured certificate, or the development certificate (generated when
    missing). Certificate problems raise ConfigurationError, and a port that cannot be bound
    raises ListenerUnavailable, before the app starts. `sockets` are listeners the caller
    bound already (`bind_listeners`); they are closed when serving ends. `on_started` runs
    once the app has started and the sockets listen.
    """
    configure_logging(settings.log_level)
    if settings.workers > 1:
        logger.warning(
            "serve() runs one process; start TRADEGUARD_WORKERS=%d replicas behind a load "
            "balancer (or a process manager) for more",
            settings.workers,
        )
    clock = SystemClock()
    listeners = list(sockets or ())
    try:
        ensure_dev_certificate(settings, clock)
        context = build_server_ssl_context(
            settings.effective_cert_file, settings.effective_key_file, settings.tls_min_version
        )
        if not listeners:
            listeners = bind_listeners(settings.host, settings.port)
        application = app or create_app(settings, clock=clock)
        # The app's metrics registry counts the connections the guard refuses (/metrics).
        counter = getattr(getattr(application, "state", None), "connection_metrics", None)
        config = build_uvicorn_config(
            settings, application, context, connection_guard(settings, counter)
        )
        server = _Server(config, on_started)
        loop_factory = tls_event_loop_factory(settings.tls_handshake_timeout_seconds)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(server.serve(sockets=listeners))
    finally:
        for sock in listeners:
            sock.close()
