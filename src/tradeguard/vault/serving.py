"""`tradeguard vault serve`: the vault in a process of its own, over mutual TLS (PCI-3).

It listens on a Unix socket (the default; file mode 0660, so only its owner and group may
even connect) or on a private address (loopback, RFC 1918, RFC 4193: never a public one),
with TLS 1.3 only, the platform's hardened server context (web/tls.py) and
`CERT_REQUIRED` against the vault's own CA: a client without a certificate of that CA fails
the handshake and never reaches HTTP. The verified certificate's role is put in each
request's scope (vault/server.py reads it there).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tradeguard.config import TLSVersion, is_private_network
from tradeguard.core.errors import ConfigurationError
from tradeguard.vault.certs import VaultPki, role_of_peer
from tradeguard.vault.domain import VaultRole
from tradeguard.vault.server import CLIENT_ROLE_SCOPE
from tradeguard.web.server import tls_event_loop_factory
from tradeguard.web.tls import build_server_ssl_context

SOCKET_MODE = 0o660


def vault_server_context(pki: VaultPki) -> ssl.SSLContext:
    """TLS 1.3 only; a client certificate signed by the vault CA is required."""
    context = build_server_ssl_context(pki.server_cert, pki.server_key, TLSVersion.TLS1_3)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(pki.ca_cert))
    return context


class ClientRoleProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, putting the verified client certificate's vault role in
    every request's scope. asyncio calls `connection_made` after the TLS handshake, so the
    peer certificate is there and already verified by OpenSSL."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._vault_role: VaultRole | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        self._vault_role = role_of_peer(peer)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._vault_role is not None:
            self.scope[CLIENT_ROLE_SCOPE] = self._vault_role  # type: ignore[typeddict-unknown-key]


def parse_listen(listen: str) -> tuple[Path | None, str | None, int | None]:
    """`unix:///path` or `https://host:port` (host a loopback or private address)."""
    parts = urlsplit(listen)
    if parts.scheme == "unix" and parts.path:
        return Path(parts.path), None, None
    if parts.scheme == "https" and parts.hostname and parts.port:
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            raise ConfigurationError(
                "vault listen address: give an IP address, not a name"
            ) from None
        if not (address.is_loopback or is_private_network(address)):
            # PCI-3: the vault is never reachable from the internet; a wildcard address
            # would listen on public interfaces too.
            raise ConfigurationError(
                f"vault listen address {address} is not a loopback or private address"
            )
        return None, str(address), parts.port
    raise ConfigurationError("vault listen: unix:///path/vault.sock or https://10.0.0.5:9443")


class VaultListenerUnavailable(ConfigurationError):
    slug = "vault-listener-unavailable"
    title = "The vault cannot listen where it is told to"


LISTEN_SETTING = "--listen or TRADEGUARD_VAULT_LISTEN"
# How long a probe of an existing socket file waits for a server to accept.
PROBE_TIMEOUT_SECONDS = 2.0


def _socket_answers(path: Path) -> bool:
    """Whether a server accepts connections on the Unix socket at `path` (a stale file left
    by a killed vault refuses them)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT_SECONDS)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        # Not allowed to connect, or no answer in time: it cannot be shown stale, so it is
        # not removed.
        raise VaultListenerUnavailable(
            f"cannot tell whether a vault is listening on {path} ({exc.strerror or 'timed out'});"
            f" stop it or give another path ({LISTEN_SETTING})"
        ) from None
    finally:
        probe.close()
    return True


def _bind_unix(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket():
        if _socket_answers(path):
            # Unlinking it would cut the running vault off from every client.
            raise VaultListenerUnavailable(
                f"a vault is already listening on {path}; stop it first or give another path"
                f" ({LISTEN_SETTING})"
            )
        path.unlink()  # stale: left by a vault that did not stop cleanly
    elif path.exists() or path.is_symlink():
        raise VaultListenerUnavailable(
            f"{path} exists and is not a socket; give another path ({LISTEN_SETTING})"
        )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Created without group or world access from the start, then opened to the group.
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise VaultListenerUnavailable(f"cannot listen on {path} ({exc.strerror})") from None
    finally:
        os.umask(old)
    os.chmod(path, SOCKET_MODE)
    return sock


def _bind_failure(exc: OSError, host: str, port: int) -> str:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where} is already in use by another program; stop it or use another port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; check {LISTEN_SETTING}"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on {where}: ports below 1024 need extra privileges"
    return f"cannot listen on {where} ({exc.strerror or type(exc).__name__})"


def bind_vault_socket(listen: str) -> socket.socket:
    """The vault's listening socket, bound before anything starts; a taken or foreign
    address is a VaultListenerUnavailable (one line), never a traceback."""
    path, host, port = parse_listen(listen)
    if path is not None:
        return _bind_unix(path)
    if host is None or port is None:  # pragma: no cover - parse_listen gives both
        raise ConfigurationError("vault listen: no address")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise VaultListenerUnavailable(_bind_failure(exc, host, port)) from None
    return sock


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()


def vault_uvicorn_config(app: Any, pki: VaultPki, context: ssl.SSLContext) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=ClientRoleProtocol,
        ssl_certfile=str(pki.server_cert),
        ssl_keyfile=str(pki.server_key),
        ssl_context_factory=lambda _config, _default: context,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )


class VaultServer:
    """The vault app served on one socket; `run` blocks until `stop` or a signal."""

    def __init__(
        self,
        app: Any,
        pki: VaultPki,
        sock: socket.socket,
        *,
        handshake_timeout: float = 10.0,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        context = vault_server_context(pki)
        self._server = _Server(vault_uvicorn_config(app, pki, context), on_started)
        self._sock = sock
        self._handshake_timeout = handshake_timeout

    def run(self) -> None:
        loop_factory = tls_event_loop_factory(self._handshake_timeout)
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(self._server.serve(sockets=[self._sock]))
        finally:
            self._sock.close()

    def stop(self) -> None:
        self._server.should_exit = True
