"""`tradeguard audit search` and `tradeguard audit export-events`: the indexed search of the
audit ledger from the command line (AUD-3, AUD-4), as the operator.

Both read the database directly with the API's rules (filters, chain order, only chained
events; they first chain whatever has committed) and record a ledger event naming the
operating-system user who ran them and the filters ("via": "cli"). An export streams page
by page into a temporary file beside --out and renames it into place when complete, so a
failed export never leaves a partial file there.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard.cli.bootstrap import existing_settings
from tradeguard.cli.common import (
    EXIT_USAGE,
    DataDirOption,
    console,
    err_console,
    fail,
    fail_on_error,
    operator_party,
    run_async,
)
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import TradeguardError
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, read_only, session_factory, unit_of_work
from tradeguard.ledger.search import service
from tradeguard.ledger.search.query import (
    DEFAULT_PAGE,
    MAX_PAGE,
    EventFilter,
    SortOrder,
    build_filter,
)
from tradeguard.ledger.search.results import EventPage, csv_header, csv_row, json_item
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger

INSTANT_HELP = "nanoseconds since the epoch, or ISO-8601 with an offset (2026-01-02T09:30:00Z)"
TypeOption = Annotated[
    str | None,
    typer.Option("--type", help="Event type (trading:order:placed) or prefix (trading:order:)."),
]
ActorOption = Annotated[str | None, typer.Option("--actor", help="Actor id.")]
SubjectOption = Annotated[str | None, typer.Option("--subject", help="Subject id.")]
AccountOption = Annotated[
    str | None, typer.Option("--account", help="Account id named by the event.")
]
OrderOption = Annotated[str | None, typer.Option("--order", help="Order id named by the event.")]
FromOption = Annotated[
    str | None, typer.Option("--from", help=f"At or after this instant: {INSTANT_HELP}.")
]
ToOption = Annotated[
    str | None, typer.Option("--to", help=f"Before this instant (exclusive): {INSTANT_HELP}.")
]


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


def _ledger() -> Ledger:
    clock = SystemClock()
    return Ledger(clock=clock, ids=IdGenerator(clock))


def _where(**values: str | None) -> EventFilter:
    """The filters, checked before any database work: a bad one exits 2 at once."""
    try:
        return build_filter(**values)
    except TradeguardError as exc:
        fail_on_error(exc)


async def _chain_committed(engine: AsyncEngine) -> None:
    """Chain what has committed, so the search sees events up to now even with no server
    running (sequencers are safe to run in several processes)."""
    await LedgerSequencer(engine, clock=SystemClock()).drain()


def _print_page(page: EventPage) -> None:
    table = Table()
    for heading in ("seq", "time (UTC)", "type", "actor", "subject", "event id"):
        # Folded, never cut short with an ellipsis: an audit trail shows ids whole.
        table.add_column(heading, overflow="fold")
    for event in page.items:
        item = event.as_json()
        actor, subject = item["actor"], item["subject"]
        table.add_row(
            str(event.seq),
            item["occurred_at"][:26] + "Z",
            event.type,
            f"{actor['kind']}:{actor['id']}" if actor else "-",
            f"{subject['kind']}:{subject['id']}" if subject else "-",
            event.event_id,
        )
    console.print(table)
    if not page.items:
        err_console.print("no chained events match")
    if page.next_cursor:
        err_console.print(f"more: repeat with --cursor {page.next_cursor}")


def search_command(
    event_type: TypeOption = None,
    actor: ActorOption = None,
    subject: SubjectOption = None,
    account: AccountOption = None,
    order: OrderOption = None,
    from_: FromOption = None,
    to: ToOption = None,
    oldest: Annotated[
        bool, typer.Option("--oldest", help="Oldest first (default newest).")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_PAGE, help="Events per page.")
    ] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue after a previous page.")
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search the audit ledger: chained events matching every filter, in chain order.

    Filters combine; --type takes a full type or a prefix ending in a colon; the time range
    is [--from, --to). The search is recorded in the ledger under your user name.
    """
    where = _where(
        event_type=event_type,
        actor_id=actor,
        subject_id=subject,
        account_id=account,
        order_id=order,
        from_=from_,
        to=to,
    )
    sort = SortOrder.OLDEST if oldest else SortOrder.NEWEST
    settings = existing_settings(data_dir)

    async def work() -> EventPage:
        engine = create_engine(settings.main_database_url)
        try:
            await _chain_committed(engine)
            async with engine.connect() as conn:
                await read_only(conn)
                async with conn.begin():
                    page = await service.search_page(
                        conn, where, sort=sort, limit=limit, cursor=cursor
                    )
            async with unit_of_work(session_factory(engine)) as session:
                await service.record_search(
                    session,
                    _ledger(),
                    actor=operator_party(),
                    where=where,
                    sort=sort,
                    limit=limit,
                    continued=cursor is not None,
                    returned=len(page.items),
                    via="cli",
                )
            return page
        finally:
            await engine.dispose()

    page = run_async(work(), database_url=settings.main_database_url)
    try:
        for event in page.items:
            _ = event.document  # a body rewritten into something else: one line, before output
    except TradeguardError as exc:
        fail_on_error(exc)
    if as_json:
        document = {"items": [e.as_json() for e in page.items], "next_cursor": page.next_cursor}
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return
    _print_page(page)


def export_command(
    out: Annotated[Path, typer.Option("--out", help="File to write (refused if it exists).")],
    export_format: Annotated[
        ExportFormat, typer.Option("--format", help="csv or json.", case_sensitive=False)
    ] = ExportFormat.CSV,
    event_type: TypeOption = None,
    actor: ActorOption = None,
    subject: SubjectOption = None,
    account: AccountOption = None,
    order: OrderOption = None,
    from_: FromOption = None,
    to: ToOption = None,
    newest: Annotated[
        bool, typer.Option("--newest", help="Newest first (default oldest).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Export every chained event a search matches to a CSV or JSON file, streamed.

    The export stops at the chain's head when it starts, so the file is one consistent range.
    CSV follows RFC 4180; cells that would run as spreadsheet formulas get a leading
    apostrophe; the document column is each event exactly as stored. Recorded in the ledger.
    """
    where = _where(
        event_type=event_type,
        actor_id=actor,
        subject_id=subject,
        account_id=account,
        order_id=order,
        from_=from_,
        to=to,
    )
    if out.exists() and not force:
        fail(f"{out} exists", hint="choose another --out, or pass --force", code=EXIT_USAGE)
    if not out.parent.is_dir():
        fail(f"the directory {out.parent} does not exist", code=EXIT_USAGE)
    sort = SortOrder.NEWEST if newest else SortOrder.OLDEST
    settings = existing_settings(data_dir)

    async def work(handle: TextIO) -> service.ExportPlan:
        engine = create_engine(settings.main_database_url)
        try:
            await _chain_committed(engine)
            async with engine.connect() as conn:
                await read_only(conn)
                async with conn.begin():
                    plan = await service.plan_export(conn, where, sort=sort, max_events=None)
            async with unit_of_work(session_factory(engine)) as session:
                await service.record_export(
                    session,
                    _ledger(),
                    actor=operator_party(),
                    plan=plan,
                    export_format=export_format.value,
                    via="cli",
                )
            await _stream(handle, engine, plan, export_format)
            return plan
        finally:
            await engine.dispose()

    # Written beside --out and renamed into place only when complete.
    try:
        descriptor, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    except OSError as error:
        fail(f"cannot write {out}: {error.strerror or type(error).__name__}", code=EXIT_USAGE)
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            plan = run_async(work(handle), database_url=settings.main_database_url)
        temporary.replace(out)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    through = plan.through.seq if plan.through else 0
    console.print(f"exported {plan.count} events (chain positions up to {through}) to {out}")


async def _stream(
    handle: TextIO, engine: AsyncEngine, plan: service.ExportPlan, export_format: ExportFormat
) -> None:
    """Write the export page by page, with a progress bar on stderr."""
    csv_format = export_format is ExportFormat.CSV
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("exporting", total=plan.count)
        handle.write(csv_header() if csv_format else "[\n")
        first = True
        async for page in service.export_events(engine, plan):
            if csv_format:
                handle.write("".join(csv_row(event) for event in page))
            else:
                handle.write(("" if first else ",\n") + ",\n".join(json_item(e) for e in page))
            first = False
            bar.advance(task, len(page))
        if not csv_format:
            handle.write("\n]\n")


def register(app: typer.Typer) -> None:
    """Add the search commands to `tradeguard audit`."""
    app.command("search")(search_command)
    app.command("export-events")(export_command)
