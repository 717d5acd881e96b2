"""`tradeguard access`: the permission catalogue, just-in-time grants, break-glass, levels and
the access review (IAC-1, IAC-2, IAC-4).

Commands act for a named staff member (`--as USERNAME`), who must prove it with a single-use
console code issued by their own session signed in with their security key (asked for without
echo, or read with `--code-stdin`) and whose authority is then
checked from the database exactly as over the API (RBAC-5); or, where the brief allows it
(revoking a grant, setting a level, listing, the review), for the operator: the
operating-system user who ran the command (from the process's uid, never from $USER). Every
change is audited, in its transaction, with how it arrived ("via": "cli"), the operator's name
and, for a staff member, that a console code from their hardware-key session verified them.
A running server sees the change within a second.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.api import catalogue_out, grant_out
from tradeguard.access.common import Actor
from tradeguard.access.container import AccessServices, build_access
from tradeguard.access.domain import AccessLevel, GrantStatus
from tradeguard.access.models import AccessGrant
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
    os_operator,
    record_denial,
    run_async,
    verify_staff,
)
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.errors import PermissionMissing
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.identity import staff
from tradeguard.identity.container import start_identity

T = TypeVar("T")

app = typer.Typer(
    help="Staff access: catalogue, just-in-time grants, break-glass, levels, access review.",
    no_args_is_help=True,
)
breakglass_app = typer.Typer(help="Emergency access and its reviews.", no_args_is_help=True)
app.add_typer(breakglass_app, name="break-glass")

AsOption = StaffAsOption
JsonOption = typer.Option("--json", help="Print JSON.")
CodeStdin = Annotated[bool, CodeStdinOption]


def _with_access(
    data_dir: Path | None,
    acting_as: str | None,
    work: Callable[[AccessServices, AsyncSession, Actor], Awaitable[T]],
    *,
    code_stdin: bool = False,
) -> T:
    """Run `work` in one unit of work as the named staff member, once they have proved it
    with a console code (or, without --as, as the operator)."""
    if code_stdin and not acting_as:
        fail(
            "--code-stdin reads the console code of the staff member named with --as",
            code=EXIT_USAGE,
        )
    settings = existing_settings(data_dir)
    code = console_code(acting_as, from_stdin=code_stdin) if acting_as else None
    command = command_name("access", work)

    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
            ids = IdGenerator(clock)
            sessions = session_factory(engine)
            identity = await start_identity(settings, clock=clock, ids=ids, sessions=sessions)
            services = build_access(
                settings,
                clock=clock,
                ids=ids,
                ledger=identity.deps.ledger,
                notifier=identity.deps.notifier,
                sessions=sessions,
            )
            actor = Actor(None, operator=os_operator())
            verified: VerifiedStaff | None = None
            if acting_as is not None and code is not None:
                verified = await verify_staff(identity, acting_as, code)
                actor = Actor(
                    verified.user_id,
                    operator=verified.operator,
                    verified_by="hardware_key_session",
                    code_session_id=verified.code_session_id,
                )
            try:
                return await services.run(lambda session: work(services, session, actor))
            except PermissionMissing as exc:
                if verified is not None:
                    await record_denial(identity, verified, exc.permission, command)
                raise
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _required_as(acting_as: str | None) -> str:
    if not acting_as:
        fail("name the staff member acting with --as USERNAME", code=EXIT_USAGE)
    return acting_as


def _target(what: str) -> tuple[str | None, str | None]:
    """A level name is a level; anything else is taken as a permission."""
    return (None, what) if what in {level.value for level in AccessLevel} else (what, None)


async def _grants_json(
    services: AccessServices, session: AsyncSession, rows: list[AccessGrant]
) -> list[dict[str, Any]]:
    names: dict[str, str] = {}
    for user_id in {u for r in rows for u in (r.user_id, r.decided_by) if u}:
        member = await staff.member(session, user_id)
        if member is not None:
            names[user_id] = member.username
    now = services.deps.clock.now_ns()
    return [grant_out(r, names, now).model_dump() for r in rows]


def _print_grants(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(
        "id",
        "who",
        "kind",
        "for",
        "customers",
        "minutes",
        "status",
        "decided by",
        "until",
        "reason",
    )
    for r in rows:
        table.add_row(
            r["id"],
            r["username"] or r["user_id"],
            r["kind"],
            r["permission"] or f"level {r['level']}",
            "\n".join(r["customers"]) or "any",
            str(r["minutes"]),
            r["status"],
            r["decided_by_username"] or "-",
            (r["expires_at"] or r["decide_by"] or "-")[:19],
            r["reason"],
        )
    console.print(table)


def _print_one(row: dict[str, Any], verb: str) -> None:
    target = row["permission"] or f"the {row['level']} level"
    until = f" until {row['expires_at'][:19]}Z" if row["status"] == "approved" else ""
    scope = f", only for customers {', '.join(row['customers'])}" if row["customers"] else ""
    console.print(f"{verb} {row['kind']} {row['id']}: {target} for {row['username']}{scope}{until}")


# The catalogue -----------------------------------------------------------------------------------


@app.command("catalogue")
def catalogue(as_json: Annotated[bool, JsonOption] = False) -> None:
    """Every permission with its kind, description, grant cap and roles; and the levels."""
    document = catalogue_out()
    if as_json:
        print(json.dumps(document.model_dump(), indent=2))
        return
    permissions = Table(
        "permission", "kind", "description", "max grant", "roles", title="Permissions"
    )
    for entry in document.permissions:
        cap = f"{entry.max_grant_minutes} min" if entry.max_grant_minutes else "-"
        permissions.add_row(
            entry.permission, entry.kind, entry.description, cap, ", ".join(entry.roles)
        )
    console.print(permissions)
    levels = Table("level", "holds kinds", "description", "max grant", title="Access levels")
    for level in document.levels:
        cap = f"{level.max_grant_minutes} min" if level.max_grant_minutes else "-"
        levels.add_row(level.level, ", ".join(level.kinds), level.description, cap)
    console.print(levels)


# Just-in-time grants -----------------------------------------------------------------------------


@app.command("request")
def request(
    what: Annotated[str, typer.Argument(help="A permission (admin:users) or a level (operator).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (audited, shown to approvers).")],
    acting_as: Annotated[str | None, AsOption] = None,
    minutes: Annotated[
        int | None, typer.Option(help="How long (default and maximum: the cap).")
    ] = None,
    customers: Annotated[
        list[str] | None,
        typer.Option(
            "--customer",
            help="Only for this customer (a user id); repeat for up to 20. A use of the grant "
            "for another customer raises an access alert.",
        ),
    ] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Ask for a permission or a level of your role for a while; another admin decides."""
    name = _required_as(acting_as)
    permission, level = _target(what)

    async def work(services: AccessServices, session: AsyncSession, actor: Actor) -> dict[str, Any]:
        change = await services.grants.request(
            session,
            actor=actor,
            permission=permission,
            level=level,
            reason=reason,
            minutes=minutes,
            customers=customers,
        )
        return (await _grants_json(services, session, [change.grant]))[0]

    row = _with_access(data_dir, name, work, code_stdin=code_stdin)
    _print_one(row, "requested")


@app.command("approve")
def approve(
    grant_id: Annotated[str, typer.Argument(help="The request's id.")],
    acting_as: Annotated[str | None, AsOption] = None,
    note: Annotated[str | None, typer.Option(help="A note kept with the decision.")] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Approve another staff member's pending request (never your own)."""
    name = _required_as(acting_as)

    async def work(services: AccessServices, session: AsyncSession, actor: Actor) -> dict[str, Any]:
        change = await services.grants.approve(session, actor=actor, grant_id=grant_id, note=note)
        return (await _grants_json(services, session, [change.grant]))[0]

    _print_one(_with_access(data_dir, name, work, code_stdin=code_stdin), "approved")


@app.command("refuse")
def refuse(
    grant_id: Annotated[str, typer.Argument(help="The request's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (the requester is told).")],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Refuse another staff member's pending request."""
    name = _required_as(acting_as)

    async def work(services: AccessServices, session: AsyncSession, actor: Actor) -> dict[str, Any]:
        change = await services.grants.refuse(
            session, actor=actor, grant_id=grant_id, reason=reason
        )
        return (await _grants_json(services, session, [change.grant]))[0]

    _print_one(_with_access(data_dir, name, work, code_stdin=code_stdin), "refused")


@app.command("withdraw")
def withdraw(
    grant_id: Annotated[str, typer.Argument(help="Your request's id.")],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Withdraw your pending request, or give up your live grant early."""
    name = _required_as(acting_as)

    async def work(services: AccessServices, session: AsyncSession, actor: Actor) -> dict[str, Any]:
        change = await services.grants.withdraw(session, actor=actor, grant_id=grant_id)
        return (await _grants_json(services, session, [change.grant]))[0]

    _print_one(_with_access(data_dir, name, work, code_stdin=code_stdin), "withdrew")


@app.command("revoke")
def revoke(
    grant_id: Annotated[str, typer.Argument(help="The grant's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (the grantee is told).")],
    acting_as: Annotated[
        str | None,
        typer.Option(
            "--as", help="The admin revoking, who gives a console code (default: the operator)."
        ),
    ] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """End a live grant (approved or break-glass) now."""

    async def work(services: AccessServices, session: AsyncSession, actor: Actor) -> dict[str, Any]:
        change = await services.grants.revoke(
            session, actor=actor, grant_id=grant_id, reason=reason
        )
        return (await _grants_json(services, session, [change.grant]))[0]

    _print_one(_with_access(data_dir, acting_as, work, code_stdin=code_stdin), "revoked")


@app.command("list")
def list_grants(
    mine: Annotated[bool, typer.Option("--mine", help="Only the --as member's own.")] = False,
    pending: Annotated[
        bool, typer.Option("--pending", help="Only requests the --as member could decide.")
    ] = False,
    status: Annotated[
        GrantStatus | None, typer.Option(help="Only grants in this status.", case_sensitive=False)
    ] = None,
    acting_as: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="The staff member asking, who gives a console code (default: the operator).",
        ),
    ] = None,
    as_json: Annotated[bool, JsonOption] = False,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """List requests and grants, newest first."""
    if (mine or pending) and not acting_as:
        fail("--mine and --pending need --as USERNAME", code=EXIT_USAGE)
    if mine and pending:
        fail("choose one of --mine and --pending", code=EXIT_USAGE)

    async def work(
        services: AccessServices, session: AsyncSession, actor: Actor
    ) -> list[dict[str, Any]]:
        if mine:
            rows = list(await services.grants.mine(session, actor=actor))
        elif pending:
            rows = await services.grants.pending_for(session, actor=actor)
        else:
            rows = await services.grants.all(session, actor=actor, status=status)
        return await _grants_json(services, session, rows)

    _print_grants(_with_access(data_dir, acting_as, work, code_stdin=code_stdin), as_json)


@app.command("expire")
def expire(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Record the expiry of ended grants and undecided requests now (the server does this by
    itself every few seconds; access ends on time either way)."""

    async def work(services: AccessServices, session: AsyncSession, actor: Actor) -> int:
        return await services.grants.expire_due(session)

    console.print(f"recorded {_with_access(data_dir, None, work)} expiries")


# Levels ------------------------------------------------------------------------------------------


@app.command("level")
def level(
    user: Annotated[str, typer.Argument(help="The staff member's username or id.")],
    new_level: Annotated[
        AccessLevel, typer.Argument(help="read-only, operator, engineer or admin.", metavar="LEVEL")
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (audited; they are told).")],
    acting_as: Annotated[
        str | None,
        typer.Option(
            "--as", help="The admin changing it, who gives a console code (default: the operator)."
        ),
    ] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Set a staff member's standing access level."""

    async def work(services: AccessServices, session: AsyncSession, actor: Actor) -> str:
        change = await services.levels.set_level(
            session, actor=actor, user=user, level=new_level.value, reason=reason
        )
        was = change.previous.value if change.previous else "unset"
        return f"{change.member.username}: level {was} -> {change.level.value}"

    console.print(_with_access(data_dir, acting_as, work, code_stdin=code_stdin))


# Break-glass -------------------------------------------------------------------------------------


@breakglass_app.command("take")
def breakglass_take(
    what: Annotated[str, typer.Argument(help="A permission (admin:users) or a level (admin).")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (every admin and compliance sees it).")
    ],
    acting_as: Annotated[str | None, AsOption] = None,
    minutes: Annotated[
        int | None, typer.Option(help="How long (default and maximum: the break-glass cap).")
    ] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Take emergency access without approval; everyone who must know is alerted."""
    name = _required_as(acting_as)
    permission, level_name = _target(what)

    async def work(services: AccessServices, session: AsyncSession, actor: Actor) -> str:
        change, review = await services.breakglass.take(
            session,
            actor=actor,
            permission=permission,
            level=level_name,
            reason=reason,
            minutes=minutes,
        )
        until = ns_to_iso(change.grant.expires_ns or 0)[:19]
        return f"break-glass grant {change.grant.id} until {until}Z; review item {review.id}"

    console.print(_with_access(data_dir, name, work, code_stdin=code_stdin))


@breakglass_app.command("list")
def breakglass_list(
    show_all: Annotated[bool, typer.Option("--all", help="Closed items too.")] = False,
    acting_as: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="The staff member asking, who gives a console code (default: the operator).",
        ),
    ] = None,
    as_json: Annotated[bool, JsonOption] = False,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Break-glass review items (open ones unless --all)."""

    async def work(
        services: AccessServices, session: AsyncSession, actor: Actor
    ) -> list[dict[str, Any]]:
        items = await services.breakglass.reviews(session, actor=actor, open_only=not show_all)
        grants = await _grants_json(services, session, [g for _, g in items])
        return [
            {
                "id": r.id,
                "open": r.closed_ns is None,
                "taker_id": r.taker_id,
                "opened_at": ns_to_iso(r.opened_ns),
                "closed_at": ns_to_iso(r.closed_ns) if r.closed_ns else None,
                "closed_by": r.closed_by,
                "note": r.note,
                "grant": grant,
            }
            for (r, _), grant in zip(items, grants, strict=True)
        ]

    rows = _with_access(data_dir, acting_as, work, code_stdin=code_stdin)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("review", "open", "taker", "for", "opened", "reason", "note")
    for row in rows:
        grant = row["grant"]
        table.add_row(
            row["id"],
            "yes" if row["open"] else "no",
            grant["username"] or row["taker_id"],
            grant["permission"] or f"level {grant['level']}",
            row["opened_at"][:19],
            grant["reason"],
            row["note"] or "-",
        )
    console.print(table)


@breakglass_app.command("close")
def breakglass_close(
    review_id: Annotated[str, typer.Argument(help="The review item's id.")],
    note: Annotated[str, typer.Option("--note", help="What was checked (kept in the ledger).")],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Close another admin's break-glass review item with a note."""
    name = _required_as(acting_as)

    async def work(services: AccessServices, session: AsyncSession, actor: Actor) -> str:
        review, _ = await services.breakglass.close(
            session, actor=actor, review_id=review_id, note=note
        )
        return f"closed review item {review.id}"

    console.print(_with_access(data_dir, name, work, code_stdin=code_stdin))


# The access review -------------------------------------------------------------------------------


@app.command("review")
def review(
    output: Annotated[
        str, typer.Option("--format", help="csv or json.", case_sensitive=False)
    ] = "json",
    unused_days: Annotated[
        int | None,
        typer.Option(help="Flag permissions unused this many days (default from settings)."),
    ] = None,
    acting_as: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="The staff member asking, who gives a console code (default: the operator).",
        ),
    ] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """The access review: every staff member, what they hold, who granted it, when each
    permission was last used; permissions unused for N days flagged for removal."""
    fmt = output.lower()
    if fmt not in {"csv", "json"}:
        fail("--format must be csv or json", code=EXIT_USAGE)

    async def work(services: AccessServices, session: AsyncSession, actor: Actor) -> str:
        report = await services.review.produce(
            session, actor=actor, unused_days=unused_days, output=fmt
        )
        return report.as_csv() if fmt == "csv" else json.dumps(report.as_json(), indent=2) + "\n"

    sys.stdout.write(_with_access(data_dir, acting_as, work, code_stdin=code_stdin))
