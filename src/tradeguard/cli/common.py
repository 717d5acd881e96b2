"""What every command shares: settings from the environment and options, and error exits."""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from sqlalchemy import exc as sa_exc
from sqlalchemy import make_url

from tradeguard.access.domain import AccessLevel, Role, parse_level
from tradeguard.config import Settings, load_settings
from tradeguard.core.errors import ConfigurationError, InvalidInput, TradeguardError
from tradeguard.db.availability import DatabaseUnreachable
from tradeguard.identity.container import IdentityServices
from tradeguard.identity.guard import PERMISSION_CHECKED
from tradeguard.identity.sessions import Denied, Failure
from tradeguard.ledger.domain import LedgerEvent, Party

T = TypeVar("T")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILURE = 1
EXIT_USAGE = 2

# Far above any passphrase; stops a mistaken pipe (a file, a binary) from being hashed.
MAX_PASSWORD_LINE_CHARS = 4096
# A console code is 43 characters; anything much longer is not one.
MAX_CODE_CHARS = 128
# Operator names are stored in audit events and access logs; longer ones are cut.
MAX_OPERATOR_CHARS = 64

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


def os_operator() -> str:
    """The operating-system user running this command, named from the process's effective
    uid in the password database.

    Never from LOGNAME, USER, LNAME or USERNAME (what `getpass.getuser()` reads first):
    anyone can set those, so `USER=bob tradeguard ...` would be audited as bob. A uid with no
    entry (a container's arbitrary uid) is named by its number.
    """
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid:{uid}"
    return name[:MAX_OPERATOR_CHARS]


def operator_party() -> Party:
    """The operator as a ledger party: `operator:<operating-system user>`."""
    return Party("operator", os_operator())


def password_from_stdin() -> str:
    """One line of standard input, without its line ending (spaces are part of a passphrase)."""
    line = sys.stdin.readline(MAX_PASSWORD_LINE_CHARS + 1)
    password = line.removesuffix("\n").removesuffix("\r")
    if len(password) > MAX_PASSWORD_LINE_CHARS:
        fail(f"the password line is longer than {MAX_PASSWORD_LINE_CHARS} characters")
    if not password:
        fail("no password on standard input (--password-stdin reads its first line)")
    return password


CodeStdinOption = typer.Option(
    "--code-stdin",
    help="Read the --as staff member's console code (POST /api/v1/auth/console-code, from "
    "their security-key session) from the first line of standard input instead of prompting.",
)

StaffAsOption = typer.Option(
    "--as",
    help="The staff member (username) acting; they give a console code from their "
    "security-key session (POST /api/v1/auth/console-code; prompted for, or --code-stdin), "
    "then their authority is checked as over the API.",
)

STAFF_REFUSED = (
    "cannot act as {name!r}: only staff with an active security key can, with an unused "
    "console code from their own security-key session (POST /api/v1/auth/console-code)"
)


@dataclass(frozen=True, slots=True)
class VerifiedStaff:
    """A staff member who proved who they are at this console with a console code that
    their hardware-key session issued."""

    user_id: str
    username: str
    role: Role
    # The operating-system user who ran the command, audited next to the staff member.
    operator: str
    # The session (signed in or stepped up with a security key) that issued the code.
    code_session_id: str
    # Their access level (IAC-2): which of the role's permissions they hold standing.
    level: AccessLevel | None = None


def console_code(username: str, *, from_stdin: bool) -> str:
    """The console code of the staff member named with --as: asked for without echo (on
    standard error, so that --json output stays clean), or the first line of standard input."""
    if from_stdin:
        line = sys.stdin.readline(MAX_CODE_CHARS + 1)
        code = line.removesuffix("\n").removesuffix("\r").strip()
    else:
        prompted: str = typer.prompt(f"Console code of {username}", hide_input=True, err=True)
        code = prompted.strip()
    if not code:
        fail("no console code given (--code-stdin reads the first line)", code=EXIT_USAGE)
    # An over-long value is refused like a wrong code (spent nothing, counted below).
    return code[: MAX_CODE_CHARS + 1]


async def verify_staff(identity: IdentityServices, username: str, code: str) -> VerifiedStaff:
    """Prove that whoever runs the command is the staff member named with --as, or stop.

    A name given on the command line is only a claim: without this anyone who can run the
    CLI could approve a grant or a factor reset as any admin, and four eyes would be two
    names typed by one person. The proof is a single-use console code that the member's own
    session, signed in or stepped up with their security key, issued minutes ago (IAC-3:
    a password alone gives staff no authority, at the console no more than over the API).
    Failures back off like a sign-in and are committed before the command stops.
    """
    operator = os_operator()
    async with identity.unit_of_work() as session:
        outcome = await identity.auth.verify_staff_console_code(
            session, login=username, code=code, operator=operator
        )
    if isinstance(outcome, Denied):
        if outcome.failure is Failure.THROTTLED:
            fail(
                f"too many failed attempts to act as {username!r}; try again in "
                f"{outcome.retry_after_seconds or 1} seconds"
            )
        # One message for every refusal: unknown, customer, locked, no key, bad code.
        fail(STAFF_REFUSED.format(name=username))
    user, session_id = outcome
    return VerifiedStaff(
        user.id,
        user.username,
        Role(user.role),
        operator,
        session_id,
        level=parse_level(user.access_level),
    )


def command_name(group: str, work: Callable[..., object]) -> str:
    """The command a unit of work belongs to, e.g. `access revoke`: named from the command
    function that defines it (its `work` closure)."""
    function = work.__qualname__.split(".", 1)[0]
    return f"{group} {function.removesuffix('_command').replace('_', '-')}"


async def record_denial(
    identity: IdentityServices, verified: VerifiedStaff, permission: str, command: str
) -> None:
    """A staff member named with --as lacked `permission`: the same ledger event the API's
    guard writes for a denied check (type and shape), with "via": "cli", committed on its own
    although the command fails, so the repeated-denials rule (IAC-4) sees console attempts
    too. The subject is the session that issued their console code."""
    async with identity.unit_of_work() as session:
        await identity.deps.ledger.append(
            session,
            LedgerEvent(
                type=PERMISSION_CHECKED,
                actor=Party("user", verified.user_id),
                subject=Party("session", verified.code_session_id),
                data={
                    "permission": permission,
                    "allowed": False,
                    "route": f"cli: {command}",
                    "method": "CLI",
                    "via": "cli",
                    "operator": verified.operator,
                },
            ),
        )


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
            message = altered_text(exc)
        if message is None and isinstance(exc, OSError) and exc.filename is not None:
            # A file the command writes or reads (an export's directory, a key file).
            message = file_failure(exc)
        if message is None:
            raise
        fail(message)


def altered_text(exc: BaseException) -> str | None:
    """One line for a SQLite text value that is not UTF-8, which only a statement typed by
    hand writes (SQLite keeps whatever it is given); None for anything else."""
    if "Could not decode to UTF-8" not in str(getattr(exc, "orig", exc)):
        return None
    return (
        "a text value stored in the database is not valid UTF-8: the database was altered "
        "outside tradeguard; run `tradeguard audit verify`"
    )


def file_failure(exc: OSError) -> str:
    """One line for a file system error: the path and the system's reason."""
    return f"{exc.filename}: {exc.strerror or type(exc).__name__}"


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
