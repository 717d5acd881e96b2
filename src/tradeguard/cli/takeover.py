"""`tradeguard takeover`: the account-takeover defence (ATO-1, ATO-2) from the command line.

List and show takeover reviews and withdrawal freezes, close a review, lift a freeze with
four eyes (one staff member asks, a different one approves; each proves who they are with a
console code, `--as`), run the unusual-trading sweep once, print the policy table, and work
an account recovery (ATO-3, `takeover recovery ...`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
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
from tradeguard.core.errors import InvalidInput, PermissionMissing
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.fraud.container import FraudServices, build_fraud, policy_from
from tradeguard.fraud.domain import RESPONSE_ORDER, ReviewOutcome, TakeoverSignal
from tradeguard.fraud.recovery import Verification, parse_birth_date
from tradeguard.fraud.recovery_schemas import (
    approval_out,
    case_out,
    mark_out,
    timeline_out,
    to_ns,
)
from tradeguard.fraud.schemas import freeze_out, review_out
from tradeguard.fraud.timeline import CaseOutcome, ProposalAction, StatedIdentity, VerifyMethod
from tradeguard.identity.container import start_identity
from tradeguard.kyc.container import build_kyc
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
            kyc = build_kyc(
                settings, identity=identity, accounts=trading.accounts, sessions=sessions
            )
            fraud = build_fraud(
                settings,
                identity=identity,
                trading=trading,
                applicants=kyc.onboarding.applicants,
                evidence=kyc.documents.evidence,
            )
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


# Account recovery (ATO-3) ------------------------------------------------------------------

recovery_app = typer.Typer(
    help=(
        "Account recovery after a takeover (ATO-3): open a case, re-verify identity, reset "
        "credentials, read the activity timeline, mark and reverse fraudulent trades, close. "
        "Reset, reverse and close are proposals a different staff member approves."
    ),
    no_args_is_help=True,
)
app.add_typer(recovery_app, name="recovery")
ProposalArgument = Annotated[str, typer.Argument(help="The proposal's id.", callback=_id)]
CaseArgument = Annotated[str, typer.Argument(help="The recovery case's id.", callback=_id)]
ReasonOption = Annotated[str, typer.Option(help="Why (3-500 characters).", callback=_text)]


def _recovering(
    data_dir: Path | None,
    work: Callable[[FraudServices, AsyncSession, Party], Awaitable[T]],
    *,
    acting_as: str | None,
    code_stdin: bool,
    who: str,
) -> T:
    return _as_staff(
        data_dir,
        work,
        acting_as=acting_as,
        code_stdin=code_stdin,
        permission=Permission.FRAUD_RECOVER,
        who=who,
    )


def _instant(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} takes a date and time like 2026-01-05T15:00:00Z", code=EXIT_USAGE)
    if moment.tzinfo is None:
        fail(f"{option} needs a time zone (Z or +hh:mm)", code=EXIT_USAGE)
    return to_ns(moment)


@recovery_app.command("open")
def recovery_open(
    user: Annotated[str | None, typer.Option(help="The customer's user id.")] = None,
    review: Annotated[str | None, typer.Option(help="Or: their takeover review's id.")] = None,
    note: Annotated[str | None, typer.Option(help="A note (3-500 characters).")] = None,
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Open a recovery for a customer, directly (--user) or from a review (--review)."""
    if (user is None) == (review is None):
        fail("give exactly one of --user and --review", code=EXIT_USAGE)
    for value, option in ((user, "--user"), (review, "--review")):
        if value is not None:
            _id_or_fail(value, option)
    if note is not None:
        note = _text(note)

    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> str:
        case = await fraud.recovery.open_case(
            session, actor=actor, user_id=user, review_id=review, note=note
        )
        return case.id

    case_id = _recovering(
        data_dir, work, acting_as=acting_as, code_stdin=code_stdin, who="opening it"
    )
    console.print(f"opened: {case_id}", markup=False)


@recovery_app.command("verify")
def recovery_verify(
    case_id: CaseArgument,
    method: Annotated[
        VerifyMethod, typer.Option(help="kyc_record (what the caller states) or document.")
    ],
    birth_date: Annotated[
        str | None, typer.Option(help="kyc_record: the stated birth date, YYYY-MM-DD.")
    ] = None,
    postal_code: Annotated[
        str | None, typer.Option(help="kyc_record: the stated residential postal code.")
    ] = None,
    tax_id_last4: Annotated[
        str | None, typer.Option(help="kyc_record: the stated tax id's last four digits.")
    ] = None,
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Re-verify the customer's identity against the KYC record (all three must match; a
    few attempts) or by a new verified identity document. Nothing of the record is shown."""
    stated: StatedIdentity | None = None
    if method is VerifyMethod.KYC_RECORD:
        if birth_date is None or postal_code is None or tax_id_last4 is None:
            fail(
                "kyc_record needs --birth-date, --postal-code and --tax-id-last4",
                code=EXIT_USAGE,
            )
        if not re.fullmatch(r"[0-9]{4}", tax_id_last4):
            fail("--tax-id-last4 takes four digits", code=EXIT_USAGE)
        if not re.fullmatch(r"[A-Za-z0-9 -]{2,12}", postal_code):
            fail("--postal-code takes 2 to 12 letters, digits, spaces or hyphens", code=EXIT_USAGE)
        try:
            born = parse_birth_date(birth_date)
        except InvalidInput:
            fail("--birth-date takes YYYY-MM-DD", code=EXIT_USAGE)
        stated = StatedIdentity(born, postal_code, tax_id_last4)
    elif birth_date or postal_code or tax_id_last4:
        fail("the document method takes no stated details", code=EXIT_USAGE)

    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> Verification:
        if stated is not None:
            return await fraud.recovery.verify_with_record(
                session, case_id=case_id, stated=stated, actor=actor
            )
        return await fraud.recovery.verify_with_document(session, case_id=case_id, actor=actor)

    result = _recovering(
        data_dir, work, acting_as=acting_as, code_stdin=code_stdin, who="verifying"
    )
    if result.verified:
        console.print(f"identity verified ({result.method.value})", markup=False)
        return
    fail(f"identity NOT verified; attempts left against the record: {result.attempts_left}")


def _propose(
    data_dir: Path | None,
    *,
    case_id: str,
    action: ProposalAction,
    reason: str,
    acting_as: str | None,
    code_stdin: bool,
    execution_id: str | None = None,
    outcome: CaseOutcome | None = None,
) -> None:
    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> str:
        row = await fraud.recovery.propose(
            session,
            case_id=case_id,
            action=action,
            reason=reason,
            actor=actor,
            execution_id=execution_id,
            outcome=outcome,
        )
        return row.id

    proposal_id = _recovering(
        data_dir, work, acting_as=acting_as, code_stdin=code_stdin, who="proposing it"
    )
    console.print(
        f"proposed {action.value}: {proposal_id}; a second staff member approves with "
        f"`tradeguard takeover recovery approve {proposal_id} --as OTHER`",
        markup=False,
    )


@recovery_app.command("reset")
def recovery_reset(
    case_id: CaseArgument,
    reason: ReasonOption,
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Propose the credential reset (sessions, second factors, devices, password); another
    member approves. Identity must be re-verified first."""
    _propose(
        data_dir,
        case_id=case_id,
        action=ProposalAction.RESET_CREDENTIALS,
        reason=reason,
        acting_as=acting_as,
        code_stdin=code_stdin,
    )


@recovery_app.command("reverse")
def recovery_reverse(
    case_id: CaseArgument,
    execution: Annotated[str, typer.Option(help="The execution's id (marked first).")],
    reason: ReasonOption,
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Propose reversing an execution marked fraudulent; another member approves."""
    _id_or_fail(execution, "--execution")
    _propose(
        data_dir,
        case_id=case_id,
        action=ProposalAction.REVERSE_EXECUTION,
        reason=reason,
        acting_as=acting_as,
        code_stdin=code_stdin,
        execution_id=execution,
    )


@recovery_app.command("close")
def recovery_close(
    case_id: CaseArgument,
    outcome: Annotated[CaseOutcome, typer.Option(help="What the recovery found.")],
    reason: ReasonOption,
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Propose closing the case; another member approves (recovered lifts the freeze)."""
    _propose(
        data_dir,
        case_id=case_id,
        action=ProposalAction.CLOSE,
        reason=reason,
        acting_as=acting_as,
        code_stdin=code_stdin,
        outcome=outcome,
    )


@recovery_app.command("approve")
def recovery_approve(
    proposal_id: ProposalArgument,
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Approve another member's proposal: the step is carried out now."""

    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> dict[str, Any]:
        approval = await fraud.recovery.approve(session, proposal_id=proposal_id, actor=actor)
        return approval_out(approval).model_dump(mode="json", exclude_none=True)

    done = _recovering(data_dir, work, acting_as=acting_as, code_stdin=code_stdin, who="approving")
    console.print(f"approved: {done['proposal']['action']}", markup=False)
    for key in ("sessions_ended", "factors_removed", "devices_untrusted", "freezes_lifted"):
        if key in done:
            console.print(f"{key:18} {done[key]}", markup=False)
    if "reversal" in done:
        console.print(f"reversal           {json.dumps(done['reversal'])}", markup=False)


@recovery_app.command("withdraw")
def recovery_withdraw(
    proposal_id: ProposalArgument,
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Withdraw a pending proposal: nothing happens."""

    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> str:
        row = await fraud.recovery.withdraw(session, proposal_id=proposal_id, actor=actor)
        return row.id

    _recovering(data_dir, work, acting_as=acting_as, code_stdin=code_stdin, who="withdrawing")
    console.print(f"withdrawn: {proposal_id}", markup=False)


@recovery_app.command("timeline")
def recovery_timeline(
    case_id: CaseArgument,
    since: Annotated[
        str | None, typer.Option(help="From (ISO 8601 with zone); default 30 days before.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Up to (ISO 8601); default now.")] = None,
    as_json: JsonOption = False,
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """The customer's activity from the ledger, in chain order, addresses masked (reading
    it is audited)."""
    since_ns, until_ns = _instant(since, "--since"), _instant(until, "--until")

    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> dict[str, Any]:
        timeline = await fraud.recovery.timeline(
            session, case_id=case_id, actor=actor, since_ns=since_ns, until_ns=until_ns
        )
        return timeline_out(timeline).model_dump(mode="json")

    body = _recovering(data_dir, work, acting_as=acting_as, code_stdin=code_stdin, who="reading")
    if as_json:
        print(json.dumps(body, indent=2))
        return
    for entry in body["entries"]:
        where = " ".join(x for x in (entry["country"], entry["ip"]) if x)
        mark = "*" if entry["marked"] else " "
        console.print(
            f"{mark}{entry['seq']:>8}  {entry['at']}  {entry['line']}  {where}".rstrip(),
            markup=False,
        )
    if body["truncated"]:
        console.print("(stopped short: narrow the window with --since/--until)", markup=False)


@recovery_app.command("mark")
def recovery_mark(
    case_id: CaseArgument,
    seq: Annotated[int, typer.Option(min=1, help="The entry's sequence number.")],
    note: Annotated[str, typer.Option(help="Why (3-500 characters).", callback=_text)],
    acting_as: Annotated[str | None, AsOption] = None,
    code_stdin: CodeStdin = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Mark a timeline entry fraudulent (an execution to reverse, a withdrawal to chase)."""

    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> dict[str, Any]:
        row = await fraud.recovery.mark(session, case_id=case_id, seq=seq, note=note, actor=actor)
        return mark_out(row).model_dump(mode="json")

    row = _recovering(data_dir, work, acting_as=acting_as, code_stdin=code_stdin, who="marking")
    console.print(
        f"marked {row['seq']}: {row['kind']} {row['ref_id'] or ''}".rstrip(), markup=False
    )


@recovery_app.command("list")
def recovery_list(
    status: Annotated[str | None, typer.Option(help="open or closed (default: both).")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's (an id).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 100,
    as_json: JsonOption = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Recovery cases, newest first."""
    if status is not None and status not in {"open", "closed"}:
        fail("--status is open or closed", code=EXIT_USAGE)
    if user is not None:
        _id_or_fail(user, "--user")

    async def work(fraud: FraudServices, session: AsyncSession, _: Party) -> list[dict[str, Any]]:
        rows = await fraud.recovery.cases(session, status=status, user_id=user, limit=limit)
        return [case_out(row).model_dump(mode="json") for row in rows]

    _print(
        _with_fraud(data_dir, work),
        as_json,
        ("id", "status", "user_id", "opened_at", "identity_verified", "outcome"),
    )


@recovery_app.command("show")
def recovery_show(
    case_id: CaseArgument,
    as_json: JsonOption = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """One case with its proposals, marked entries, active freezes and reversals."""

    async def work(fraud: FraudServices, session: AsyncSession, actor: Party) -> dict[str, Any]:
        view = await fraud.recovery.view(session, case_id=case_id, actor=actor)
        return case_out(view.case, view).model_dump(mode="json")

    row = _with_fraud(data_dir, work)
    if as_json:
        print(json.dumps(row, indent=2))
        return
    for key in ("id", "status", "user_id", "review_id", "opened_at", "identity_verified"):
        console.print(f"{key:18} {row.get(key)}", markup=False)
    for key in ("verified_method", "credentials_reset_at", "outcome", "active_freezes"):
        console.print(f"{key:18} {row.get(key)}", markup=False)
    for proposal in row.get("proposals") or []:
        console.print(
            f"proposal {proposal['id']}  {proposal['action']} {proposal['target'] or ''}  "
            f"{proposal['status']}  by {proposal['proposed_by']}",
            markup=False,
        )
    for mark in row.get("marks") or []:
        console.print(f"marked   {mark['seq']}  {mark['kind']}  {mark['note']}", markup=False)
