"""`tradeguard audit`: verify the audit ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from tradeguard.cli.bootstrap import database_missing
from tradeguard.cli.common import DataDirOption, console, err_console, run_async, settings_from
from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import current_revision
from tradeguard.ledger.verify import VerifyReport, verify_chain

app = typer.Typer(help="Audit ledger tools.", no_args_is_help=True)


async def _verify(url: str, *, show_progress: bool) -> VerifyReport | None:
    engine = create_engine(url)
    try:
        if await current_revision(engine) is None:
            return None
        if not show_progress:
            return await verify_chain(engine)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task("verifying", total=None)
            return await verify_chain(
                engine, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    finally:
        await engine.dispose()


@app.command("verify")
def verify_command(
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Walk the hash chain from the first event; exit 1 naming the first bad sequence number."""
    settings = settings_from(data_dir)
    report = None
    if not database_missing(settings):
        report = run_async(
            _verify(settings.main_database_url, show_progress=not as_json),
            database_url=settings.main_database_url,
        )
    if report is None:
        err_console.print("[bold red]error:[/] no tradeguard database here")
        err_console.print("[dim]hint:[/] run `tradeguard init` (or pass --data-dir)")
        raise typer.Exit(2)
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "ok": report.ok,
                    "verified": report.verified,
                    "head_hash": report.head_hash,
                    "unsequenced": report.unsequenced,
                    "first_bad_seq": report.first_bad_seq,
                    "failure": report.failure.value if report.failure else None,
                    "detail": report.detail,
                    "unchained_event_pk": report.unchained_event_pk,
                }
            )
        )
    elif report.ok:
        console.print(
            f"[green]ok[/]: {report.verified} events verified; head {report.head_hash[:16]}…"
            + (f"; {report.unsequenced} awaiting sequencing" if report.unsequenced else "")
        )
    else:
        err_console.print(
            f"[bold red]TAMPERED[/]: first bad sequence {report.first_bad_seq} "
            f"({report.failure.value if report.failure else ''}): {report.detail}"
        )
    if not report.ok:
        raise typer.Exit(1)
