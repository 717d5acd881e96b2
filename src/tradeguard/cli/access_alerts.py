"""`tradeguard access alerts`: staff access anomaly alerts (IAC-4) from the command line.

List, show and close alerts, and run the detector once (`scan`) where it does not run inside
the server. Closing is audited as the operating-system user who ran the command.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard.access.alerts import Reviewer
from tradeguard.access.alerts_container import AccessAlertServices, build_access_alerts
from tradeguard.access.alerts_repository import AlertFilter
from tradeguard.access.alerts_schemas import alert_out
from tradeguard.access.anomalies import AlertStatus, AnomalyRule, Severity
from tradeguard.cli.bootstrap import existing_settings
from tradeguard.cli.common import (
    EXIT_USAGE,
    DataDirOption,
    console,
    fail,
    operator_party,
    run_async,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.identity.container import start_identity
from tradeguard.ledger.sequencer import LedgerSequencer

T = TypeVar("T")

app = typer.Typer(
    help="Staff access anomaly alerts: list, show, close, scan.", no_args_is_help=True
)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _with_alerts(
    settings: Settings, work: Callable[[AccessAlertServices, AsyncEngine], Awaitable[T]]
) -> T:
    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
            identity = await start_identity(
                settings, clock=clock, ids=IdGenerator(clock), sessions=session_factory(engine)
            )
            return await work(build_access_alerts(settings, identity=identity), engine)
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _alert_id(value: str) -> str:
    text = value.strip().lower()
    if not _UUID.fullmatch(text):
        raise typer.BadParameter("an alert id is a UUID like 0190c5a0-7b1e-7c3d-9a2b-1c2d3e4f5a6b")
    return text


AlertIdArgument = Annotated[
    str, typer.Argument(help="The alert's id (from `alerts list`).", callback=_alert_id)
]


def _as_json(rows: list[dict[str, Any]] | dict[str, Any]) -> None:
    print(json.dumps(rows, indent=2))


@app.command("list")
def list_command(
    status: Annotated[
        AlertStatus | None, typer.Option(help="Only alerts in this state.", case_sensitive=False)
    ] = None,
    rule: Annotated[
        AnomalyRule | None, typer.Option(help="Only alerts of this rule.", case_sensitive=False)
    ] = None,
    severity: Annotated[
        Severity | None, typer.Option(help="Only alerts of this severity.", case_sensitive=False)
    ] = None,
    staff: Annotated[
        str | None, typer.Option(help="Only alerts about this staff member (username or id).")
    ] = None,
    limit: Annotated[
        int, typer.Option(help="At most this many, newest first.", min=1, max=500)
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """List access alerts, newest first."""
    settings = existing_settings(data_dir)

    async def work(services: AccessAlertServices, _: AsyncEngine) -> list[dict[str, Any]] | None:
        async with services.unit_of_work() as session:
            staff_id = None
            if staff is not None:
                if _UUID.fullmatch(staff.strip().lower()):
                    staff_id = staff.strip().lower()
                else:
                    found = await services.desk.staff_user(session, staff)
                    if found is None:
                        return None
                    staff_id = found
            rows = await services.desk.search(
                session,
                AlertFilter(
                    status=status.value if status else None,
                    rule=rule.value if rule else None,
                    severity=severity.value if severity else None,
                    staff_user_id=staff_id,
                    limit=limit,
                ),
            )
            return [alert_out(row).model_dump(mode="json") for row in rows]

    rows = _with_alerts(settings, work)
    if rows is None:
        fail("no user with that username or email", code=EXIT_USAGE)
    if as_json:
        _as_json(rows)
        return
    if not rows:
        console.print("no alerts")
        return
    # One alert per two lines (ids whole, whatever the terminal width): head, then summary.
    for row in rows:
        console.print(
            f"{row['id']}  {row['created_at'][:19]}Z  {row['rule']}  {row['severity']}  "
            f"{row['status']}  staff {row['staff_user_id']}",
            markup=False,
        )
        console.print(f"    {row['summary']}", style="dim", markup=False)


@app.command("show")
def show_command(
    alert_id: AlertIdArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Show one alert with its evidence (ledger sequence numbers)."""
    settings = existing_settings(data_dir)

    async def work(services: AccessAlertServices, _: AsyncEngine) -> dict[str, Any]:
        async with services.unit_of_work() as session:
            return alert_out(await services.desk.get(session, alert_id)).model_dump(mode="json")

    row = _with_alerts(settings, work)
    if as_json:
        _as_json(row)
        return
    for key, value in row.items():
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else value
        # Plain text: a note is free text, and "[...]" in it must not be read as markup.
        console.print(f"{key:16} {'-' if shown is None else shown}", markup=False)


@app.command("close")
def close_command(
    alert_id: AlertIdArgument,
    note: Annotated[
        str, typer.Option("--note", help="What was found (kept with the alert and audited).")
    ],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Close an alert with a note (audited as the operating-system user)."""
    settings = existing_settings(data_dir)

    async def work(services: AccessAlertServices, _: AsyncEngine) -> str:
        async with services.unit_of_work() as session:
            row = await services.desk.close(
                session,
                alert_id,
                reviewer=Reviewer(party=operator_party()),
                note=note,
                request_id=None,
            )
            return row.id

    console.print(f"closed {_with_alerts(settings, work)}")


@app.command("scan")
def scan_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Run the anomaly detector until it has read the whole chained ledger.

    The server runs it in the background (TRADEGUARD_ACCESS_ALERTS_ENABLED); this is for a
    detector in a process of its own, or a check by hand. Safe next to a running server.
    """
    settings = existing_settings(data_dir)

    async def work(services: AccessAlertServices, engine: AsyncEngine) -> tuple[int, int, int]:
        # Chain what has committed, so the scan sees it (the sequencer is safe to run twice).
        await LedgerSequencer(engine, clock=SystemClock()).drain()
        result = await services.detector.scan()
        return result.events, result.observations, result.alerts

    events, observations, alerts = _with_alerts(settings, work)
    console.print(
        f"read {events} ledger events ({observations} of staff access); {alerts} new alerts"
    )
