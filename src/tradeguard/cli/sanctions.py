"""`tradeguard sanctions`: OFAC SDN screening from the command line (issue #13, KYC-2).

Load a list version from a directory or an https URL (`load`; the same files twice change
nothing; a new version re-screens every registered subject with a progress bar), see the
versions (`versions`), screen a name ad hoc with its score, decision and reasons (`screen`),
re-screen by hand (`rescreen`), and work the hits (`hits list | clear | confirm`: staff only,
named with --as and proved with a console code, holding sanctions:review).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from tradeguard.access.common import authority, require
from tradeguard.access.domain import Permission
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
    err_console,
    fail,
    operator_party,
    record_denial,
    run_async,
    verify_staff,
)
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.errors import PermissionMissing
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.funds.bank_accounts import PayeeSubjects
from tradeguard.funds.container import build_funds
from tradeguard.identity.container import IdentityServices, start_identity
from tradeguard.kyc.container import build_kyc
from tradeguard.kyc.contracts import SubjectKind
from tradeguard.kyc.sanctions.common import HitStatus
from tradeguard.kyc.sanctions.container import SanctionsServices
from tradeguard.kyc.sanctions.index import EVERY_KIND, INDIVIDUALS
from tradeguard.kyc.sanctions.models import SanctionsHit
from tradeguard.kyc.sanctions.tasks import RescreenReport, run_rescreen
from tradeguard.trading.container import build_trading

T = TypeVar("T")

app = typer.Typer(
    help="Sanctions screening (KYC-2): OFAC SDN list versions, ad hoc screens, re-screening, "
    "and the review of hits.",
    no_args_is_help=True,
)
hits_app = typer.Typer(
    help="Screening hits: list them, clear a false positive, confirm a match (staff with "
    "sanctions:review, named with --as).",
    no_args_is_help=True,
)
app.add_typer(hits_app, name="hits")

JsonOption = typer.Option("--json", help="Print JSON.")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _with_sanctions(
    data_dir: Path | None,
    work: Callable[[SanctionsServices, IdentityServices], Awaitable[T]],
) -> T:
    settings = existing_settings(data_dir)

    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
            ids = IdGenerator(clock)
            sessions = session_factory(engine)
            identity = await start_identity(settings, clock=clock, ids=ids, sessions=sessions)
            # Customers (their applications) and payees (bank account holders) are
            # re-screened with every new version, as in the server.
            trading = build_trading(
                settings, clock=clock, ids=ids, sessions=sessions, with_venue=False
            )
            sanctions = build_kyc(
                settings, identity=identity, accounts=trading.accounts, sessions=sessions
            ).sanctions
            funds = build_funds(
                settings, identity=identity, accounts=trading.accounts, sessions=sessions
            )
            funds.deps.screener = sanctions.service
            sanctions.service.register_source(SubjectKind.PAYEE, PayeeSubjects(funds.banks))
            return await work(sanctions, identity)
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _as_reviewer(
    data_dir: Path | None,
    acting_as: str | None,
    code_stdin: bool,
    work: Callable[[SanctionsServices, str], Awaitable[T]],
) -> T:
    """Run `work` as the named staff member once they proved it with a console code and
    hold sanctions:review right now (their level and grants, as the API's guard reads them)."""
    if not acting_as:
        fail("name the staff member acting with --as USERNAME", code=EXIT_USAGE)
    code = console_code(acting_as, from_stdin=code_stdin)
    command = command_name("sanctions", work)

    async def staff_work(sanctions: SanctionsServices, identity: IdentityServices) -> T:
        verified: VerifiedStaff = await verify_staff(identity, acting_as, code)
        try:
            async with identity.unit_of_work() as session:
                found = await authority(session, verified.user_id, identity.clock.now_ns())
            if found is None or not found.member.active:
                raise PermissionMissing(
                    "only an active staff member works sanctions hits",
                    permission=Permission.SANCTIONS_REVIEW.value,
                )
            require(found, Permission.SANCTIONS_REVIEW, "working sanctions hits")
        except PermissionMissing:
            await record_denial(identity, verified, Permission.SANCTIONS_REVIEW.value, command)
            raise
        return await work(sanctions, verified.user_id)

    return _with_sanctions(data_dir, staff_work)


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not enabled,
    )


async def _rescreen(sanctions: SanctionsServices, show_progress: bool) -> RescreenReport:
    with _progress_bar(show_progress) as bar:
        task = bar.add_task("re-screening", total=None)
        return await run_rescreen(
            sanctions,
            actor=operator_party(),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def _print_report(report: RescreenReport) -> None:
    console.print(
        f"re-screened {report.subjects} subjects against version {report.version_id}: "
        f"{len(report.new_hits)} new hits"
        + (f" ({report.skipped} skipped: no name to screen)" if report.skipped else "")
    )
    if report.new_hits:
        table = Table("hit", "subject", "entry", "matched name", "score", "decision")
        for h in report.new_hits:
            table.add_row(
                h.hit_id,
                f"{h.subject_kind} {h.subject_ref}",
                h.entry_id,
                h.matched_name,
                f"{h.score:.2f}",
                h.decision,
            )
        console.print(table)
        console.print("work them with `tradeguard sanctions hits list --as STAFF`")


@app.command("load")
def load_command(
    location: Annotated[
        str | None,
        typer.Argument(
            help="A directory holding sdn.csv, alt.csv and add.csv, or an https URL prefix "
            "they are under. Default: the configured sanctions_list_source."
        ),
    ] = None,
    rescreen: Annotated[
        bool, typer.Option("--rescreen/--no-rescreen", help="Re-screen on a new version.")
    ] = True,
    show_progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="Load even though the list has many fewer entries than the current version "
            "(or is a strict subset of it). Needs --reason; audited.",
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why a shrinking list is loaded.")
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Load the OFAC SDN list (legacy CSV files). The same files as the current version
    change nothing; a malformed file is refused whole, naming its file and line."""

    async def work(
        sanctions: SanctionsServices, _: IdentityServices
    ) -> tuple[str, bool, int, int, RescreenReport | None]:
        source = location or sanctions.deps.source
        if not source:
            fail(
                "no list to load",
                hint="give a directory or https URL, or set TRADEGUARD_SANCTIONS_LIST_SOURCE",
                code=EXIT_USAGE,
            )
        files = await sanctions.service.fetch(source)
        async with unit_of_work(sanctions.sessions) as session:
            result = await sanctions.service.load(
                session,
                files,
                source=source,
                actor=operator_party(),
                allow_shrink=allow_shrink,
                reason=reason,
            )
            version = result.version
            summary = (version.id, result.created, version.entries, version.names)
        report = None
        if result.created and rescreen:
            report = await _rescreen(sanctions, show_progress)
        return (*summary, report)

    version_id, created, entries, names, report = _with_sanctions(data_dir, work)
    if not created:
        console.print(f"unchanged: these files are the current version {version_id}")
        return
    console.print(f"loaded version {version_id}: {entries} entries, {names} names and aliases")
    if report is not None:
        _print_report(report)


@app.command("versions")
def versions_command(
    as_json: Annotated[bool, JsonOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """The list versions loaded, newest (the current one) first."""

    async def work(sanctions: SanctionsServices, _: IdentityServices) -> list[dict[str, Any]]:
        async with unit_of_work(sanctions.sessions) as session:
            return [
                {
                    "id": v.id,
                    "sha256": v.sha256,
                    "entries": v.entries,
                    "names": v.names,
                    "source": v.source,
                    "loaded_at": ns_to_iso(v.loaded_ns),
                    "loaded_by": v.loaded_by,
                }
                for v in await sanctions.service.versions(session)
            ]

    rows = _with_sanctions(data_dir, work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no list version is loaded: run `tradeguard sanctions load PATH|URL`")
        return
    table = Table("version", "sha256", "entries", "names", "loaded", "by")
    for r in rows:
        table.add_row(
            r["id"],
            r["sha256"][:16],
            str(r["entries"]),
            str(r["names"]),
            r["loaded_at"],
            r["loaded_by"],
        )
    console.print(table)


@app.command("screen")
def screen_command(
    name: Annotated[str, typer.Argument(help="The name to screen, in any script.")],
    dob: Annotated[str | None, typer.Option("--dob", help="Date of birth, YYYY-MM-DD.")] = None,
    nationality: Annotated[
        str | None, typer.Option("--nationality", help="ISO 3166-1 alpha-2 code, e.g. RU.")
    ] = None,
    individuals: Annotated[
        bool,
        typer.Option("--individuals", help="Only individuals (as customers are screened)."),
    ] = False,
    as_json: Annotated[bool, JsonOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Screen a name against the current version now (nothing is recorded): each match's
    score, decision and reasons."""
    birth = None
    if dob is not None:
        try:
            birth = date.fromisoformat(dob)
        except ValueError:
            fail(f"--dob {dob!r} is not a date such as 1970-07-10", code=EXIT_USAGE)

    async def work(sanctions: SanctionsServices, _: IdentityServices) -> dict[str, Any]:
        async with unit_of_work(sanctions.sessions) as session:
            version, matches = await sanctions.service.search(
                session,
                name,
                birth_date=birth,
                nationality=nationality,
                kinds=INDIVIDUALS if individuals else EVERY_KIND,
            )
        return {
            "list_version": version,
            "decision": matches[0].decision.value if matches else "clear",
            "matches": [
                {
                    "entry_id": m.entry.entry_id,
                    "entry_name": m.entry.name,
                    "matched_name": m.name.name,
                    "score": round(m.score, 4),
                    "decision": m.decision.value,
                    "reasons": list(m.reasons),
                }
                for m in matches
            ],
        }

    result = _with_sanctions(data_dir, work)
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    console.print(f"decision: {result['decision']} (list version {result['list_version']})")
    if not result["matches"]:
        console.print("no entry scores at or above the review threshold")
        return
    table = Table("entry", "matched name", "score", "decision", "reasons", show_lines=True)
    for m in result["matches"]:
        table.add_row(
            m["entry_id"],
            m["matched_name"],
            f"{m['score']:.2f}",
            m["decision"],
            "\n".join(m["reasons"]),
        )
    console.print(table)


@app.command("rescreen")
def rescreen_command(
    show_progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Re-screen every registered subject (payees; customers once onboarding registers
    them) against the current version; only new hits are reported."""

    async def work(sanctions: SanctionsServices, _: IdentityServices) -> RescreenReport:
        return await _rescreen(sanctions, show_progress)

    _print_report(_with_sanctions(data_dir, work))


def _hit_row(sanctions: SanctionsServices, h: SanctionsHit) -> dict[str, Any]:
    return {
        "id": h.id,
        "subject": f"{h.subject_kind} {h.subject_ref}",
        "user_id": h.user_id,
        "entry_id": h.entry_id,
        "matched_name": h.matched_name,
        "score": h.score,
        "decision": sanctions.service.hit_of(h).decision.value,
        "status": h.status,
        "reasons": sanctions.service.reasons(h),
        "created_at": ns_to_iso(h.created_ns),
    }


def _hit_id(value: str) -> str:
    if not _UUID.fullmatch(value):
        fail("the hit must be an id such as 0190c5a0-0000-7000-8000-000000000001", code=EXIT_USAGE)
    return value


@hits_app.command("list")
def hits_list(
    status: Annotated[
        HitStatus | None, typer.Option("--status", help="open, cleared or confirmed.")
    ] = HitStatus.OPEN,
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    as_json: Annotated[bool, JsonOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Hits, newest first (open ones unless --status says otherwise)."""

    async def work(sanctions: SanctionsServices, _: str) -> list[dict[str, Any]]:
        async with unit_of_work(sanctions.sessions) as session:
            rows = await sanctions.service.hits(session, status=status)
            return [_hit_row(sanctions, h) for h in rows]

    rows = _as_reviewer(data_dir, acting_as, code_stdin, work)
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        console.print("no hit to show")
        return
    table = Table("hit", "subject", "entry", "matched name", "score", "decision", "status")
    for r in rows:
        table.add_row(
            r["id"],
            r["subject"],
            r["entry_id"],
            r["matched_name"],
            f"{r['score']:.2f}",
            r["decision"],
            r["status"],
        )
    console.print(table)


def _review(
    action: str,
    hit_id: str,
    reason: str,
    acting_as: str | None,
    code_stdin: bool,
    data_dir: Path | None,
) -> dict[str, Any]:
    hit_id = _hit_id(hit_id)

    async def work(sanctions: SanctionsServices, staff_id: str) -> dict[str, Any]:
        async with unit_of_work(sanctions.sessions) as session:
            decide = sanctions.service.clear if action == "clear" else sanctions.service.confirm
            row = await decide(session, hit_id=hit_id, staff_id=staff_id, note=reason)
            return _hit_row(sanctions, row)

    # Named for the command, as the ledger records a denial (`sanctions hits-clear`).
    work.__qualname__ = f"hits_{action}.work"
    return _as_reviewer(data_dir, acting_as, code_stdin, work)


ReasonOption = typer.Option("--reason", help="Why (kept encrypted with the hit).")


@hits_app.command("clear")
def hits_clear(
    hit_id: Annotated[str, typer.Argument(help="The hit's id.")],
    reason: Annotated[str, ReasonOption],
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Clear a false positive: the pair is not raised again until the entry changes."""
    row = _review("clear", hit_id, reason, acting_as, code_stdin, data_dir)
    console.print(f"hit {row['id']} cleared")


@hits_app.command("confirm")
def hits_confirm(
    hit_id: Annotated[str, typer.Argument(help="The hit's id.")],
    reason: Annotated[str, ReasonOption],
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Confirm a match: the subject's standing is BLOCK."""
    row = _review("confirm", hit_id, reason, acting_as, code_stdin, data_dir)
    console.print(f"hit {row['id']} confirmed: {row['subject']} is blocked")
