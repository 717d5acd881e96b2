"""What every command shares: settings from the environment and options, and error exits."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from sqlalchemy import exc as sa_exc
from sqlalchemy import make_url

from tradeguard.config import Settings, load_settings
from tradeguard.core.errors import ConfigurationError, InvalidInput, TradeguardError
from tradeguard.db.availability import DatabaseUnreachable

T = TypeVar("T")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILURE = 1
EXIT_USAGE = 2

# SQLSTATE classes (PostgreSQL appendix A) that mean "could not get a working connection".
_PG_CONNECTION_CLASS = "08"
_PG_AUTHORIZATION_CLASSES = ("28",)
_PG_NO_DATABASE = "3D000"
_PG_CANNOT_CONNECT_NOW = "57P03"


def fail(message: str, *, hint: str | None = None, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one clear line (and what to do next) to stderr and exit non-zero."""
    # Text, not markup: a message quoting a path or an address ("[::1]") stays as written.
    err_console.print(Text.assemble(("error:", "bold red"), " ", message))
    if hint:
        err_console.print(Text.assemble(("hint:", "dim"), " ", hint))
    raise typer.Exit(code)


def settings_from(data_dir: Path | None = None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    try:
        return load_settings(**values)
    except TradeguardError as exc:
        fail(exc.detail, hint="see README.md, section Configuration", code=EXIT_USAGE)


def fail_on_error(exc: TradeguardError) -> NoReturn:
    """A domain error as one line: configuration problems and input the command refuses (a
    weak password, a malformed value) exit 2, everything else 1."""
    usage = isinstance(exc, ConfigurationError | InvalidInput)
    fail(exc.detail, code=EXIT_USAGE if usage else EXIT_FAILURE)


def run_async(coro: Coroutine[Any, Any, T], *, database_url: str | None = None) -> T:
    """Run a coroutine; domain errors become a one-line message and a non-zero exit.

    With `database_url`, failures to reach that database become one line too, naming where
    it is (never the user or password) and what to check, instead of a driver traceback.
    """
    try:
        return asyncio.run(coro)
    except TradeguardError as exc:
        fail_on_error(exc)
    except Exception as exc:
        message = database_failure(exc, database_url) if database_url else None
        if message is None:
            raise
        fail(message)


def database_failure(exc: BaseException, url: str) -> str | None:
    """Why a database could not be reached, in one line; None if `exc` is something else.

    The message is built from the URL's host, port and database name and from the error's
    kind only: the URL's user and password and the driver's own text (which may quote the
    user name) are left out.
    """
    if isinstance(exc, DatabaseUnreachable):
        # The engine's connect hook wraps the driver's OSError; the message needs its kind.
        exc = exc.cause
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.get_backend_name() == "sqlite":
        if isinstance(exc, sa_exc.OperationalError) and "unable to open" in str(exc.orig):
            return (
                f"cannot open the SQLite database {parsed.database}; check that its directory "
                "exists and is writable (TRADEGUARD_DATABASE_URL, TRADEGUARD_DATA_DIR)"
            )
        return None
    host = parsed.host or "the local socket"
    where = f"PostgreSQL at {f'[{host}]' if ':' in host else host}:{parsed.port or 5432}"
    if isinstance(exc, socket.gaierror):
        return (
            f"cannot reach {where}: the host name does not resolve; check the host in "
            "TRADEGUARD_DATABASE_URL"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"cannot reach {where}: no answer in time; check the host, the port and any "
            "firewall in between (TRADEGUARD_DATABASE_URL)"
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"cannot reach {where}: connection refused; check that PostgreSQL is running "
            "and that TRADEGUARD_DATABASE_URL names its host and port"
        )
    if isinstance(exc, OSError):
        return (
            f"cannot reach {where}: {exc.strerror or type(exc).__name__}; check "
            "TRADEGUARD_DATABASE_URL and the network"
        )
    if isinstance(exc, sa_exc.DBAPIError):
        state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", "") or "")
        if state == _PG_NO_DATABASE:
            return (
                f"{where} has no database {parsed.database!r}; create it (createdb) or fix "
                "the database name in TRADEGUARD_DATABASE_URL"
            )
        if state.startswith(_PG_AUTHORIZATION_CLASSES):
            return (
                f"{where} refused the login; check the user and password in "
                "TRADEGUARD_DATABASE_URL and the server's pg_hba.conf"
            )
        if state.startswith(_PG_CONNECTION_CLASS) or state == _PG_CANNOT_CONNECT_NOW:
            return (
                f"cannot connect to {where}: the server is not accepting connections; "
                "try again, or check its log"
            )
    return None


DataDirOption = typer.Option(
    "--data-dir",
    help="Directory for the database, keys and certificates (env TRADEGUARD_DATA_DIR).",
    file_okay=False,
)
