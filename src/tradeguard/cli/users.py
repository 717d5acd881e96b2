"""`tradeguard users`: create traders, invite staff (one-time enrolment token), and administer
accounts: list, lock, unlock, change role, sign out, and second-factor resets that a second
admin must approve.

Administrative commands act as the operating-system user who runs them (`operator:<name>`
in the audit ledger and, as role OPERATOR with a pseudonym, in the customer's access log),
named from the process's uid, never from $USER. Second-factor resets are four-eyes decisions:
asking, approving and refusing act as a staff member named with `--as`, who proves it with
a console code from their own security-key session and needs the admin:users permission, so
the two eyes are two verified admins, not two operating-system accounts one person may hold.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from tradeguard.access.common import authority
from tradeguard.access.domain import STAFF_ROLES, Role
from tradeguard.backoffice.common import Actor
from tradeguard.backoffice.container import BackofficeServices, build_backoffice
from tradeguard.backoffice.users import FactorResetView
from tradeguard.cli.bootstrap import database_missing
from tradeguard.cli.common import (
    EXIT_USAGE,
    CodeStdinOption,
    DataDirOption,
    VerifiedStaff,
    command_name,
    console,
    console_code,
    fail,
    fail_on_error,
    operator_party,
    os_operator,
    password_from_stdin,
    record_denial,
    run_async,
    settings_from,
    verify_staff,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.errors import ConfigurationError, InvalidInput, PermissionMissing
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.authenticator_metadata import default_metadata_file, read_catalogue
from tradeguard.identity.container import start_identity
from tradeguard.identity.mfa.attestation import describe
from tradeguard.identity.service import NewUser, normalize_email, normalize_username
from tradeguard.identity.staff_enrolment import StaffEnrolmentService, StaffInvitation
from tradeguard.trading.container import build_trading

T = TypeVar("T")

app = typer.Typer(help="User accounts.", no_args_is_help=True)
STAFF_ROLE_NAMES = ", ".join(sorted(r.value for r in STAFF_ROLES))
INVITE_HINT = "tradeguard users invite-staff --email EMAIL --role ROLE"


async def _create(
    settings: Settings, *, username: str, email: str, password: str, role: Role
) -> NewUser:
    clock = SystemClock()
    engine = create_engine(settings.main_database_url)
    try:
        sessions = session_factory(engine)
        identity = await start_identity(
            settings, clock=clock, ids=IdGenerator(clock), sessions=sessions
        )
        async with unit_of_work(sessions) as session:
            return await identity.accounts.create_user(
                session,
                username=username,
                email=email,
                password=password,
                role=role,
                email_verified=True,
                actor=operator_party(),
            )
    finally:
        await engine.dispose()


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
    """Create a trader; the password is prompted for (or read with --password-stdin), never an
    argument.

    Staff (ADMIN, COMPLIANCE, SUPPORT) are not created here: `invite-staff` issues a one-time
    enrolment token, redeemed with a password and an attested security key together.
    """
    settings = settings_from(data_dir)
    if role in STAFF_ROLES:
        fail(
            f"{role.value} is a staff role: staff accounts are created with a one-time "
            "enrolment token, so that they never exist without an approved security key",
            hint=INVITE_HINT,
            code=EXIT_USAGE,
        )
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
        password = password_from_stdin()
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = run_async(
        _create(settings, username=username, email=email, password=password, role=role),
        database_url=settings.main_database_url,
    )
    console.print(f"created {user.role.value} {user.username} ({user.id})")


async def _invite(settings: Settings, *, email: str, role: Role) -> StaffInvitation:
    clock = SystemClock()
    engine = create_engine(settings.main_database_url)
    try:
        sessions = session_factory(engine)
        identity = await start_identity(
            settings, clock=clock, ids=IdGenerator(clock), sessions=sessions
        )
        enrolment = StaffEnrolmentService(
            identity.deps,
            accounts=identity.accounts,
            auth=identity.auth,
            token_seconds=settings.staff_enrolment_seconds,
        )
        async with unit_of_work(sessions) as session:
            return await enrolment.invite(session, email=email, role=role, actor=operator_party())
    finally:
        await engine.dispose()


@app.command("invite-staff")
def invite_staff(
    email: Annotated[str, typer.Option(help="The staff member's email address.")],
    role: Annotated[
        Role, typer.Option(help=f"Staff role to grant: {STAFF_ROLE_NAMES}.", case_sensitive=False)
    ],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Invite a staff member: print a one-time enrolment token for that address and role.

    The staff member redeems it (POST /api/v1/auth/staff-enrolment/options, then .../complete,
    at the server's public origin: TRADEGUARD_PUBLIC_ORIGIN, or derived from TRADEGUARD_HOST
    and TRADEGUARD_PORT, which must then match the server's) to set a username and password
    and register an attested security key in one step. The token works once, for that email
    address only, until it expires (TRADEGUARD_STAFF_ENROLMENT_SECONDS); a new invitation for
    the same address replaces it. Only its hash is stored: hand it over in person or through a
    channel you trust.
    """
    settings = settings_from(data_dir)
    if role not in STAFF_ROLES:
        fail(
            f"{role.value} is not a staff role (staff roles: {STAFF_ROLE_NAMES})",
            hint="traders sign up themselves, or: tradeguard users create USERNAME EMAIL",
            code=EXIT_USAGE,
        )
    try:
        normalize_email(email)
    except InvalidInput as exc:
        fail(exc.detail, code=EXIT_USAGE)
    if database_missing(settings):
        fail(
            "no tradeguard database here",
            hint="run `tradeguard init` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    invitation = run_async(
        _invite(settings, email=email, role=role), database_url=settings.main_database_url
    )
    hours = invitation.expires_in / 3600
    console.print(
        f"invited {invitation.role.value} {invitation.email} "
        f"(invitation {invitation.invitation_id}); the token below works once, "
        f"for that address only, for {hours:g} hours:"
    )
    console.print(invitation.token)
    origin = settings.public_origin
    # Plain text: an origin with an IPv6 address ("[fd00::1]") is no markup to drop.
    console.print(
        f"redeem at {origin}/api/v1/auth/staff-enrolment/options, then .../complete: POST "
        "requests from a page on that origin, where the server runs (WebAuthn binds the key "
        "to it; docs/access.md, staff enrolment)",
        markup=False,
    )
    if settings.public_origin_derived:
        # The origin printed is this command's, derived from its own settings: a server
        # started with `--port 9443` (make run SERVE_ARGS=...) is at another one.
        console.print(
            f"{origin} is derived from TRADEGUARD_HOST and TRADEGUARD_PORT (port "
            f"{settings.port}); for a server started with another --host or --port, run this "
            "with the same TRADEGUARD_HOST/TRADEGUARD_PORT, or set TRADEGUARD_PUBLIC_ORIGIN "
            "for both (the token works either way)",
            markup=False,
        )


@app.command("staff-authenticators")
def staff_authenticators(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="A metadata file to check instead of the configured one "
            "(TRADEGUARD_WEBAUTHN_STAFF_METADATA_FILE, else the shipped catalogue).",
        ),
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Check a staff authenticator catalogue and list the models it allows.

    Run it on a new FIDO MDS3-style file before pointing the setting at it: a file that cannot
    be read is refused here, as the server would refuse it.
    """
    settings = settings_from(data_dir)
    path = file or settings.webauthn_staff_metadata_file or default_metadata_file()
    try:
        catalogue = read_catalogue(path)
    except ConfigurationError as exc:
        fail_on_error(exc)
    models = list(catalogue.models.values())
    for line in describe(models):
        console.print(line)
    refused = sum(1 for m in models if m.revoked)
    serial = f", BLOB no. {catalogue.serial}" if catalogue.serial is not None else ""
    console.print(
        f"{len(models) - refused} models allowed, {refused} refused as revoked or "
        f"compromised ({path}{serial})"
    )


# Administration ---------------------------------------------------------------------------------

UserArgument = Annotated[str, typer.Argument(help="The user's username, email or id.")]
ReasonOption = Annotated[
    str,
    typer.Option(
        "--reason",
        help="Why, 10 to 500 characters (audited, and shown to the user in their access log).",
    ),
]


AsAdminOption = Annotated[
    str,
    typer.Option(
        "--as",
        help="The admin deciding (username): they give a console code from their security-key "
        "session (POST /api/v1/auth/console-code; prompted for, or --code-stdin) and need the "
        "admin:users permission (their level or a grant).",
    ),
]
CodeStdin = Annotated[bool, CodeStdinOption]


def _operator() -> Actor:
    return Actor.operator(os_operator())


def _with_backoffice(
    data_dir: Path | None,
    work: Callable[[BackofficeServices, Actor], Awaitable[T]],
    *,
    acting_as: str | None = None,
    code_stdin: bool = False,
) -> T:
    """Run `work` as the operator, or as the staff member named with `acting_as` once they
    have proved it with a console code from their security-key session."""
    settings = settings_from(data_dir)
    if database_missing(settings):
        fail(
            "no tradeguard database here",
            hint="run `tradeguard init` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    code = console_code(acting_as, from_stdin=code_stdin) if acting_as else None
    command = command_name("users", work)

    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
            ids = IdGenerator(clock)
            sessions = session_factory(engine)
            identity = await start_identity(settings, clock=clock, ids=ids, sessions=sessions)
            trading = build_trading(
                settings, clock=clock, ids=ids, sessions=sessions, with_venue=False
            )
            actor = _operator()
            verified: VerifiedStaff | None = None
            if acting_as is not None and code is not None:
                verified = await verify_staff(identity, acting_as, code)
                async with identity.unit_of_work() as session:
                    # What they hold right now, as the API's guard would read it (RBAC-5).
                    found = await authority(session, verified.user_id, clock.now_ns())
                held = found.permissions if found is not None and found.member.active else None
                actor = Actor.console_staff(
                    user_id=verified.user_id,
                    role=verified.role,
                    permissions=held or frozenset(),
                    operator=verified.operator,
                    session_id=verified.code_session_id,
                )
            try:
                return await work(build_backoffice(identity, trading.accounts), actor)
            except PermissionMissing as exc:
                if verified is not None:
                    await record_denial(identity, verified, exc.permission, command)
                raise
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


@app.command("list")
def list_users(
    query: Annotated[
        str | None,
        typer.Option("--query", "-q", help="A whole email address, or a username prefix."),
    ] = None,
    role: Annotated[Role | None, typer.Option(help="Only this role.", case_sensitive=False)] = None,
    locked: Annotated[bool, typer.Option("--locked", help="Only locked accounts.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """List users (at most 500), emails masked; --query searches."""

    async def work(services: BackofficeServices, actor: Actor) -> list[dict[str, str]]:
        async with services.unit_of_work() as session:
            page = await services.users.list_users(
                session,
                query=query,
                role=role,
                status="locked" if locked else None,
                cursor=None,
                limit=500,
                actor=actor,
            )
        return [
            {
                "id": u.id,
                "username": u.username,
                "email": u.email.masked or "",
                "role": u.role,
                "status": u.status,
                "created_at": ns_to_iso(u.created_ns),
            }
            for u in page.items
        ]

    rows = _with_backoffice(data_dir, work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "username", "email", "role", "status", "created")
    for r in rows:
        table.add_row(r["id"], r["username"], r["email"], r["role"], r["status"], r["created_at"])
    console.print(table)


@app.command("lock")
def lock(
    user: UserArgument,
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Lock an account: it cannot sign in until unlocked; its sessions end now."""

    async def work(services: BackofficeServices, actor: Actor) -> str:
        async with services.unit_of_work() as session:
            target = await services.users.resolve(session, user)
            ended = await services.users.lock(
                session, user_id=target.id, reason=reason, actor=actor
            )
        return f"locked {target.username} ({target.id}); {len(ended)} session(s) ended"

    console.print(_with_backoffice(data_dir, work))


@app.command("unlock")
def unlock(
    user: UserArgument,
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Unlock an account: lifts a staff lock, a second-factor lock and sign-in throttles."""

    async def work(services: BackofficeServices, actor: Actor) -> str:
        async with services.unit_of_work() as session:
            target = await services.users.resolve(session, user)
            cleared = await services.users.unlock(
                session, user_id=target.id, reason=reason, actor=actor
            )
        lifted = ", ".join(cleared) if cleared else "nothing was locked"
        return f"unlocked {target.username} ({target.id}): {lifted}"

    console.print(_with_backoffice(data_dir, work))


@app.command("set-role")
def set_role(
    user: UserArgument,
    role: Annotated[Role, typer.Argument(help="The new role.", case_sensitive=False)],
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Change a user's role; every session of theirs ends."""

    async def work(services: BackofficeServices, actor: Actor) -> str:
        async with services.unit_of_work() as session:
            target = await services.users.resolve(session, user)
            change = await services.users.set_role(
                session, user_id=target.id, role=role, reason=reason, actor=actor
            )
        line = (
            f"{target.username} ({target.id}) is now {change.role.value} "
            f"(was {change.previous.value}); {len(change.sessions_ended)} session(s) ended"
        )
        if change.needs_security_key:
            line += "; staff permissions work once they enrol a security key or passkey"
        return line

    console.print(_with_backoffice(data_dir, work))


@app.command("sign-out")
def sign_out(
    user: UserArgument,
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """End every session of a user now."""

    async def work(services: BackofficeServices, actor: Actor) -> str:
        async with services.unit_of_work() as session:
            target = await services.users.resolve(session, user)
            ended = await services.users.sign_out(
                session, user_id=target.id, reason=reason, actor=actor
            )
        return f"signed out {target.username} ({target.id}): {len(ended)} session(s) ended"

    console.print(_with_backoffice(data_dir, work))


def _reset_line(view: FactorResetView) -> str:
    return (
        f"{view.id}  {view.status}  user {view.user_id}  requested by {view.requested_by}  "
        f"expires {ns_to_iso(view.expires_ns)[:19]}Z"
    )


@app.command("reset-factors")
def reset_factors(
    user: UserArgument,
    reason: ReasonOption,
    acting_as: AsAdminOption,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Ask, as an admin named with --as (who gives a console code), for a reset of a user's
    second factors; a different admin approves it with `tradeguard users approve-reset`
    (the user is told by email either way)."""

    async def work(services: BackofficeServices, actor: Actor) -> FactorResetView:
        async with services.unit_of_work() as session:
            target = await services.users.resolve(session, user)
            return await services.users.request_factor_reset(
                session, user_id=target.id, reason=reason, actor=actor
            )

    view = _with_backoffice(data_dir, work, acting_as=acting_as, code_stdin=code_stdin)
    console.print(f"requested {view.id}: waiting for a second admin to approve")


@app.command("resets")
def resets(
    show_all: Annotated[
        bool, typer.Option("--all", help="Decided and expired requests too.")
    ] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """List second-factor reset requests (by default the ones waiting for approval)."""

    async def work(services: BackofficeServices, actor: Actor) -> list[FactorResetView]:
        async with services.unit_of_work() as session:
            return await services.users.factor_resets(
                session, pending_only=not show_all, limit=200, actor=actor
            )

    views = _with_backoffice(data_dir, work)
    for view in views:
        console.print(_reset_line(view))
    if not views:
        console.print("no reset requests" + ("" if show_all else " waiting for approval"))


@app.command("approve-reset")
def approve_reset(
    request_id: Annotated[str, typer.Argument(help="The reset request's id.")],
    acting_as: AsAdminOption,
    note: Annotated[
        str | None, typer.Option("--note", help="Why you approve (10 to 500 characters).")
    ] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Approve, as an admin named with --as (who gives a console code), a reset request that
    a different admin made: the user's factors are removed, their sessions end and they are
    told by email."""

    async def work(services: BackofficeServices, actor: Actor) -> str:
        async with services.unit_of_work() as session:
            view, ended = await services.users.approve_factor_reset(
                session, request_id=request_id, note=note, actor=actor
            )
        return f"approved {view.id}: factors removed, {len(ended)} session(s) ended"

    console.print(_with_backoffice(data_dir, work, acting_as=acting_as, code_stdin=code_stdin))


@app.command("refuse-reset")
def refuse_reset(
    request_id: Annotated[str, typer.Argument(help="The reset request's id.")],
    reason: ReasonOption,
    acting_as: AsAdminOption,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Refuse, as an admin named with --as (who gives a console code), a reset request (or
    withdraw your own); nothing changes."""

    async def work(services: BackofficeServices, actor: Actor) -> str:
        async with services.unit_of_work() as session:
            view = await services.users.refuse_factor_reset(
                session, request_id=request_id, reason=reason, actor=actor
            )
        return f"refused {view.id}"

    console.print(_with_backoffice(data_dir, work, acting_as=acting_as, code_stdin=code_stdin))
