"""`tradeguard vault serve`: the vault in a process of its own, over mutual TLS (PCI-3).

It listens on a Unix socket (the default; file mode 0660, so only its owner and group may
even connect) or on a private address (loopback, RFC 1918, RFC 4193: never a public one),
with TLS 1.3 only, the platform's hardened server context (web/tls.py) and
`CERT_REQUIRED` against the vault's own CA: a client without a certificate of that CA fails
the handshake and never reaches HTTP. The verified certificate's role is put in each
request's scope (vault/server.py reads it there).

Revocation (PCI-3): the context checks the client's certificate against the vault CA's
revocation list (`crl.pem`, `VERIFY_CRL_CHECK_LEAF`), loaded only once it verifies against
the CA. The file is watched: at each new connection a changed list is verified and loaded
(the handshakes after that refuse a newly revoked certificate), and the connection itself
is checked against it, so the first request after a revocation is refused too, without a
restart.

Metrics (PCI-1): `MetricsListener` serves the vault's own registry (vault/metrics.py) in
plain HTTP on a loopback address by default, a listener apart from the card API.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, make_server

import uvicorn
from cryptography import x509
from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tradeguard.config import TLSVersion, is_private_network
from tradeguard.core.errors import ConfigurationError
from tradeguard.vault.certs import (
    CertificateRevocationError,
    VaultPki,
    format_serial,
    load_crl,
    revoked_certificates,
    role_of_peer,
    write_crl,
)
from tradeguard.vault.domain import VaultRole
from tradeguard.vault.metrics import VaultMetrics
from tradeguard.vault.server import CLIENT_ROLE_SCOPE
from tradeguard.web.server import tls_event_loop_factory
from tradeguard.web.tls import build_server_ssl_context

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
# OpenSSL's X509_V_ERR_CERT_REVOKED.
CERT_REVOKED: Final = 23


class RevocationGuard:
    """The vault CA's revocation list as the server enforces it, re-read when it changes.

    `load` at start: a list that is missing, not signed by the vault CA or expired stops the
    vault from serving (CertificateRevocationError). Later, a changed file that does not
    verify is refused and logged, and the last good list stays in force (a revocation is
    never undone by a bad file)."""

    def __init__(
        self, pki: VaultPki, context: ssl.SSLContext, metrics: VaultMetrics | None = None
    ) -> None:
        self._pki = pki
        self._context = context
        self._metrics = metrics
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._revoked: frozenset[int] = frozenset()

    def _file_stamp(self) -> tuple[int, int, int]:
        status = os.stat(self._pki.crl)
        return status.st_mtime_ns, status.st_size, status.st_ino

    def load(self) -> None:
        stamp = self._file_stamp() if self._pki.crl.exists() else None
        crl = load_crl(self._pki)
        revoked = frozenset(revoked_certificates(crl))
        # Added to the context's store: OpenSSL uses the newest list of the issuer, so the
        # handshakes from now on refuse what it revokes.
        self._context.load_verify_locations(cafile=str(self._pki.crl))
        self._context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        self._revoked = revoked
        self._stamp = stamp
        if self._metrics is not None:
            self._metrics.crl_loaded(len(revoked), crl.next_update_utc)

    def refresh(self) -> None:
        """Load the list again if its file changed since it was last read."""
        with self._lock:
            try:
                stamp = self._file_stamp()
            except OSError:
                stamp = None
            if stamp == self._stamp:
                return
            try:
                self.load()
            except (CertificateRevocationError, OSError) as exc:
                self._stamp = stamp  # not retried until the file changes again
                log.error(
                    "the changed revocation list was refused, the previous one stays in force: %s",
                    exc.detail if isinstance(exc, CertificateRevocationError) else exc,
                )
                if self._metrics is not None:
                    self._metrics.crl_reload_failed()

    @staticmethod
    def serial_of(certificate_der: bytes) -> int:
        return x509.load_der_x509_certificate(certificate_der).serial_number

    def is_revoked(self, serial: int) -> bool:
        self.refresh()
        if serial in self._revoked:
            log.warning("refused a revoked client certificate (serial %s)", format_serial(serial))
            return True
        return False


def _refusal_of(exc: ssl.SSLError) -> str | None:
    """Why a handshake failed, if it failed on the client's certificate."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "revoked" if exc.verify_code == CERT_REVOKED else "untrusted"
    if exc.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "no_certificate"
    return None


class _CountingSSLObject(ssl.SSLObject):
    """The SSL object of each connection, counting handshakes refused for the client's
    certificate (the event loop does not report them)."""

    metrics: ClassVar[VaultMetrics | None] = None

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            reason = _refusal_of(exc)
            if reason is not None and self.metrics is not None:
                self.metrics.certificate_refused(reason)
            raise


def vault_server_context(
    pki: VaultPki, metrics: VaultMetrics | None = None
) -> tuple[ssl.SSLContext, RevocationGuard]:
    """TLS 1.3 only; a client certificate signed by the vault CA and not on its revocation
    list is required. A directory without a list, whose CA key is here, gets an empty one."""
    context = build_server_ssl_context(pki.server_cert, pki.server_key, TLSVersion.TLS1_3)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(pki.ca_cert))
    if not pki.crl.exists() and pki.ca_key.is_file():
        write_crl(pki, now=datetime.now(UTC))
    guard = RevocationGuard(pki, context, metrics)
    guard.load()
    if metrics is not None:
        counting = type("CountingSSLObject", (_CountingSSLObject,), {"metrics": metrics})
        context.sslobject_class = counting
    return context, guard


class ClientRoleProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, putting the verified client certificate's vault role in
    every request's scope. asyncio calls `connection_made` after the TLS handshake, so the
    peer certificate is there and already verified by OpenSSL. A certificate revoked since
    the handshake's list was loaded is refused here: the connection is closed before any
    request is read."""

    guard: ClassVar[RevocationGuard | None] = None
    metrics: ClassVar[VaultMetrics | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._vault_role: VaultRole | None = None
        self._serial: int | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        der = ssl_object.getpeercert(binary_form=True)
        if der is not None and self.guard is not None:
            self._serial = self.guard.serial_of(der)
            if self.guard.is_revoked(self._serial):
                if self.metrics is not None:
                    self.metrics.certificate_refused("revoked")
                transport.close()
                return
        self._vault_role = role_of_peer(ssl_object.getpeercert())
        if self._vault_role is None and self.metrics is not None:
            self.metrics.certificate_refused("no_role")

    def _revoked_since(self) -> bool:
        return (
            self._serial is not None
            and self.guard is not None
            and self.guard.is_revoked(self._serial)
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._vault_role is None:
            return
        # A connection kept open across a revocation: each request is checked again (the
        # list is re-read only when its file changed), and refused without a role.
        if self._revoked_since():
            if self.metrics is not None:
                self.metrics.certificate_refused("revoked")
            self._vault_role = None
            return
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


def vault_uvicorn_config(
    app: Any,
    pki: VaultPki,
    context: ssl.SSLContext,
    *,
    guard: RevocationGuard | None = None,
    metrics: VaultMetrics | None = None,
) -> uvicorn.Config:
    protocol = type(
        "VaultClientRoleProtocol", (ClientRoleProtocol,), {"guard": guard, "metrics": metrics}
    )
    return uvicorn.Config(
        app,
        http=protocol,
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
        metrics: VaultMetrics | None = None,
    ) -> None:
        context, guard = vault_server_context(pki, metrics)
        self.guard = guard
        config = vault_uvicorn_config(app, pki, context, guard=guard, metrics=metrics)
        self._server = _Server(config, on_started)
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


# -- the metrics listener (PCI-1) ------------------------------------------------------------

METRICS_SETTING = "--metrics-address or TRADEGUARD_VAULT_METRICS_ADDRESS"


def parse_metrics_address(address: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """`127.0.0.1:9465` or `[::1]:9465`: an IP address and a port. Only a loopback address
    unless `allow_remote` (the metrics are plain HTTP, without authentication)."""
    host, sep, port_text = address.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        if not sep or not port_text.isdigit():
            raise ValueError
        port = int(port_text)
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigurationError(
            f"vault metrics address {address[:80]!r}: give an IP address and a port, such as "
            f"127.0.0.1:9465 ({METRICS_SETTING})"
        ) from None
    if not 0 <= port < 65536:
        raise ConfigurationError(f"vault metrics address: port {port} is out of range")
    if not ip.is_loopback and not allow_remote:
        raise ConfigurationError(
            f"vault metrics address {ip} is not a loopback address: the metrics are plain "
            "HTTP; allow it explicitly with --metrics-allow-remote "
            "(TRADEGUARD_VAULT_METRICS_ALLOW_REMOTE=true) and firewall it"
        )
    if ip.is_unspecified or not (ip.is_loopback or is_private_network(ip)):
        raise ConfigurationError(
            f"vault metrics address {ip} is not a loopback or private address (PCI-3)"
        )
    return str(ip), port


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class MetricsListener:
    """The vault's metrics on their own plain-HTTP listener, in a thread of its own."""

    def __init__(self, metrics: VaultMetrics, address: str, *, allow_remote: bool = False):
        host, port = parse_metrics_address(address, allow_remote=allow_remote)
        server_class = type(
            "VaultMetricsServer",
            (ThreadingWSGIServer,),
            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
        )
        try:
            self._httpd: ThreadingWSGIServer = make_server(
                host,
                port,
                make_wsgi_app(metrics.registry),
                server_class=server_class,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            raise VaultListenerUnavailable(
                "metrics: "
                + _bind_failure(exc, host, port).replace(LISTEN_SETTING, METRICS_SETTING)
            ) from None
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="vault-metrics", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()  # waits for serve_forever: only once it runs
            self._thread.join(5)
        self._httpd.server_close()
