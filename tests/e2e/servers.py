"""Start and stop real tradeguard TLS server processes (for e2e tests and benchmarks)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SERVE_SCRIPT = Path(__file__).with_name("_serve.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
# Importing the app takes about 5 CPU-seconds; on the 2-core CI machine with three test
# processes and PostgreSQL busy, a server was seen to need more than 20 s to answer.
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class RunningServer:
    port: int
    data_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def cert_file(self) -> Path:
        return self.data_dir / "tls" / "dev-cert.pem"

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this server's development certificate."""
        return ssl.create_default_context(cafile=str(self.cert_file))

    def log_text(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _handshake_succeeds(port: int, cert_file: Path) -> bool:
    if not cert_file.is_file():
        return False
    context = ssl.create_default_context(cafile=str(cert_file))
    try:
        with (
            socket.create_connection((LOOPBACK, port), timeout=1) as raw,
            context.wrap_socket(raw, server_hostname="localhost"),
        ):
            return True
    except OSError:
        return False


def _clean_environment() -> dict[str, str]:
    # The server must run on exactly the settings the launcher passes, not on whatever
    # TRADEGUARD_* variables the developer's shell happens to export.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def running_server(
    data_dir: Path,
    extra_args: Sequence[str] = (),
    *,
    via_cli: bool = False,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Iterator[RunningServer]:
    """Run `_serve.py` (or, with via_cli, the real `python -m tradeguard serve`) on a free
    loopback port until the block exits; bounded waits only. `env` adds TRADEGUARD_*
    settings; `port` reuses a port (a restart after a crash)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_file = data_dir.parent / f"{data_dir.name}-server.log"
    entry = ["-m", "tradeguard", "serve"] if via_cli else [str(SERVE_SCRIPT)]
    command = [
        sys.executable,
        *entry,
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        *extra_args,
    ]
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**_clean_environment(), **(env or {})},
            cwd=REPO_ROOT,
        )
    server = RunningServer(port=port, data_dir=data_dir, log_file=log_file, process=process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _handshake_succeeds(port, server.cert_file):
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start in time:\n{server.log_text()}")
            time.sleep(0.1)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
