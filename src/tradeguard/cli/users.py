"""`tradeguard users`: create accounts from the command line (the first admin, staff)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tradeguard.access.domain import Role
from tradeguard.cli.bootstrap import database_missing
from tradeguard.cli.common import EXIT_USAGE, DataDirOption, console, fail, run_async, settings_from
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import InvalidInput
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import build_identity
from tradeguard.identity.service import NewUser, normalize_email, normalize_username
from tradeguard.ledger.domain import Party

app = typer.Typer(help="User accounts.", no_args_is_help=True)

# Far above any passphrase; stops a mistaken pipe (a file, a binary) from being hashed.
MAX_PASSWORD_LINE_CHARS = 4096


async def _create(
    settings: Settings, *, username: str, email: str, password: str, role: Role
) -> NewUser:
    clock = SystemClock()
    engine = create_engine(settings.main_database_url)
    try:
        sessions = session_factory(engine)
        identity = build_identity(settings, clock=clock, ids=IdGenerator(clock), sessions=sessions)
        async with unit_of_work(sessions) as session:
            return await identity.accounts.create_user(
                session,
                username=username,
                email=email,
                password=password,
                role=role,
                email_verified=True,
                actor=Party("operator", "cli"),
            )
    finally:
        await engine.dispose()


def _password_from_stdin() -> str:
    """One line of standard input, without its line ending (spaces are part of a passphrase)."""
    line = sys.stdin.readline(MAX_PASSWORD_LINE_CHARS + 1)
    password = line.removesuffix("\n").removesuffix("\r")
    if len(password) > MAX_PASSWORD_LINE_CHARS:
        fail(f"the password line is longer than {MAX_PASSWORD_LINE_CHARS} characters")
    if not password:
        fail("no password on standard input (--password-stdin reads its first line)")
    return password


@app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="Login name: 3-32 of a-z 0-9 . _ -")],
    email: Annotated[str, typer.Argument(help="Email address (treated as verified).")],
    role: Annotated[Role, typer.Option(help="Role to grant.", case_sensitive=False)] = Role.TRADER,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from the first line of standard input (for scripts); "
            "no prompt, no confirmation.",
        ),
    ] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Create a user; the password is prompted for (or read with --password-stdin), never an
    argument.

    Staff (ADMIN, COMPLIANCE, SUPPORT) must enrol a security key or passkey at first sign-in
    before any staff permission works.
    """
    settings = settings_from(data_dir)
    # Everything that can be checked without the password is checked before asking for it.
    try:
        normalize_username(username)
        normalize_email(email)
    except InvalidInput as exc:
        fail(exc.detail, code=EXIT_USAGE)
    if database_missing(settings):
        fail(
            "no tradeguard database here",
            hint="run `tradeguard init` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    if password_stdin:
        password = _password_from_stdin()
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = run_async(
        _create(settings, username=username, email=email, password=password, role=role),
        database_url=settings.main_database_url,
    )
    console.print(f"created {user.role.value} {user.username} ({user.id})")
