"""moto's server as the AWS KMS protocol peer of the KMS key-encrypting-key tests.

It runs as a separate process from its own venv (.venv-tools/moto, made by
scripts/ensure-test-tools.sh from requirements/moto.lock), on a free loopback port, and
speaks the real KMS JSON protocol to botocore: nothing of tradeguard is replaced. Missing,
it fails the test in CI (CI=true) and skips it elsewhere (tests/conftest.py
`require_service`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
MOTO_SERVER = ROOT / ".venv-tools" / "moto" / "bin" / "moto_server"
REGION = "eu-west-1"
START_SECONDS = 60.0
# Credentials for the peer only (moto accepts any): set in the environment, where botocore's
# standard chain finds them, as it would find real ones.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


@dataclass(frozen=True, slots=True)
class KmsPeer:
    endpoint_url: str
    region: str = REGION

    def client(self) -> Any:
        return botocore.session.get_session().create_client(
            "kms",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_key(self, **extra: Any) -> str:
        """A new symmetric key; its ARN."""
        return str(self.client().create_key(**extra)["KeyMetadata"]["Arn"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[KmsPeer | str]:
    """The running peer, or why it could not start (a string)."""
    if not MOTO_SERVER.exists():
        yield f"moto_server is not installed at {MOTO_SERVER} (run scripts/ensure-test-tools.sh)"
        return
    port = _free_port()
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                yield f"moto_server exited at start (status {process.returncode})"
                return
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=2):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline:
                    yield f"moto_server did not answer on {url} within {START_SECONDS:g} s"
                    return
                time.sleep(0.2)
        yield KmsPeer(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def required_kms_peer() -> Iterator[KmsPeer]:
    """The running peer; a test that needs it fails in CI (skips elsewhere) without it."""
    with moto_server() as peer:
        if isinstance(peer, str):
            require_service("moto_server (the AWS KMS peer)", RuntimeError(peer))
        assert isinstance(peer, KmsPeer)
        yield peer


def use_peer_credentials(monkeypatch: Any, tmp_path: Path) -> None:
    """botocore's standard chain finds the peer's credentials in the environment, and
    nothing of the host's AWS configuration (`monkeypatch`: pytest's MonkeyPatch)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
