"""`tradeguard apikeys`: staff list, show and revoke customers' API keys (issue #14, API-1).

Every command is run by a named staff member (`--as`, proved with a console code) who holds
admin:users right now, as the staff API routes require. Secrets are never shown: only the
owner saw each one, once, at creation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from tradeguard.access.common import authority, require
from tradeguard.access.domain import Permission
from tradeguard.apikeys.container import build_apikeys
from tradeguard.apikeys.service import ApiKeyService, KeyView
from tradeguard.cli.bootstrap import existing_settings
from tradeguard.cli.common import (
    EXIT_USAGE,
    CodeStdinOption,
    DataDirOption,
    StaffAsOption,
    VerifiedStaff,
    command_name,
    console,
    console_code,
    fail,
    record_denial,
    run_async,
    verify_staff,
)
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.errors import PermissionMissing
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import IdentityServices, start_identity
from tradeguard.ledger.domain import Party

T = TypeVar("T")

app = typer.Typer(
    help="Customers' API keys (staff): list, show, revoke at once.", no_args_is_help=True
)
JsonOption = typer.Option("--json", help="Print JSON.")
_KEY_ID = re.compile(r"tgk_id_[0-9a-f]{24}")


def _key_id(value: str) -> str:
    if not _KEY_ID.fullmatch(value):
        fail("KEY_ID must be a key id such as tgk_id_0123456789abcdef01234567", code=EXIT_USAGE)
    return value


def _as_admin(
    data_dir: Path | None,
    acting_as: str | None,
    code_stdin: bool,
    work: Callable[[ApiKeyService, str], Awaitable[T]],
) -> T:
    """Run `work` as the named staff member once they proved it with a console code and
    hold admin:users right now (their level and grants, as the API's guard reads them)."""
    if not acting_as:
        fail("name the staff member acting with --as USERNAME", code=EXIT_USAGE)
    code = console_code(acting_as, from_stdin=code_stdin)
    command = command_name("apikeys", work)
    settings = existing_settings(data_dir)

    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
            identity: IdentityServices = await start_identity(
                settings, clock=clock, ids=IdGenerator(clock), sessions=session_factory(engine)
            )
            verified: VerifiedStaff = await verify_staff(identity, acting_as, code)
            try:
                async with identity.unit_of_work() as session:
                    found = await authority(session, verified.user_id, identity.clock.now_ns())
                if found is None or not found.member.active:
                    raise PermissionMissing(
                        "only an active staff member manages API keys",
                        permission=Permission.ADMIN_USERS.value,
                    )
                require(found, Permission.ADMIN_USERS, "managing API keys")
            except PermissionMissing:
                await record_denial(identity, verified, Permission.ADMIN_USERS.value, command)
                raise
            keys = build_apikeys(settings, identity=identity).keys
            return await work(keys, verified.user_id)
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _row(key: KeyView, now_ns: int) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "user_id": key.user_id,
        "name": key.name,
        "scope": key.scope,
        "ip_allowlist": key.ip_allowlist,
        "status": key.status(now_ns),
        "created_at": ns_to_iso(key.created_ns),
        "expires_at": ns_to_iso(key.expires_ns),
        "last_used_at": ns_to_iso(key.last_used_ns) if key.last_used_ns else None,
        "revoked_reason": key.revoked_reason,
    }


def _print(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("id", "user", "scope", "status", "expires", "last used")
    for row in rows:
        table.add_row(
            row["id"],
            row["user_id"],
            row["scope"],
            row["status"],
            row["expires_at"],
            row["last_used_at"] or "-",
        )
    console.print(table)


@app.command("list")
def list_command(
    acting_as: Annotated[str | None, StaffAsOption] = None,
    user_id: Annotated[str | None, typer.Option("--user", help="Only this user's keys.")] = None,
    as_json: Annotated[bool, JsonOption] = False,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Every API key (or one user's), never a secret."""

    async def work(keys: ApiKeyService, _staff: str) -> list[dict[str, Any]]:
        async with keys.identity.reading() as session:
            found = await keys.list_keys(session, user_id)
        now = keys.clock.now_ns()
        return [_row(k, now) for k in found]

    _print(_as_admin(data_dir, acting_as, code_stdin, work), as_json)


@app.command("show")
def show_command(
    key_id: str,
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """One API key as JSON (never its secret)."""
    _key_id(key_id)

    async def work(keys: ApiKeyService, _staff: str) -> dict[str, Any] | None:
        async with keys.identity.reading() as session:
            found = await keys.find(session, key_id)
        return _row(found, keys.clock.now_ns()) if found is not None else None

    row = _as_admin(data_dir, acting_as, code_stdin, work)
    if row is None:
        fail(f"no API key {key_id}")
    console.print_json(json.dumps(row))


@app.command("revoke")
def revoke_command(
    key_id: str,
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Revoke an API key at once (a compromise, a closed account). Processes that cached the
    key stop accepting it within a second."""
    _key_id(key_id)

    async def work(keys: ApiKeyService, staff: str) -> KeyView:
        async with unit_of_work(keys.sessions) as session:
            return await keys.revoke(session, key_id, actor=Party("user", staff), reason="staff")

    revoked = _as_admin(data_dir, acting_as, code_stdin, work)
    console.print(f"revoked {revoked.key_id} (owner {revoked.user_id})")
