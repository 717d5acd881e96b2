"""`tradeguard kyc`: account applications from the command line (issue #13, KYC-1, KYC-2).

Work the review queue (`applications list | show | approve | refuse | request-info`), read
and set a customer's risk rating (`rating show | set`), and list the periodic reviews that
are due (`reviews due`). Reading shows personal data masked, as the API does; every change
is made by a staff member named with --as who proves it with a console code and holds
kyc:review right now. Other KYC commands mount under this group (`kyc_app.add_typer`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from tradeguard.access.common import authority, require
from tradeguard.access.domain import Permission
from tradeguard.cli.bootstrap import existing_settings
from tradeguard.cli.common import (
    EXIT_USAGE,
    CodeStdinOption,
    DataDirOption,
    StaffAsOption,
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
from tradeguard.identity.container import start_identity
from tradeguard.kyc.container import build_kyc
from tradeguard.kyc.contracts import RiskRating
from tradeguard.kyc.onboarding.container import OnboardingServices
from tradeguard.kyc.onboarding.domain import ApplicationStatus
from tradeguard.kyc.onboarding.models import Application
from tradeguard.ledger.domain import Party
from tradeguard.trading.container import build_trading

T = TypeVar("T")

app = typer.Typer(
    help="Know your customer: account applications, risk ratings, periodic reviews.",
    no_args_is_help=True,
)
applications_app = typer.Typer(
    help="Account applications: the review queue and decisions.", no_args_is_help=True
)
rating_app = typer.Typer(help="A customer's risk rating (low, medium, high).", no_args_is_help=True)
reviews_app = typer.Typer(help="Periodic reviews of approved customers.", no_args_is_help=True)
app.add_typer(applications_app, name="applications")
app.add_typer(rating_app, name="rating")
app.add_typer(reviews_app, name="reviews")

AsOption = StaffAsOption
JsonOption = typer.Option("--json", help="Print JSON.")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _id(value: str) -> str:
    if not _UUID.fullmatch(value):
        fail(
            "the application must be an id such as 0190c5a0-0000-7000-8000-000000000001",
            code=EXIT_USAGE,
        )
    return value


def _with_onboarding(
    data_dir: Path | None, work: Callable[[OnboardingServices, Any], Awaitable[T]]
) -> T:
    settings = existing_settings(data_dir)

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
            # Wired to identity documents (and screening) as in the app: approvals make the
            # same checks as over the API.
            services = build_kyc(
                settings, identity=identity, accounts=trading.accounts, sessions=sessions
            ).onboarding
            return await work(services, identity)
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _as_reviewer(
    data_dir: Path | None,
    acting_as: str | None,
    code_stdin: bool,
    work: Callable[[OnboardingServices, Party], Awaitable[T]],
) -> T:
    """Run `work` as the named staff member once they proved it with a console code and
    hold kyc:review right now (their level and grants, as the API's guard reads them)."""
    if not acting_as:
        fail("name the staff member acting with --as USERNAME", code=EXIT_USAGE)
    code = console_code(acting_as, from_stdin=code_stdin)
    command = command_name("kyc", work)

    async def staff_work(services: OnboardingServices, identity: Any) -> T:
        verified = await verify_staff(identity, acting_as, code)
        try:
            async with identity.unit_of_work() as session:
                found = await authority(session, verified.user_id, identity.clock.now_ns())
            if found is None or not found.member.active:
                raise PermissionMissing(
                    "only an active staff member reviews applications",
                    permission=Permission.KYC_REVIEW.value,
                )
            require(found, Permission.KYC_REVIEW, "reviewing account applications")
        except PermissionMissing:
            await record_denial(identity, verified, Permission.KYC_REVIEW.value, command)
            raise
        return await work(services, Party("user", verified.user_id))

    return _with_onboarding(data_dir, staff_work)


def _row(row: Application) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "status": row.status,
        "submitted_at": ns_to_iso(row.submitted_ns) if row.submitted_ns else None,
        "rating": row.rating,
        "screening": row.screening,
        "duplicate_tax_id": row.duplicate_tax_id,
        "first_approver": row.first_approver,
        "next_review_on": row.next_review_on,
    }


def _print_rows(rows: list[dict[str, Any]], as_json: bool, empty: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(empty)
        return
    table = Table("id", "user", "status", "submitted", "rating", "screening", "next review")
    for r in rows:
        table.add_row(
            r["id"],
            r["user_id"],
            r["status"],
            r["submitted_at"] or "-",
            r["rating"] or "-",
            r["screening"] or "-",
            r["next_review_on"] or "-",
        )
    console.print(table)


StatusOption = typer.Option(
    "--status",
    help="Only applications in this status: draft, submitted (the queue, default), "
    "info_requested, approved, refused, withdrawn.",
)


@applications_app.command("list")
def applications_list(
    status: Annotated[str, StatusOption] = "submitted",
    as_json: Annotated[bool, JsonOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Applications in a status, oldest submission first (default: the review queue)."""
    try:
        wanted = ApplicationStatus(status)
    except ValueError:
        fail(f"unknown status {status!r}", code=EXIT_USAGE)

    async def work(services: OnboardingServices, _: Any) -> list[dict[str, Any]]:
        async with unit_of_work(services.sessions) as session:
            return [_row(r) for r in await services.applications.listing(session, [wanted])]

    _print_rows(_with_onboarding(data_dir, work), as_json, f"no application is {wanted.value}")


@applications_app.command("show")
def applications_show(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    as_json: Annotated[bool, JsonOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """One application with personal data masked, its rating and what blocks approval."""
    application_id = _id(application_id)

    async def work(services: OnboardingServices, _: Any) -> dict[str, Any]:
        async with unit_of_work(services.sessions) as session:
            view = await services.applications.staff_view(session, application_id)
            blockers = await services.applications.blockers(session, view.row)
            return _row(view.row) | {
                "tax_id_last4": view.row.tax_id_last4,
                "sections": view.sections,
                "rating_factors": view.row.rating_factors or [],
                "blockers": blockers,
            }

    shown = _with_onboarding(data_dir, work)
    if as_json:
        print(json.dumps(shown, indent=2))
        return
    console.print(f"application {shown['id']} of user {shown['user_id']}: {shown['status']}")
    console.print(f"tax id: ***{shown['tax_id_last4'] or ''}")
    for section, fields in shown["sections"].items():
        console.print(f"[bold]{section}[/bold]")
        for name, value in fields.items():
            console.print(f"  {name}: {value}")
    console.print(f"rating: {shown['rating'] or '-'}")
    for factor in shown["rating_factors"]:
        console.print(f"  +{factor['points']} {factor['code']}: {factor['explanation']}")
    console.print("blocks approval: " + (", ".join(shown["blockers"]) or "nothing"))


@applications_app.command("approve")
def applications_approve(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Approve (sanctions clear, identity and address verified, EDD when high risk, no open
    duplicate tax id); a high-risk application needs a second, different staff member."""
    application_id = _id(application_id)

    async def approve(services: OnboardingServices, actor: Party) -> dict[str, Any]:
        async with unit_of_work(services.sessions) as session:
            row = await services.applications.approve(
                session, application_id=application_id, actor=actor
            )
            return _row(row)

    row = _as_reviewer(data_dir, acting_as, code_stdin, approve)
    if row["status"] == ApplicationStatus.APPROVED.value:
        console.print(f"application {row['id']} approved; the customer's accounts are open")
    else:
        console.print(
            f"application {row['id']} approved once (high risk): a second staff member approves"
        )


@applications_app.command("refuse")
def applications_refuse(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (the customer is told).")],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Refuse a submitted application; the customer is emailed the reason."""
    application_id = _id(application_id)

    async def refuse(services: OnboardingServices, actor: Party) -> dict[str, Any]:
        async with unit_of_work(services.sessions) as session:
            row = await services.applications.refuse(
                session, application_id=application_id, reason=reason, actor=actor
            )
            return _row(row)

    row = _as_reviewer(data_dir, acting_as, code_stdin, refuse)
    console.print(f"application {row['id']} refused")


@applications_app.command("request-info")
def applications_request_info(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    message: Annotated[str, typer.Option("--message", help="What the customer should add.")],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Send a submitted application back to the customer with a message (emailed)."""
    application_id = _id(application_id)

    async def request_info(services: OnboardingServices, actor: Party) -> dict[str, Any]:
        async with unit_of_work(services.sessions) as session:
            row = await services.applications.request_info(
                session, application_id=application_id, message=message, actor=actor
            )
            return _row(row)

    row = _as_reviewer(data_dir, acting_as, code_stdin, request_info)
    console.print(f"application {row['id']} sent back to the customer")


@rating_app.command("show")
def rating_show(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    as_json: Annotated[bool, JsonOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """The rating, its score and each factor with its points and explanation."""
    application_id = _id(application_id)

    async def work(services: OnboardingServices, _: Any) -> dict[str, Any]:
        async with unit_of_work(services.sessions) as session:
            row = await services.applications.get(session, application_id)
            return {
                "id": row.id,
                "rating": row.rating,
                "score": row.rating_score,
                "overridden": row.rating_overridden,
                "factors": row.rating_factors or [],
                "next_review_on": row.next_review_on,
            }

    shown = _with_onboarding(data_dir, work)
    if as_json:
        print(json.dumps(shown, indent=2))
        return
    overridden = " (set by staff)" if shown["overridden"] else ""
    console.print(f"rating {shown['rating'] or '-'}{overridden}, score {shown['score']}")
    for factor in shown["factors"]:
        console.print(f"  +{factor['points']} {factor['code']}: {factor['explanation']}")
    console.print(f"next review: {shown['next_review_on'] or '-'}")


@rating_app.command("set")
def rating_set(
    application_id: Annotated[str, typer.Argument(help="The application's id.")],
    rating: Annotated[str, typer.Option("--rating", help="low, medium or high.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (audited).")],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Set the rating instead of the computed one, with the reason (a ledger event)."""
    application_id = _id(application_id)
    try:
        wanted = RiskRating(rating)
    except ValueError:
        fail("--rating is low, medium or high", code=EXIT_USAGE)

    async def set_rating(services: OnboardingServices, actor: Party) -> dict[str, Any]:
        async with unit_of_work(services.sessions) as session:
            row = await services.applications.override_rating(
                session, application_id=application_id, rating=wanted, reason=reason, actor=actor
            )
            return _row(row) | {"proposed": row.rating_proposed}

    row = _as_reviewer(data_dir, acting_as, code_stdin, set_rating)
    if row["proposed"]:
        # Lowering a rating is four-eyes: a second staff member sets the same rating.
        console.print(
            f"application {row['id']} still rated {row['rating']}: {row['proposed']} proposed, "
            "a second staff member must set it too"
        )
        return
    console.print(f"application {row['id']} rated {row['rating']}")


@reviews_app.command("due")
def reviews_due(
    on: Annotated[
        str | None, typer.Option("--on", help="Due on or before this day (default today).")
    ] = None,
    as_json: Annotated[bool, JsonOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Approved customers whose periodic review is due (high risk yearly, medium every two
    years, low every three)."""
    try:
        day = date.fromisoformat(on) if on else None
    except ValueError:
        fail("--on is a date such as 2027-01-31", code=EXIT_USAGE)

    async def work(services: OnboardingServices, _: Any) -> list[dict[str, Any]]:
        async with unit_of_work(services.sessions) as session:
            return [_row(r) for r in await services.applications.reviews_due(session, day)]

    _print_rows(_with_onboarding(data_dir, work), as_json, "no periodic review is due")
