"""`tradeguard db`: database migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tradeguard.cli.bootstrap import database_missing, database_status, prepare_data_dir
from tradeguard.cli.common import DataDirOption, console, fail, run_async, settings_from
from tradeguard.config import Settings
from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import current_revision, upgrade

app = typer.Typer(help="Database migrations.", no_args_is_help=True)


async def _upgrade(settings: Settings) -> tuple[str | None, str | None]:
    prepare_data_dir(settings)
    engine = create_engine(settings.main_database_url)
    try:
        before = await current_revision(engine)
        await upgrade(engine)
        return before, await current_revision(engine)
    finally:
        await engine.dispose()


@app.command("upgrade")
def upgrade_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Apply every pending migration to the main database."""
    settings = settings_from(data_dir)
    before, after = run_async(_upgrade(settings), database_url=settings.main_database_url)
    if before == after:
        console.print(f"database already at {after}")
    else:
        console.print(f"database migrated {before or 'new'} -> {after}")


@app.command("status")
def status_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Show the database's migration revision and the newest one available."""
    settings = settings_from(data_dir)
    if database_missing(settings):
        fail("no tradeguard database here", hint="run `tradeguard init` (or pass --data-dir)")
    current, head = run_async(database_status(settings), database_url=settings.main_database_url)
    console.print(f"current  {current or 'none (run: tradeguard db upgrade)'}")
    console.print(f"head     {head}")
    if current != head:
        raise typer.Exit(1)
