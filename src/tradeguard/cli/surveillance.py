"""`tradeguard surveillance`: market surveillance (MAN-1 to MAN-5) from the command line.

Run the stream as a worker of its own (`run`; `--once` drains and exits), list and show
alerts, keep the beneficial-owner links (audited as the operating-system user; derive them
from shared devices and networks with `derive-links`, dismiss a derived one with
`dismiss-link`), work cases
(`cases ...`), export report drafts and list overdue ones (`reports --overdue`), set the
automatic action policy (`policy`) and reverse actions (`actions reverse`), and evaluate
the detectors on generated trading with labelled manipulation (`evaluate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard.cli.bootstrap import existing_settings
from tradeguard.cli.common import (
    EXIT_USAGE,
    DataDirOption,
    console,
    err_console,
    fail,
    operator_party,
    run_async,
    settings_from,
)
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.tasks import open_keyring
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.funds.container import build_funds
from tradeguard.identity.container import build_identity
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.surveillance.container import (
    SurveillanceServices,
    build_surveillance,
    parameters_from,
)
from tradeguard.surveillance.domain import (
    ActionKind,
    ActionRule,
    ActionStatus,
    AlertCommand,
    AlertStatus,
    AlertType,
    CaseStatus,
    Detector,
    Disposition,
)
from tradeguard.surveillance.evaluation import evaluate, render_report
from tradeguard.surveillance.linkage import LinkKind, LinkStatus
from tradeguard.surveillance.linking import DerivationResult
from tradeguard.surveillance.repository import ActionFilter, AlertFilter, CaseFilter
from tradeguard.surveillance.sar import render_markdown
from tradeguard.surveillance.scenarios import ScenarioConfig
from tradeguard.surveillance.schemas import (
    action_out,
    alert_out,
    case_out,
    link_out,
    policy_out,
    report_summary,
)
from tradeguard.surveillance.tasks import (
    LINKS_COMPONENT,
    run_link_derivation,
    run_stream,
    stream_tracker,
)
from tradeguard.trading.container import build_trading

T = TypeVar("T")

app = typer.Typer(
    help="Market surveillance: run the stream, alerts, owner links, evaluation.",
    no_args_is_help=True,
)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SYMBOL = re.compile(r"[A-Z][A-Z0-9.]{0,11}")


def _with_surveillance(
    settings: Settings,
    work: Callable[[SurveillanceServices, AsyncEngine], Awaitable[T]],
    *,
    staff: bool = False,
    mail: bool = False,
    derive: bool = False,
) -> T:
    """Run `work` with the surveillance services; `staff`: with identity's directory too
    (assigning a case checks the assignee's role); `mail`: with the notify outbox, for a
    stream that raises alerts (a `notify` rule emails compliance); `derive`: with
    identity's sign-ins, for the owner-link derivation (its keyed hashes need the keys)."""

    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
            ids = IdGenerator(clock)
            sessions = session_factory(engine)
            trading = build_trading(
                settings, clock=clock, ids=ids, sessions=sessions, with_venue=False
            )
            identity = (
                build_identity(settings, clock=clock, ids=ids, sessions=sessions)
                if staff or mail or derive
                else None
            )
            contacts, outbox = None, None
            if (mail or derive) and identity is not None:
                # The notify action's emails are sealed in the outbox, and the derivation's
                # network and device keys are peppered: the keys are read first.
                await open_keyring(identity.key_management, sessions)
            if mail and identity is not None:
                contacts, outbox = identity.accounts, identity.deps.notifier
            services = build_surveillance(
                settings,
                clock=clock,
                ids=ids,
                sessions=sessions,
                ledger=trading.deps.ledger,
                accounts=trading.accounts,
                orders=trading.orders,
                staff=identity.accounts if staff and identity is not None else None,
                contacts=contacts,
                mail=outbox,
                sign_ins=identity.sign_ins if derive and identity is not None else None,
                # Bank accounts two customers confirmed link their owners too (funds).
                bank_accounts=(
                    build_funds(
                        settings, identity=identity, accounts=trading.accounts, sessions=sessions
                    ).banks
                    if derive and identity is not None
                    else None
                ),
            )
            return await work(services, engine)
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _uuid(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    if not _UUID.fullmatch(text):
        raise typer.BadParameter(f"{what} is a UUID like 0190c5a0-7b1e-7c3d-9a2b-1c2d3e4f5a6b")
    return text


def _alert_id(value: str | None) -> str | None:
    return _uuid(value, "an alert id")


def _account_id(value: str | None) -> str | None:
    return _uuid(value, "an account id")


def _required_account(value: str) -> str:
    found = _uuid(value, "an account id")
    assert found is not None  # noqa: S101 - a str in gives a str out
    return found


def _symbol(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip().upper()
    if not _SYMBOL.fullmatch(text):
        raise typer.BadParameter("a symbol is 1-12 letters, digits or dots, starting with a letter")
    return text


def _reason(value: str) -> str:
    if len(" ".join(value.split())) < 3:
        raise typer.BadParameter("give a reason of at least 3 characters (it is audited)")
    return value


ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (kept in the audit ledger).", callback=_reason)
]


@app.command("run")
def run_command(
    once: Annotated[
        bool, typer.Option("--once", help="Read up to the end of the ledger, then exit.")
    ] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Run the surveillance stream as a worker of its own until stopped (Ctrl-C, SIGTERM).

    The server runs it in the background too (TRADEGUARD_SURVEILLANCE_ENABLED); several
    workers may run at once: they take turns on the stored checkpoint, and a restart resumes
    exactly where the last pass stopped. With TRADEGUARD_SURVEILLANCE_LINKS_ENABLED it also
    derives beneficial-owner links from shared devices and networks every
    TRADEGUARD_SURVEILLANCE_LINKS_INTERVAL_SECONDS (`--once`: once, before the stream).
    """
    settings = existing_settings(data_dir)
    derive = settings.surveillance_links_enabled

    async def work(
        services: SurveillanceServices, engine: AsyncEngine
    ) -> tuple[int, int, int, int]:
        consumer = services.consumer
        deriver = services.deriver if derive else None
        if once:
            # Chain what has committed, so the pass sees it (safe next to a running server).
            await LedgerSequencer(engine, clock=SystemClock()).drain()
            linked = (await deriver.run_once(force=True)).created if deriver else 0
            if linked:
                # The new links' ledger events, chained before the stream reads on.
                await LedgerSequencer(engine, clock=SystemClock()).drain()
            result = await consumer.run()
            ticked = await consumer.tick()
            return result.events, result.alerts + ticked.alerts, result.folded, linked
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        interval = settings.surveillance_interval_ms / 1000
        err_console.print(
            f"surveillance stream running (every {settings.surveillance_interval_ms} ms); "
            "Ctrl-C stops it"
        )
        workers = [
            run_stream(
                consumer,
                interval_seconds=interval,
                stop=stop,
                tracker=stream_tracker(SystemClock(), interval),
            )
        ]
        if deriver is not None:
            every = settings.surveillance_links_interval_seconds
            workers.append(
                run_link_derivation(
                    deriver,
                    interval_seconds=every,
                    stop=stop,
                    tracker=stream_tracker(SystemClock(), every, component=LINKS_COMPONENT),
                )
            )
        await asyncio.gather(*workers)
        return 0, 0, 0, 0

    events, alerts, folded, linked = _with_surveillance(settings, work, mail=True, derive=derive)
    if once:
        console.print(
            f"read {events} ledger events; {alerts} new alerts, {folded} findings folded "
            f"into existing ones; {linked} new owner links"
        )


def _print_trades(row: dict[str, Any]) -> None:
    """The orders and executions behind an alert, one line each."""
    orders, executions = row.get("orders") or [], row.get("executions") or []
    console.print(f"{'orders':18} {len(orders) or '-'}", markup=False)
    for o in orders:
        console.print(
            f"  {o.get('time') or '?':31} {o['order_id']}  {o.get('side') or '?':4} "
            f"{o.get('quantity') if o.get('quantity') is not None else '?'} @ "
            f"{o.get('price') or '?'}  filled {o.get('filled_quantity', '?')}  "
            f"{o.get('status') or 'unknown'}  account {o.get('account_id') or '?'}",
            markup=False,
        )
    console.print(f"{'executions':18} {len(executions) or '-'}", markup=False)
    for x in executions:
        console.print(
            f"  {x.get('time') or '?':31} {x['execution_id']}  {x.get('side') or '?':4} "
            f"{x.get('quantity') if x.get('quantity') is not None else '?'} @ "
            f"{x.get('price') or '?'}  {x.get('liquidity') or '?'}  order {x.get('order_id')}"
            f"  counterparty {x.get('counterparty') or 'unknown'}",
            markup=False,
        )


def _print_alert(row: dict[str, Any]) -> None:
    for key, value in row.items():
        if key in ("orders", "executions"):
            continue
        if key == "evidence":
            figures = {k: v for k, v in value.items() if k not in ("orders", "executions")}
            console.print(f"{key:18} {json.dumps(figures, indent=2)}", markup=False)
            continue
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else value
        console.print(f"{key:18} {'-' if shown in (None, '') else shown}", markup=False)


@app.command("alerts")
def alerts_command(
    alert_id: Annotated[
        str | None,
        typer.Argument(help="Show this alert with its evidence.", callback=_alert_id),
    ] = None,
    alert_type: Annotated[
        AlertType | None,
        typer.Option("--type", help="Only alerts of this type.", case_sensitive=False),
    ] = None,
    detector: Annotated[
        Detector | None, typer.Option(help="Only alerts of this model (MAN-1 to MAN-4).")
    ] = None,
    symbol: Annotated[
        str | None, typer.Option(help="Only alerts in this symbol.", callback=_symbol)
    ] = None,
    account: Annotated[
        str | None, typer.Option(help="Only alerts naming this account.", callback=_account_id)
    ] = None,
    status: Annotated[
        AlertStatus | None,
        typer.Option(help="Only alerts in this state.", case_sensitive=False),
    ] = None,
    limit: Annotated[
        int, typer.Option(help="At most this many, newest first.", min=1, max=500)
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """List surveillance alerts, newest first; with an alert id, show that one."""
    settings = existing_settings(data_dir)
    if alert_id is not None and (alert_type or detector or symbol or account or status):
        fail("filters list alerts; give either an alert id or filters", code=EXIT_USAGE)

    async def work(
        services: SurveillanceServices, _: AsyncEngine
    ) -> list[dict[str, Any]] | dict[str, Any]:
        async with services.unit_of_work() as session:
            if alert_id is not None:
                row = await services.alerts.get(session, alert_id)
                return alert_out(row).model_dump(mode="json")
            rows = await services.alerts.search(
                session,
                AlertFilter(
                    alert_type=alert_type.value if alert_type else None,
                    detector=detector.value if detector else None,
                    symbol=symbol,
                    account_id=account,
                    limit=limit,
                    status=status.value if status else None,
                ),
            )
            return [alert_out(r).model_dump(mode="json") for r in rows]

    found = _with_surveillance(settings, work)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    if isinstance(found, dict):
        _print_alert(found)
        _print_trades(found)
        return
    if not found:
        console.print("no alerts")
        return
    for row in found:
        console.print(
            f"{row['id']}  {row['created_at'][:19]}Z  {row['status']:9}  {row['alert_type']}  "
            f"{row['detector']}  {row['symbol']}  score {row['score']}  x{row['occurrences']}",
            markup=False,
        )
        console.print(f"    {row['summary']}", style="dim", markup=False)


def _link_row(row: dict[str, Any]) -> None:
    between = (
        f"user {row['user_a']} <-> user {row['user_b']}"
        if row["user_a"]
        else f"{row['account_a']} <-> {row['account_b']}"
    )
    console.print(
        f"{row['id']}  {row['kind']:12} {row['status']:9}  {between}  by {row['created_by']}",
        markup=False,
    )
    console.print(f"    {row['reason']}", style="dim", markup=False)
    if row["evidence"]:
        console.print(f"    evidence: {json.dumps(row['evidence'])}", style="dim", markup=False)
    if row["status"] == LinkStatus.DISMISSED:
        console.print(
            f"    dismissed by {row['dismissed_by']}: {row['dismiss_reason']}",
            style="dim",
            markup=False,
        )


@app.command("links")
def links_command(
    kind: Annotated[
        LinkKind | None, typer.Option(help="Only links of this kind.", case_sensitive=False)
    ] = None,
    status: Annotated[
        LinkStatus | None, typer.Option(help="Only active or dismissed links.")
    ] = None,
    limit: Annotated[
        int, typer.Option(help="At most this many, newest first.", min=1, max=10_000)
    ] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """List the beneficial-owner links, newest first, with their kind, status and evidence."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> list[dict[str, Any]]:
        async with services.unit_of_work() as session:
            rows = await services.links.all(
                session,
                kind=kind.value if kind else None,
                status=status.value if status else None,
                limit=limit,
            )
            return [link_out(r).model_dump(mode="json") for r in rows]

    rows = _with_surveillance(settings, work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no links")
    for row in rows:
        _link_row(row)


@app.command("derive-links")
def derive_links_command(
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Derive beneficial-owner links from shared devices and networks now (the worker does
    it every TRADEGUARD_SURVEILLANCE_LINKS_INTERVAL_SECONDS)."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> DerivationResult:
        assert services.deriver is not None  # noqa: S101 - built with identity's sign-ins
        return await services.deriver.run_once(force=True)

    result = _with_surveillance(settings, work, derive=True)
    console.print(
        f"{result.created} new owner links from {result.sign_ins} sign-ins on "
        f"{result.networks} networks ({result.shared_networks} shared by too many traders to "
        f"link anyone) and {result.shared_devices} shared devices"
    )


@app.command("link")
def link_command(
    account_a: Annotated[str, typer.Argument(help="One account.", callback=_required_account)],
    account_b: Annotated[
        str, typer.Argument(help="The other account.", callback=_required_account)
    ],
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Record that two accounts have one beneficial owner (audited as the operator).

    The detectors treat every account of both accounts' users as one owner from their next
    pass: a cross between them is a wash trade.
    """
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> str:
        async with services.unit_of_work() as session:
            row = await services.links.add(
                session,
                account_a=account_a,
                account_b=account_b,
                reason=reason,
                actor=operator_party(),
            )
            return row.id

    console.print(f"linked: {_with_surveillance(settings, work)}")


LinkIdArgument = Annotated[
    str,
    typer.Argument(
        help="The link's id (from `surveillance links`).",
        callback=lambda value: _uuid(value, "a link id"),
    ),
]


def _change_link(data_dir: Path | None, link_id: str, reason: str, *, dismiss: bool) -> str:
    """Remove (a manual link) or dismiss (a derived one), audited as the operator."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> str:
        change = services.links.dismiss if dismiss else services.links.remove
        async with services.unit_of_work() as session:
            row = await change(session, link_id=link_id, reason=reason, actor=operator_party())
            return row.id

    return _with_surveillance(settings, work)


@app.command("unlink")
def unlink_command(
    link_id: LinkIdArgument,
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Remove a manual beneficial-owner link (audited as the operator); a derived one is
    dismissed instead (`dismiss-link`)."""
    console.print(f"unlinked: {_change_link(data_dir, link_id, reason, dismiss=False)}")


@app.command("dismiss-link")
def dismiss_link_command(
    link_id: LinkIdArgument,
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Dismiss a derived link (device, network, bank_account) as a false positive (audited
    as the operator): its owners are judged apart again, and it is never derived again."""
    console.print(f"dismissed: {_change_link(data_dir, link_id, reason, dismiss=True)}")


AlertIdArgument = Annotated[
    str,
    typer.Argument(
        help="The alert's id (from `surveillance alerts`).",
        callback=lambda value: _uuid(value, "an alert id"),
    ),
]


def _alert_step(data_dir: Path | None, alert_id: str, command: AlertCommand, reason: str) -> str:
    """Set an alert's own status (outside a case), audited as the operator."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> str:
        async with services.unit_of_work() as session:
            row = await services.alerts.change_status(
                session,
                alert_id=alert_id,
                command=command,
                reason=reason,
                actor=operator_party(),
            )
            return f"{row.id}: {row.status}"

    return _with_surveillance(settings, work)


@app.command("dismiss-alert")
def dismiss_alert_command(
    alert_id: AlertIdArgument,
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Dismiss an alert that is in no case (new or escalated), with the reason (audited)."""
    console.print(_alert_step(data_dir, alert_id, AlertCommand.DISMISS, reason), markup=False)


@app.command("escalate-alert")
def escalate_alert_command(
    alert_id: AlertIdArgument,
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Escalate a new alert for a senior review, with the reason (audited)."""
    console.print(_alert_step(data_dir, alert_id, AlertCommand.ESCALATE, reason), markup=False)


@app.command("reopen-alert")
def reopen_alert_command(
    alert_id: AlertIdArgument,
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Reopen a dismissed alert (new again), with the reason (audited)."""
    console.print(_alert_step(data_dir, alert_id, AlertCommand.REOPEN, reason), markup=False)


@app.command("verify")
def verify_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Check the surveillance tables (alerts, cases, actions) against their ledger events:
    every row that disagrees, has no event, or whose event has no row. Exit 1 on any."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, engine: AsyncEngine) -> dict[str, Any]:
        # Chain what has committed, so every change is judged against its event.
        await LedgerSequencer(engine, clock=SystemClock()).drain()
        verifier = services.verifier
        if verifier is None:  # pragma: no cover - every container builds one
            fail("this process cannot verify")
        async with services.unit_of_work() as session:
            result = await verifier.verify(session)
        return {
            "events": result.events,
            "alerts": result.alerts,
            "cases": result.cases,
            "actions": result.actions,
            "mismatches": [m.as_dict() for m in result.mismatches],
            "lines": [m.line() for m in result.mismatches],
            "unverifiable": list(result.unverifiable),
        }

    found = _with_surveillance(settings, work)
    if as_json:
        print(json.dumps({k: v for k, v in found.items() if k != "lines"}, indent=2))
    else:
        console.print(
            f"checked {found['alerts']} alerts, {found['cases']} cases and {found['actions']} "
            f"actions against {found['events']} ledger events",
            markup=False,
        )
        for line in found["lines"]:
            console.print(f"MISMATCH {line}", markup=False)
        for alert_id in found["unverifiable"]:
            console.print(
                f"UNVERIFIABLE surveillance_alerts {alert_id}: raised before its events "
                "recorded a row digest (score, summary, accounts, window, times unchecked)",
                markup=False,
            )
        if not found["mismatches"]:
            console.print("ok: every row agrees with the ledger")
    if found["mismatches"]:
        raise typer.Exit(1)


@app.command("evaluate")
def evaluate_command(
    seed: Annotated[int, typer.Option(help="The generator's seed (same seed, same market).")] = 1,
    accounts: Annotated[
        int, typer.Option(help="Background trading accounts.", min=10, max=5000)
    ] = 200,
    days: Annotated[int, typer.Option(help="Trading sessions to generate.", min=1, max=10)] = 2,
    episodes: Annotated[
        int, typer.Option(help="Manipulation episodes of each kind.", min=1, max=1000)
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Generate trading with labelled manipulation and report each detector's precision,
    recall and alert latency on it, with the configured parameters (TRADEGUARD_SURVEILLANCE_*).

    Nothing is read from or written to a database: the market is generated in memory from
    the seed (retail traders, market makers and honest near-misses, with wash trades,
    spoofing and layering injected) and run through the engine the stream uses.
    """
    params = parameters_from(settings_from(None))
    config = ScenarioConfig(seed=seed, accounts=accounts, days=days, episodes_per_kind=episodes)
    report = evaluate(config, params)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    console.print(render_report(report), markup=False)


# Cases (MAN-5) ---------------------------------------------------------------------------

cases_app = typer.Typer(
    help="Surveillance cases: open from alerts, assign, annotate, escalate, close; reports.",
    no_args_is_help=True,
)
app.add_typer(cases_app, name="cases")
actions_app = typer.Typer(
    help="Automatic surveillance actions: list, reverse (with a reason).", no_args_is_help=True
)
app.add_typer(actions_app, name="actions")
policy_app = typer.Typer(help="The automatic action policy: show, set.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


def _case_id(value: str) -> str:
    found = _uuid(value, "a case id")
    assert found is not None  # noqa: S101 - a str in gives a str out
    return found


def _alert_ids(values: list[str]) -> list[str]:
    return [_required(v, "an alert id") for v in values]


def _required(value: str, what: str) -> str:
    found = _uuid(value, what)
    assert found is not None  # noqa: S101 - a str in gives a str out
    return found


CaseArgument = Annotated[str, typer.Argument(help="The case's id.", callback=_case_id)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _print_case(row: dict[str, Any]) -> None:
    for key in ("id", "title", "status", "assignee", "disposition", "created_by", "created_at"):
        console.print(f"{key:12} {row.get(key) or '-'}", markup=False)
    if row.get("alert_ids") is not None:
        console.print(f"{'alerts':12} {', '.join(row['alert_ids'])}", markup=False)
    if row.get("report_id"):
        console.print(f"{'report':12} {row['report_id']}", markup=False)
    for entry in row.get("timeline") or []:
        detail = {k: v for k, v in entry["detail"].items() if k != "status"}
        console.print(
            f"  {entry['at'][:19]}Z  {entry['kind']:14} {entry['actor']}  "
            f"{json.dumps(detail, sort_keys=True)}",
            markup=False,
        )


def _case_step(
    settings: Settings,
    case_id: str,
    step: Callable[[SurveillanceServices, Any], Awaitable[Any]],
    *,
    staff: bool = False,
) -> dict[str, Any]:
    async def work(services: SurveillanceServices, _: AsyncEngine) -> dict[str, Any]:
        async with services.unit_of_work() as session:
            await step(services, session)
            view = await services.cases.get(session, case_id)
            return case_out(view.case, view).model_dump(mode="json")

    return _with_surveillance(settings, work, staff=staff)


@cases_app.command("open")
def cases_open(
    alert_ids: Annotated[list[str], typer.Argument(help="The alerts the case is about.")],
    title: Annotated[str, typer.Option(help="A one-line title.", callback=_reason)],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Open a case from one or more alerts (audited as the operator)."""
    settings = existing_settings(data_dir)
    ids = _alert_ids(alert_ids)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> str:
        async with services.unit_of_work() as session:
            row = await services.cases.open(
                session, alert_ids=ids, title=title, actor=operator_party()
            )
            return row.id

    console.print(f"opened: {_with_surveillance(settings, work)}")


@cases_app.command("list")
def cases_list(
    status: Annotated[CaseStatus | None, typer.Option(help="Only cases in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOption = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """List cases, newest first."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> list[dict[str, Any]]:
        async with services.unit_of_work() as session:
            rows = await services.cases.search(
                session, CaseFilter(status=status.value if status else None, limit=limit)
            )
            return [case_out(r).model_dump(mode="json") for r in rows]

    rows = _with_surveillance(settings, work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no cases")
    for row in rows:
        console.print(
            f"{row['id']}  {row['created_at'][:19]}Z  {row['status']:9}  "
            f"{row['disposition'] or '-':14}  {row['title']}",
            markup=False,
        )


@cases_app.command("show")
def cases_show(
    case_id: CaseArgument,
    as_json: JsonOption = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """One case with its alerts and its timeline."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> dict[str, Any]:
        async with services.unit_of_work() as session:
            view = await services.cases.get(session, case_id)
            return case_out(view.case, view).model_dump(mode="json")

    row = _with_surveillance(settings, work)
    if as_json:
        print(json.dumps(row, indent=2))
        return
    _print_case(row)


@cases_app.command("add")
def cases_add(
    case_id: CaseArgument,
    alert_ids: Annotated[list[str], typer.Argument(help="Alerts to add.")],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Add alerts to a live case."""
    ids = _alert_ids(alert_ids)
    row = _case_step(
        existing_settings(data_dir),
        case_id,
        lambda services, session: services.cases.add_alerts(
            session, case_id=case_id, alert_ids=ids, actor=operator_party()
        ),
    )
    console.print(f"alerts: {', '.join(row['alert_ids'])}", markup=False)


@cases_app.command("remove")
def cases_remove(
    case_id: CaseArgument,
    alert_id: Annotated[str, typer.Argument(help="The alert to take out.")],
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Take an alert out of a live case (a case keeps at least one)."""
    alert = _required(alert_id, "an alert id")
    row = _case_step(
        existing_settings(data_dir),
        case_id,
        lambda services, session: services.cases.remove_alert(
            session, case_id=case_id, alert_id=alert, reason=reason, actor=operator_party()
        ),
    )
    console.print(f"alerts: {', '.join(row['alert_ids'])}", markup=False)


@cases_app.command("assign")
def cases_assign(
    case_id: CaseArgument,
    assignee: Annotated[str, typer.Argument(help="A compliance user's id.")],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Assign (or reassign) a live case to a compliance user."""
    user = _required(assignee, "a user id")
    row = _case_step(
        existing_settings(data_dir),
        case_id,
        lambda services, session: services.cases.assign(
            session, case_id=case_id, assignee=user, actor=operator_party()
        ),
        staff=True,
    )
    console.print(f"{row['status']}: {row['assignee']}", markup=False)


@cases_app.command("note")
def cases_note(
    case_id: CaseArgument,
    text: Annotated[str, typer.Option("--text", help="The note (audited).", callback=_reason)],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Add a note to a live case's timeline."""
    _case_step(
        existing_settings(data_dir),
        case_id,
        lambda services, session: services.cases.note(
            session, case_id=case_id, text=text, actor=operator_party()
        ),
    )
    console.print("noted")


@cases_app.command("escalate")
def cases_escalate(
    case_id: CaseArgument,
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Escalate an assigned case for a senior review."""
    row = _case_step(
        existing_settings(data_dir),
        case_id,
        lambda services, session: services.cases.escalate(
            session, case_id=case_id, reason=reason, actor=operator_party()
        ),
    )
    console.print(row["status"])


def _detected(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter("an ISO 8601 time with its zone, e.g. 2026-01-05T15:00Z") from exc
    if moment.tzinfo is None:
        raise typer.BadParameter("give the time zone (e.g. Z or +00:00)")
    return int(moment.timestamp()) * NS_PER_SECOND + moment.microsecond * 1000


@cases_app.command("close")
def cases_close(
    case_id: CaseArgument,
    disposition: Annotated[Disposition, typer.Option(help="The decision.")],
    reason: ReasonOption,
    detected_at: Annotated[
        str | None,
        typer.Option(
            help="reported: the initial detection (ISO 8601; default: the first alert's time)."
        ),
    ] = None,
    no_suspect: Annotated[
        bool,
        typer.Option(
            "--no-suspect",
            help=(
                "reported: no suspect identified (60-day deadline); refused when an account "
                "of the case's alerts has a known owner."
            ),
        ),
    ] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Close a case with a disposition; `reported` drafts the suspicious-activity report."""
    detected = _detected(detected_at)
    row = _case_step(
        existing_settings(data_dir),
        case_id,
        lambda services, session: services.cases.close(
            session,
            case_id=case_id,
            disposition=disposition,
            reason=reason,
            detected_ns=detected,
            suspect_identified=not no_suspect,
            actor=operator_party(),
        ),
    )
    console.print(f"closed: {row['disposition']}", markup=False)
    if row.get("report_id"):
        console.print(
            f"report draft {row['report_id']}: `tradeguard surveillance cases report {case_id}`",
            markup=False,
        )


@cases_app.command("report")
def cases_report(
    case_id: CaseArgument,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The document a person reads (default: JSON).")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Export a case's suspicious-activity report draft (JSON, or Markdown)."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> dict[str, Any]:
        async with services.unit_of_work() as session:
            return dict((await services.cases.report(session, case_id)).draft)

    draft = _with_surveillance(settings, work)
    text = render_markdown(draft) if markdown else json.dumps(draft, indent=2) + "\n"
    if output is None:
        print(text, end="")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"{output}: {exc.strerror or type(exc).__name__}")
    console.print(f"wrote {output}", markup=False)


@cases_app.command("filed")
def cases_filed(
    case_id: CaseArgument,
    reference: Annotated[
        str, typer.Option(help="The filing's reference (BSA ID).", callback=_reason)
    ],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Record that a case's report was filed."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> dict[str, Any]:
        async with services.unit_of_work() as session:
            row = await services.cases.file_report(
                session, case_id=case_id, reference=reference, actor=operator_party()
            )
            return report_summary(row, services.cases.now_ns()).model_dump(mode="json")

    row = _with_surveillance(settings, work)
    console.print(f"filed {row['filed_at'][:19]}Z (due {row['due_date']})", markup=False)


@app.command("reports")
def reports_command(
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only reports past due and not filed.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    as_json: JsonOption = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Suspicious-activity report drafts by due date (exit 1 with --overdue when any is)."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> list[dict[str, Any]]:
        async with services.unit_of_work() as session:
            rows = await services.cases.reports(session, overdue=overdue, limit=limit)
            now = services.cases.now_ns()
            return [report_summary(r, now).model_dump(mode="json") for r in rows]

    rows = _with_surveillance(settings, work)
    if as_json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        console.print("no overdue reports" if overdue else "no reports")
    else:
        for row in rows:
            state = "OVERDUE" if row["overdue"] else row["status"]
            console.print(
                f"{row['id']}  case {row['case_id']}  due {row['due_date']}  {state}  "
                f"USD {row['total_amount']}",
                markup=False,
            )
    if overdue and rows:
        raise typer.Exit(1)


# Actions and the policy --------------------------------------------------------------------


@actions_app.command("list")
def actions_list(
    account: Annotated[
        str | None, typer.Option(help="Only actions on this account.", callback=_account_id)
    ] = None,
    alert: Annotated[
        str | None, typer.Option(help="Only actions for this alert.", callback=_alert_id)
    ] = None,
    status: Annotated[ActionStatus | None, typer.Option(help="applied, skipped, reversed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOption = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Automatic actions, newest first."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> list[dict[str, Any]]:
        async with services.unit_of_work() as session:
            rows = await services.actions.search(
                session,
                ActionFilter(
                    account_id=account,
                    alert_id=alert,
                    status=status.value if status else None,
                    limit=limit,
                ),
            )
            return [action_out(r).model_dump(mode="json") for r in rows]

    rows = _with_surveillance(settings, work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no actions")
    for row in rows:
        console.print(
            f"{row['id']}  {row['applied_at'][:19]}Z  {row['action']:13} {row['status']:8}  "
            f"account {row['account_id']}  alert {row['alert_id']}",
            markup=False,
        )


@actions_app.command("reverse")
def actions_reverse(
    action_id: Annotated[
        str, typer.Argument(help="The action's id.", callback=lambda v: _uuid(v, "an action id"))
    ],
    reason: ReasonOption,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Reverse an automatic action (the account's status goes back), with a reason."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> dict[str, Any]:
        async with services.unit_of_work() as session:
            row = await services.actions.reverse(
                session, action_id=action_id, reason=reason, actor=operator_party()
            )
            return action_out(row).model_dump(mode="json")

    row = _with_surveillance(settings, work)
    console.print(f"reversed: {row['action']} on account {row['account_id']}", markup=False)


def _rule(value: str) -> ActionRule:
    parts = value.split(":")
    if len(parts) != 3:
        raise typer.BadParameter("a rule is ALERT_TYPE:MIN_SCORE:ACTION, e.g. SPOOFING:80:suspend")
    try:
        return ActionRule(AlertType(parts[0].upper()), int(parts[1]), ActionKind(parts[2].lower()))
    except ValueError as exc:
        raise typer.BadParameter(
            f"types {', '.join(AlertType)}; score 0-100; actions {', '.join(ActionKind)}"
        ) from exc


@policy_app.command("show")
def policy_show(
    as_json: JsonOption = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """The automatic action policy."""
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> dict[str, Any]:
        async with services.unit_of_work() as session:
            return policy_out(await services.actions.policy(session)).model_dump(mode="json")

    body = _with_surveillance(settings, work)
    if as_json:
        print(json.dumps(body, indent=2))
        return
    if not body["rules"]:
        console.print("no rules: no automatic actions")
    for rule in body["rules"]:
        console.print(
            f"{rule['alert_type']:12} score >= {rule['min_score']:3}  {rule['action']}",
            markup=False,
        )


@policy_app.command("set")
def policy_set(
    rules: Annotated[
        list[str] | None,
        typer.Option("--rule", help="ALERT_TYPE:MIN_SCORE:ACTION (repeat; none clears)."),
    ] = None,
    reason: ReasonOption = "",
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Replace the automatic action policy (audited as the operator)."""
    parsed = [_rule(r) for r in rules or []]
    settings = existing_settings(data_dir)

    async def work(services: SurveillanceServices, _: AsyncEngine) -> int:
        async with services.unit_of_work() as session:
            found = await services.actions.set_policy(
                session, rules=parsed, reason=reason, actor=operator_party()
            )
            return len(found)

    console.print(f"policy set: {_with_surveillance(settings, work)} rule(s)")
