"""`tradeguard takeover`: the account-takeover defence (ATO-1, ATO-2) from the command line.

List and show takeover reviews and withdrawal freezes, close a review, lift a freeze with
four eyes (one staff member asks, a different one approves; each proves who they are with a
console code, `--as`), run the unusual-trading sweep once, and print the policy table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import Permission, standing_permissions
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
    operator_party,
    record_denial,
    run_async,
    settings_from,
    verify_staff,
)
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import PermissionMissing
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.fraud.container import FraudServices, build_fraud, policy_from
from tradeguard.fraud.domain import RESPONSE_ORDER, ReviewOutcome, TakeoverSignal
from tradeguard.fraud.schemas import freeze_out, review_out
from tradeguard.identity.container import start_identity
from tradeguard.ledger.domain import Party
from tradeguard.trading.container import build_trading

T = TypeVar("T")

app = typer.Typer(
    help="Account-takeover defence: reviews, withdrawal freezes (four-eyes lift), the sweep.",
    no_args_is_help=True,
)
reviews_app = typer.Typer(help="Takeover reviews: list, show, close.", no_args_is_help=True)
app.add_typer(reviews_app, name="reviews")
freeze_app = typer.Typer(
    help="Withdrawal freezes: list, ask to lift, approve (two staff members).",
    no_args_is_help=True,
)
app.add_typer(freeze_app, name="freeze")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AsOption = StaffAsOption
CodeStdin = Annotated[bool, CodeStdinOption]


def _id(value: str) -> str:
    if not _UUID.fullmatch(value or ""):
        raise typer.BadParameter("expected an id like 0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b")
    return value


def _text(value: str) -> str:
    value = (value or "").strip()
    if not 3 <= len(value) <= 500:
        raise typer.BadParameter("give 3 to 500 characters")
    return value


IdArgument = Annotated[str, typer.Argument(help="The id.", callback=_id)]


def _with_fraud(
    data_dir: Path | None,
    work: Callable[[FraudServices, AsyncSession, Party], Awaitable[T]],
    *,
    acting_as: str | None = None,
    code_stdin: bool = False,
    permission: Permission | None = None,
) -> T:
    """Run `work` in one unit of work: as the operator, or (with `acting_as`) as a staff
    member who proved who they are with a console code and holds `permission`."""
    if code_stdin and not acting_as:
        fail("--code-stdin reads the console code of the member named with --as", code=EXIT_USAGE)
    settings = existing_settings(data_dir)
    code = console_code(acting_as, from_stdin=code_stdin) if acting_as else None
    command = command_name("takeover", work)

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
            fraud = build_fraud(settings, identity=identity, trading=trading)
            actor = operator_party()
            if acting_as is not None and code is not None:
                verified = await verify_staff(identity, acting_as, code)
                if permission is not None:
                    await _require(identity, verified, permission, command)
                actor = Party("staff", verified.user_id)
            async with fraud.unit_of_work() as session:
                return await work(fraud, session, actor)
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _as_staff(
    data_dir: Path | None,
    work: Callable[[FraudServices, AsyncSession, Party], Awaitable[T]],
    *,
    acting_as: str | None,
    code_stdin: bool,
    permission: Permission,
    who: str,
) -> T:
    """A change made by a named staff member (never anonymously by the operator)."""
    if not acting_as:
        fail(f"name the staff member {who} with --as USERNAME", code=EXIT_USAGE)
    return _with_fraud(
        data_dir, work, acting_as=acting_as, code_stdin=code_stdin, permission=permission
    )


async def _require(
    identity: Any, verified: VerifiedStaff, permission: Permission, command: str
) -> None:
    # The member's standing permissions at their level (IAC-2), as over the API; a refusal
    # is recorded like the API guard's, then the command stops.
    if permission.value not in standing_permissions(verified.role, verified.level):
        await record_denial(identity, verified, permission.value, command)
        raise PermissionMissing(
            f"{verified.username} lacks {permission.value}", permission=permission.value
        )


def _print(rows: list[dict[str, Any]], as_json: bool, columns: tuple[str, ...]) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("none", markup=False)
    for row in rows:
        console.print("  ".join(str(row.get(c) or "-") for c in columns), markup=False)


# Reviews -----------------------------------------------------------------------------------


@reviews_app.command("list")
def reviews_list(
    status: Annotated[
        str | None, typer.Option(help="open or closed (default: both).", case_sensitive=False)
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's (an id).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 100,
    as_json: JsonOption = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Takeover reviews, newest first."""
    if status is not None and status.lower() not in {"open", "closed"}:
        fail("--status is open or closed", code=EXIT_USAGE)
    if user is not None:
        _id_or_fail(user, "--user")

    async def work(fraud: FraudServices, session: AsyncSession, _: Party) -> list[dict[str, Any]]:
        rows = await fraud.defence.reviews(
            session, status=status.lower() if status else None, user_id=user, limit=limit
        )
        return [review_out(row).model_dump(mode="json") for row in rows]

    _print(
        _with_fraud(data_dir, work),
        as_json,
        ("id", "status", "user_id", "trigger", "score", "opened_at", "assignee", "outcome"),
    )


def _id_or_fail(value: str, option: str) -> None:
    if not _UUID.fullmatch(value):
        fail(f"{option} takes an id like 0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b", code=EXIT_USAGE)


@reviews_app.command("show")
def reviews_show(
    review_id: IdArgument,
    as_json: JsonOption = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """One review with the user's active freezes and recent assessed sign-ins."""

    async def work(fraud: FraudServices, session: AsyncSession, _: Party) -> dict[str, Any]:
        view = await fraud.defence.review(session, review_id)
        return review_out(view.review, view).model_dump(mode="json")

    row = _with_fraud(data_dir, work)
    if as_json:
        print(json.dumps(row, indent=2))
        return
    for key in ("id", "status", "user_id", "trigger", "score", "signals", "opened_at"):
        console.print(f"{key:10} {row.get(key) or '-'}", markup=False)
    for key in ("assignee", "closed_at", "closed_by", "outcome", "note"):
        console.print(f"{key:10} {row.get(key) or '-'}", markup=False)
    for freeze in row.get("freezes") or []:
        console.print(f"freeze     {freeze['id']} since {freeze['frozen_at']}", markup=False)
    for sign_in in row.get("sign_ins") or []:
        console.print(
            f"sign-in    {sign_in['at']}  {sign_in['country'] or '--'}  score "
            f"{sign_in['score']}  {sign_in['response']}",
            markup=False,
        )


@reviews_app.command("close")
def reviews_close(
    review_id: IdArgument,
    outcome: Annotated[ReviewOutcome, typer.Option(help="What the review found.")],
    note: Annotated[str, typer.Option(help="Why (3-500 characters).", callback=_text)],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Close an open review (audited); its freeze stays until two staff members lift it."""

    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> dict[str, Any]:
        row = await fraud.defence.close_review(
            session, review_id=review_id, outcome=outcome, note=note, actor=actor
        )
        return review_out(row).model_dump(mode="json")

    row = _as_staff(
        data_dir,
        work,
        acting_as=acting_as,
        code_stdin=code_stdin,
        permission=Permission.FRAUD_REVIEW,
        who="closing it",
    )
    console.print(f"closed: {row['outcome']}", markup=False)


# Freezes -----------------------------------------------------------------------------------


@freeze_app.command("list")
def freeze_list(
    include_lifted: Annotated[
        bool, typer.Option("--all", help="Lifted freezes too (default: active only).")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 100,
    as_json: JsonOption = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Withdrawal freezes, newest first."""

    async def work(fraud: FraudServices, session: AsyncSession, _: Party) -> list[dict[str, Any]]:
        rows = await fraud.defence.freezes(session, active_only=not include_lifted, limit=limit)
        return [freeze_out(row).model_dump(mode="json") for row in rows]

    _print(
        _with_fraud(data_dir, work),
        as_json,
        ("id", "user_id", "frozen_at", "reason", "review_id", "lift_requested_by", "lifted_at"),
    )


@freeze_app.command("lift-request")
def freeze_lift_request(
    freeze_id: IdArgument,
    reason: Annotated[str, typer.Option(help="Why (3-500 characters).", callback=_text)],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Ask to lift a freeze (its review closed as a false alarm); another member approves."""

    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> str:
        row = await fraud.defence.request_lift(
            session, freeze_id=freeze_id, reason=reason, actor=actor
        )
        return row.id

    _as_staff(
        data_dir,
        work,
        acting_as=acting_as,
        code_stdin=code_stdin,
        permission=Permission.FRAUD_FREEZE,
        who="asking",
    )
    console.print(f"lift asked for: {freeze_id}; a second staff member approves", markup=False)


@freeze_app.command("approve")
def freeze_approve(
    freeze_id: IdArgument,
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Approve another member's request: withdrawals are allowed again."""

    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> str:
        row = await fraud.defence.approve_lift(session, freeze_id=freeze_id, actor=actor)
        return row.id

    _as_staff(
        data_dir,
        work,
        acting_as=acting_as,
        code_stdin=code_stdin,
        permission=Permission.FRAUD_FREEZE,
        who="approving",
    )
    console.print(f"lifted: {freeze_id}", markup=False)


# Jobs and policy ---------------------------------------------------------------------------


@app.command("sweep")
def sweep(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Check the trading after every recent risky sign-in now (the server does this every
    TRADEGUARD_TAKEOVER_SWEEP_INTERVAL_SECONDS)."""

    async def work(fraud: FraudServices, session: AsyncSession, _: Party) -> int:
        return await fraud.defence.sweep_trading(session)

    console.print(f"flagged: {_with_fraud(data_dir, work)}", markup=False)


@app.command("policy")
def policy(
    as_json: JsonOption = False, data_dir: Annotated[Path | None, DataDirOption] = None
) -> None:
    """The policy table in effect: each signal's score and each response's least score."""
    table = policy_from(settings_from(data_dir))
    weights = {s.value: table.weights[s] for s in TakeoverSignal}
    thresholds = {r.value: table.thresholds[r] for r in RESPONSE_ORDER[1:] if r in table.thresholds}
    if as_json:
        document = {
            "weights": weights,
            "thresholds": thresholds,
            "max_speed_kmh": table.max_speed_kmh,
            "min_travel_km": table.min_travel_km,
        }
        print(json.dumps(document, indent=2))
        return
    for name, score in weights.items():
        console.print(f"signal   {name:28} {score}", markup=False)
    for name, score in thresholds.items():
        console.print(f"response {name:28} from {score}", markup=False)
