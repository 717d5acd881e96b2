"""`tradeguard users`: create accounts from the command line (the first admin, staff)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from tradeguard.access.domain import Role
from tradeguard.cli.bootstrap import database_missing
from tradeguard.cli.common import DataDirOption, console, fail, settings_from
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import TradeguardError
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import build_identity
from tradeguard.identity.service import NewUser
from tradeguard.ledger.domain import Party

app = typer.Typer(help="User accounts.", no_args_is_help=True)


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


@app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="Login name: 3-32 of a-z 0-9 . _ -")],
    email: Annotated[str, typer.Argument(help="Email address (treated as verified).")],
    role: Annotated[Role, typer.Option(help="Role to grant.", case_sensitive=False)] = Role.TRADER,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Create a user; the password is read from a prompt (or standard input), never an argument.

    Staff (ADMIN, COMPLIANCE, SUPPORT) must enrol a security key or passkey at first sign-in
    before any staff permission works.
    """
    settings = settings_from(data_dir)
    if database_missing(settings):
        fail(
            "no tradeguard database here", hint="run `tradeguard init` (or pass --data-dir)", code=2
        )
    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = asyncio.run(
            _create(settings, username=username, email=email, password=password, role=role)
        )
    except TradeguardError as exc:
        fail(exc.detail)
    console.print(f"created {user.role.value} {user.username} ({user.id})")
