"""`tradeguard aml`: anti-money-laundering monitoring from the command line (issue #13).

Run the monitor and the SAR deadline job once (`run`), show the rules (`rules show`), and,
as a staff member named with --as and proved with a console code, read alerts and CTRs, work
cases (open, assign, note, decide), export CTRs and SARs as FinCEN batch XML, and purge
records past the five-year retention (`purge`). Each command checks the permission the API
route needs (aml:alerts, aml:cases, aml:file); a denial is a ledger event.
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
from tradeguard.aml import repository
from tradeguard.aml.container import AmlServices, build_aml, rules_from
from tradeguard.aml.domain import mask_account
from tradeguard.aml.models import AmlAlert, AmlCase, AmlCtr
from tradeguard.aml.service import Decision, Exported
from tradeguard.aml.tasks import run_deadlines_once
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
from tradeguard.funds.container import build_funds
from tradeguard.identity.container import IdentityServices, start_identity
from tradeguard.kyc.container import build_kyc
from tradeguard.ledger.domain import Party
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.trading.container import build_trading

T = TypeVar("T")

app = typer.Typer(
    help="AML monitoring: alerts, CTRs, SAR cases, FinCEN exports, retention.",
    no_args_is_help=True,
)
alerts_app = typer.Typer(help="Alerts the monitoring rules raised.", no_args_is_help=True)
ctr_app = typer.Typer(help="Currency transaction reports owed and filed.", no_args_is_help=True)
cases_app = typer.Typer(help="SAR cases: open, assign, note, decide.", no_args_is_help=True)
sar_app = typer.Typer(help="Suspicious activity reports.", no_args_is_help=True)
rules_app = typer.Typer(help="The monitoring rules and their settings.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(ctr_app, name="ctr")
app.add_typer(cases_app, name="cases")
app.add_typer(sar_app, name="sar")
app.add_typer(rules_app, name="rules")

JsonOption = typer.Option("--json", help="Print JSON.")
FinalOption = typer.Option("--final", help="Export as final (refused unless complete and valid).")
OutOption = typer.Option("--out", help="Write the batch XML to this file.")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _id(value: str, what: str) -> str:
    if not _UUID.fullmatch(value):
        fail(f"{what} must be an id such as 0190c5a0-0000-7000-8000-000000000001", code=EXIT_USAGE)
    return value


def _with_aml(
    data_dir: Path | None,
    work: Callable[[AmlServices, IdentityServices], Awaitable[T]],
    *,
    sequence: bool = False,
) -> T:
    settings = existing_settings(data_dir)

    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            if sequence:
                # Chain what committed since the server last sequenced: the monitor reads
                # the chained ledger only.
                await LedgerSequencer(engine, clock=SystemClock()).drain()
            clock = SystemClock()
            ids = IdGenerator(clock)
            sessions = session_factory(engine)
            identity = await start_identity(settings, clock=clock, ids=ids, sessions=sessions)
            trading = build_trading(
                settings, clock=clock, ids=ids, sessions=sessions, with_venue=False
            )
            funds = build_funds(
                settings, identity=identity, accounts=trading.accounts, sessions=sessions
            )
            onboarding = build_kyc(
                settings, identity=identity, accounts=trading.accounts, sessions=sessions
            ).onboarding
            aml = build_aml(
                settings,
                identity=identity,
                accounts=trading.accounts,
                withdrawals=funds.withdrawals,
                sessions=sessions,
                profiles=onboarding.profiles,
                subjects=onboarding.filings,
            )
            return await work(aml, identity)
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _as_staff(
    data_dir: Path | None,
    acting_as: str | None,
    code_stdin: bool,
    permission: Permission,
    work: Callable[[AmlServices, str], Awaitable[T]],
) -> T:
    """Run `work` as the named staff member once they proved it with a console code and
    hold `permission` right now (their level and grants, as the API's guard reads them)."""
    if not acting_as:
        fail("name the staff member acting with --as USERNAME", code=EXIT_USAGE)
    code = console_code(acting_as, from_stdin=code_stdin)
    command = command_name("aml", work)

    async def staff_work(aml: AmlServices, identity: IdentityServices) -> T:
        verified: VerifiedStaff = await verify_staff(identity, acting_as, code)
        try:
            async with identity.unit_of_work() as session:
                found = await authority(session, verified.user_id, identity.clock.now_ns())
            if found is None or not found.member.active:
                raise PermissionMissing(
                    "only an active staff member works AML records", permission=permission.value
                )
            require(found, permission, "working AML records")
        except PermissionMissing:
            await record_denial(identity, verified, permission.value, command)
            raise
        return await work(aml, verified.user_id)

    return _with_aml(data_dir, staff_work)


def _alert(a: AmlAlert) -> dict[str, Any]:
    return {
        "id": a.id,
        "rule": a.rule,
        "user_id": a.user_id,
        "score": a.score,
        "status": a.status,
        "summary": a.summary,
        "window": a.window_key,
        "occurrences": a.occurrences,
        "case_id": a.case_id,
        "facts": a.facts,
        "created_at": ns_to_iso(a.created_ns),
    }


def _ctr(c: AmlCtr) -> dict[str, Any]:
    return {
        "id": c.id,
        "user_id": c.user_id,
        "day": c.day,
        "direction": c.direction,
        "total": f"{c.total:.2f}",
        "accounts": [mask_account(a) for a in c.accounts],
        "status": c.status,
        "due_day": c.due_day,
        "amended": c.amended,
    }


def _case(c: AmlCase, overdue: bool) -> dict[str, Any]:
    return {
        "id": c.id,
        "user_id": c.user_id,
        "status": c.status,
        "assignee": c.assignee,
        "detected_at": ns_to_iso(c.detection_ns),
        "suspect_identified": c.suspect_identified,
        "sar_due": ns_to_iso(c.due_ns),
        "overdue": overdue,
        "reminders_sent": c.reminders_sent,
        "max_score": c.max_score,
        "decision": c.decision,
        "first_decider": c.first_decider,
        "decided_by": c.decided_by,
    }


def _print_rows(rows: list[dict[str, Any]], columns: list[str], as_json: bool, empty: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(empty)
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    console.print(table)


def _exported(done: Exported, out: Path | None) -> None:
    if out is not None:
        out.write_bytes(done.document)
    missing = ", ".join(done.filing.missing) or "nothing"
    console.print(
        f"{done.filing.kind} export {done.filing.id} ({done.filing.status}); missing: {missing}; "
        f"problems: {len(done.problems)}; sha256 {done.filing.sha256}"
        + (f"; written to {out}" if out is not None else "")
    )


@app.command("run")
def run_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Run the monitor until it has read the whole chained ledger (from its checkpoint),
    then the SAR deadline job once (reminders and overdue notices)."""

    async def work(aml: AmlServices, _: IdentityServices) -> tuple[int, int, int, int, int]:
        result = await aml.consumer.run()
        sent = await run_deadlines_once(aml)
        return result.events, result.movements, result.alerts, result.ctrs, sent

    events, movements, alerts, ctrs, sent = _with_aml(data_dir, work, sequence=True)
    console.print(
        f"read {events} ledger events: {movements} movements, {alerts} new alerts, "
        f"{ctrs} new CTRs; {sent} deadline notices"
    )


@rules_app.command("show")
def rules_show(
    as_json: Annotated[bool, JsonOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """The monitoring rules with their thresholds, windows and setting names."""
    rows = rules_from(existing_settings(data_dir)).describe()
    _print_rows(rows, ["rule", "threshold", "window", "settings"], as_json, "no rules")


@alerts_app.command("list")
def alerts_list(
    status: Annotated[str | None, typer.Option(help="open, in_case or closed")] = None,
    rule: Annotated[str | None, typer.Option(help="A rule's name")] = None,
    as_json: Annotated[bool, JsonOption] = False,
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Alerts, newest first."""

    async def list_alerts(aml: AmlServices, _: str) -> list[dict[str, Any]]:
        where = repository.AlertFilter(status=status, rule=rule, limit=500)
        async with unit_of_work(aml.sessions) as session:
            return [_alert(a) for a in await repository.alerts(session, where)]

    rows = _as_staff(data_dir, acting_as, code_stdin, Permission.AML_ALERTS, list_alerts)
    _print_rows(rows, ["id", "rule", "score", "status", "summary"], as_json, "no alert")


@alerts_app.command("show")
def alerts_show(
    alert_id: Annotated[str, typer.Argument(help="The alert's id.")],
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """One alert with its facts (amounts, dates, masked accounts, window, threshold)."""
    alert_id = _id(alert_id, "the alert")

    async def show_alert(aml: AmlServices, _: str) -> dict[str, Any]:
        async with unit_of_work(aml.sessions) as session:
            row = await repository.alert(session, alert_id)
            if row is None:
                fail(f"no alert {alert_id}")
            return _alert(row)

    print(
        json.dumps(
            _as_staff(data_dir, acting_as, code_stdin, Permission.AML_ALERTS, show_alert), indent=2
        )
    )


@ctr_app.command("list")
def ctr_list(
    status: Annotated[str | None, typer.Option(help="owed or filed")] = None,
    as_json: Annotated[bool, JsonOption] = False,
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """CTRs owed and filed, newest business day first."""

    async def list_ctrs(aml: AmlServices, _: str) -> list[dict[str, Any]]:
        async with unit_of_work(aml.sessions) as session:
            return [
                _ctr(c)
                for c in await aml.filings.ctrs(session, status=status, user_id=None, limit=500)
            ]

    rows = _as_staff(data_dir, acting_as, code_stdin, Permission.AML_FILE, list_ctrs)
    _print_rows(rows, ["id", "day", "direction", "total", "status", "due_day"], as_json, "no CTR")


@ctr_app.command("export")
def ctr_export(
    ctr_id: Annotated[str, typer.Argument(help="The CTR's id.")],
    final: Annotated[bool, FinalOption] = False,
    out: Annotated[Path | None, OutOption] = None,
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Export a CTR as a FinCEN CTR batch (CTRX); stored five years."""
    ctr_id = _id(ctr_id, "the CTR")

    async def export_ctr(aml: AmlServices, staff_id: str) -> Exported:
        async with unit_of_work(aml.sessions) as session:
            return await aml.filings.export_ctr(
                session, staff_id=staff_id, ctr_id=ctr_id, final=final
            )

    _exported(_as_staff(data_dir, acting_as, code_stdin, Permission.AML_FILE, export_ctr), out)


@cases_app.command("list")
def cases_list(
    status: Annotated[
        str | None, typer.Option(help="open, pending_second, sar_required, ...")
    ] = None,
    as_json: Annotated[bool, JsonOption] = False,
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Cases, nearest SAR deadline first."""

    async def list_cases(aml: AmlServices, _: str) -> list[dict[str, Any]]:
        async with unit_of_work(aml.sessions) as session:
            found = await aml.cases.list(session, status=status, assignee=None, limit=500)
            return [_case(c, aml.cases.overdue(c)) for c in found]

    rows = _as_staff(data_dir, acting_as, code_stdin, Permission.AML_CASES, list_cases)
    _print_rows(rows, ["id", "status", "sar_due", "overdue", "assignee"], as_json, "no case")


@cases_app.command("open")
def cases_open(
    alert_ids: Annotated[list[str], typer.Argument(help="The alerts' ids (one person's).")],
    no_suspect: Annotated[
        bool, typer.Option("--no-suspect", help="No suspect identified yet (60-day deadline).")
    ] = False,
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Open a case over one person's alerts; the SAR clock runs from the earliest alert."""
    ids = [_id(a, "an alert") for a in alert_ids]

    async def open_case(aml: AmlServices, staff_id: str) -> dict[str, Any]:
        async with unit_of_work(aml.sessions) as session:
            row = await aml.cases.open(
                session, staff_id=staff_id, alert_ids=ids, suspect_identified=not no_suspect
            )
            return _case(row, False)

    row = _as_staff(data_dir, acting_as, code_stdin, Permission.AML_CASES, open_case)
    console.print(f"case {row['id']} opened; SAR due {row['sar_due']}")


@cases_app.command("assign")
def cases_assign(
    case_id: Annotated[str, typer.Argument(help="The case's id.")],
    assignee: Annotated[str, typer.Option("--to", help="The assignee's username.")],
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Assign a case to a compliance officer or administrator."""
    case_id = _id(case_id, "the case")

    async def assign_case(aml: AmlServices, staff_id: str) -> str:
        async with unit_of_work(aml.sessions) as session:
            found = await aml.deps.users.find_user(session, assignee)
            if found is None:
                fail(f"no user {assignee}")
            await aml.cases.assign(session, staff_id=staff_id, case_id=case_id, assignee=found[0])
            return found[0]

    _as_staff(data_dir, acting_as, code_stdin, Permission.AML_CASES, assign_case)
    console.print(f"case {case_id} assigned to {assignee}")


@cases_app.command("note")
def cases_note(
    case_id: Annotated[str, typer.Argument(help="The case's id.")],
    text: Annotated[str, typer.Option("--text", help="The note (at most 4000 characters).")],
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Add a note to a case."""
    case_id = _id(case_id, "the case")

    async def note_case(aml: AmlServices, staff_id: str) -> str:
        async with unit_of_work(aml.sessions) as session:
            note = await aml.cases.note(session, staff_id=staff_id, case_id=case_id, text=text)
            return note.id

    note_id = _as_staff(data_dir, acting_as, code_stdin, Permission.AML_CASES, note_case)
    console.print(f"note {note_id} added to case {case_id}")


@cases_app.command("decide")
def cases_decide(
    case_id: Annotated[str, typer.Argument(help="The case's id.")],
    decision: Annotated[str, typer.Option("--decision", help="sar or no_sar")],
    reason: Annotated[str, typer.Option("--reason", help="Why.")],
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """SAR required, or no SAR with a reason (a high-scoring case takes two people)."""
    case_id = _id(case_id, "the case")
    if decision not in ("sar", "no_sar"):
        fail("--decision is sar or no_sar", code=EXIT_USAGE)

    async def decide_case(aml: AmlServices, staff_id: str) -> str:
        async with unit_of_work(aml.sessions) as session:
            row = await aml.cases.decide(
                session,
                staff_id=staff_id,
                case_id=case_id,
                decision=Decision(decision),
                reason=reason,
            )
            return row.status

    status = _as_staff(data_dir, acting_as, code_stdin, Permission.AML_CASES, decide_case)
    console.print(f"case {case_id}: {status}")


@sar_app.command("export")
def sar_export(
    case_id: Annotated[str, typer.Argument(help="The case's id.")],
    final: Annotated[bool, FinalOption] = False,
    narrative: Annotated[
        str | None, typer.Option("--narrative", help="The narrative's opening.")
    ] = None,
    out: Annotated[Path | None, OutOption] = None,
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Export a case's SAR as a FinCEN SAR batch (SARX); stored five years."""
    case_id = _id(case_id, "the case")

    async def export_sar(aml: AmlServices, staff_id: str) -> Exported:
        async with unit_of_work(aml.sessions) as session:
            return await aml.filings.export_sar(
                session, staff_id=staff_id, case_id=case_id, final=final, narrative=narrative
            )

    _exported(_as_staff(data_dir, acting_as, code_stdin, Permission.AML_FILE, export_sar), out)


@app.command("purge")
def purge_command(
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Delete AML records older than the retention period (aml_retention_years, at least
    five): movements, alerts, CTRs, exports, and decided cases with their notes."""

    async def purge(aml: AmlServices, staff_id: str) -> dict[str, int]:
        async with unit_of_work(aml.sessions) as session:
            return await aml.filings.purge(session, actor=Party("user", staff_id))

    counts = _as_staff(data_dir, acting_as, code_stdin, Permission.AML_FILE, purge)
    console.print("purged " + ", ".join(f"{v} {k}" for k, v in counts.items()))
