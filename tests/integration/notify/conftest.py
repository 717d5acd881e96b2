"""Fixtures for the outbox: a keyring, a notifier, and real SMTP servers (aiosmtpd) on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.notify.support import (
    CollectingHandler,
    Outbox,
    SmtpCertificate,
    running_smtp_server,
)
from tradeguard.core.clock import FrozenClock, SystemClock
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.web.tls import generate_dev_certificate

SmtpServerFactory = Callable[..., int]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServerFactory]:
    """Call with a handler (and aiosmtpd options) to start a server; stopped after the test."""
    with ExitStack() as stack:

        def start(handler: CollectingHandler, **smtp_options: Any) -> int:
            return stack.enter_context(running_smtp_server(handler, **smtp_options))

        yield start


@pytest.fixture
def certificate(tmp_path: Path) -> SmtpCertificate:
    # The real clock: the client checks the validity period against the real time.
    cert = SmtpCertificate(tmp_path / "tls" / "smtp-cert.pem", tmp_path / "tls" / "smtp-key.pem")
    generate_dev_certificate(cert.cert_file, cert.key_file, clock=SystemClock())
    return cert


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.load_or_create(tmp_path / "keys" / "notify.key")


@pytest.fixture
def outbox(
    engine: AsyncEngine, keyring: LocalKeyring, clock: FrozenClock, tmp_path: Path
) -> Outbox:
    """The outbox on the parametrized database (SQLite, then PostgreSQL)."""
    return Outbox.create(engine, keyring=keyring, clock=clock, directory=tmp_path)
