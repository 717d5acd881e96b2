"""`tradeguard users`: traders from the command line; staff by one-time enrolment token."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tradeguard.access.domain import STAFF_ROLES, Role
from tradeguard.cli.bootstrap import database_missing
from tradeguard.cli.common import (
    EXIT_USAGE,
    DataDirOption,
    console,
    fail,
    fail_on_error,
    run_async,
    settings_from,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import ConfigurationError, InvalidInput
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.authenticator_metadata import default_metadata_file, read_catalogue
from tradeguard.identity.container import build_identity
from tradeguard.identity.mfa.attestation import describe
from tradeguard.identity.service import NewUser, normalize_email, normalize_username
from tradeguard.identity.staff_enrolment import StaffEnrolmentService, StaffInvitation
from tradeguard.ledger.domain import Party

app = typer.Typer(help="User accounts.", no_args_is_help=True)
STAFF_ROLE_NAMES = ", ".join(sorted(r.value for r in STAFF_ROLES))
INVITE_HINT = "tradeguard users invite-staff --email EMAIL --role ROLE"

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
        password = _password_from_stdin()
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
        identity = build_identity(settings, clock=clock, ids=IdGenerator(clock), sessions=sessions)
        enrolment = StaffEnrolmentService(
            identity.deps,
            accounts=identity.accounts,
            auth=identity.auth,
            token_seconds=settings.staff_enrolment_seconds,
        )
        async with unit_of_work(sessions) as session:
            return await enrolment.invite(
                session, email=email, role=role, actor=Party("operator", "cli")
            )
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

    The staff member redeems it (POST /api/v1/auth/staff-enrolment/options, then .../complete)
    to set a username and password and register an attested security key in one step. The
    token works once, for that email address only, until it expires
    (TRADEGUARD_STAFF_ENROLMENT_SECONDS); a new invitation for the same address replaces it.
    Only its hash is stored: hand it over in person or through a channel you trust.
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
    console.print(
        f"redeem at {settings.public_origin}/api/v1/auth/staff-enrolment/options, then "
        ".../complete (docs/access.md, staff enrolment)"
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
