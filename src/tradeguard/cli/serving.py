"""`tradeguard serve`: bind the port, prepare the data dir, optionally seed the demo, serve."""

from __future__ import annotations

from pathlib import Path

from uvicorn.config import STARTUP_FAILURE

from tradeguard.cli.bootstrap import initialize
from tradeguard.cli.common import console, fail, fail_on_error, run_async
from tradeguard.cli.demo import DemoCredential, DemoWorkspace, seed_demo
from tradeguard.cli.demo_activity import SPOOF_SYMBOL, WASH_SYMBOL
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import TradeguardError
from tradeguard.identity.authenticator_metadata import default_metadata_file, read_catalogue
from tradeguard.web.server import bind_listeners, serve


async def _prepare(settings: Settings, *, demo: bool) -> DemoWorkspace | None:
    # A staff authenticator catalogue that cannot be read stops the start in one line.
    read_catalogue(settings.webauthn_staff_metadata_file or default_metadata_file())
    clock = SystemClock()
    await initialize(settings, clock=clock)
    return await seed_demo(settings, clock=clock) if demo else None


def _show_credentials(credentials: list[DemoCredential]) -> None:
    # Plain lines, never a table: a narrow terminal must not truncate a password.
    console.print("[bold]Demo users[/] (passwords are shown this once; save them now):")
    width = max(len(c.username) for c in credentials)
    for cred in credentials:
        console.print(
            f"  {cred.username:<{width}}  {cred.role.value:<10}  {cred.email}  "
            f"password: {cred.password}",
            markup=False,
        )


def _show_tour(settings: Settings, workspace: DemoWorkspace) -> None:
    """What the demo shows, as commands and routes that work against this data directory."""
    cli = ".venv/bin/tradeguard"
    # `make run` serves ./var, the commands' default; any other directory is named.
    default = settings.data_dir.resolve() == Path("var").resolve()
    where = "" if default else f" --data-dir {settings.data_dir}"
    origin = settings.public_origin
    tour = (
        (
            f"{cli} surveillance alerts{where}",
            f"MAN-1 wash trade (alice, {WASH_SYMBOL}) and MAN-2 spoofing (bob, {SPOOF_SYMBOL}), "
            "raised by the surveillance stream from the ledger",
        ),
        (
            f"{cli} surveillance cases list{where}",
            "the wash trade's case, assigned to carol.compliance, with a note",
        ),
        (
            f"{cli} kyc applications list{where}",
            "account applications (KYC-1): alice's and bob's approved, erin's waiting for "
            "review (approve it as carol.compliance with --as)",
        ),
        (
            f"{cli} aml rules show{where}",
            "AML monitoring's rules (AML-1); as carol.compliance (`aml alerts list --as "
            "carol.compliance`): bob's three deposits just under $10,000 on one day "
            "(structuring) and the currency transaction report they owe",
        ),
        *(
            (
                (
                    f"{cli} sanctions screen 'Nicolas Maduro'{where}",
                    "sanctions screening (KYC-2) against the OFAC SDN list the demo loaded "
                    "(docs/sanctions.md)",
                ),
            )
            if settings.sanctions_list_source
            else ()
        ),
        (
            f"{cli} trading orders list {workspace.activity.alice_cash_account}{where}",
            "alice's cash account: her fills and an open order",
        ),
        (f"{cli} trading reconcile{where}", "every balance matches the journal and executions"),
        (f"{cli} audit verify{where}", "the audit ledger's hash chain and Merkle tree"),
        (
            f"GET {origin}/api/v1/me/cards",
            "as alice, after the README's MFA sign-in: her card, masked (***1111)",
        ),
        (
            f"GET {origin}/api/v1/funds/bank-accounts and /deposits",
            "as alice: her confirmed checking account (***6789) and a 2,500.00 ACH deposit, "
            "tradable now, collected tomorrow (docs/funds.md)",
        ),
        (
            f"GET {origin}/api/v1/surveillance/alerts and /cases",
            "as carol.compliance: the alerts with their evidence, the case",
        ),
    )
    console.print("[bold]What to look at[/] (from the repository root, in another terminal):")
    for command, what in tour:
        console.print(f"  {command}", markup=False, soft_wrap=True)
        console.print(f"      {what}", markup=False)


def _listen_address(settings: Settings) -> str:
    if settings.host in {"0.0.0.0", "::", ""}:  # noqa: S104 - naming the wildcard, not binding
        # A wildcard is no address to open: name one that works, and say what it means.
        return f"https://localhost:{settings.port} (all addresses)"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"https://{host}:{settings.port}"


def serve_platform(settings: Settings, *, demo: bool) -> None:
    # The port first: when it is taken, nothing is migrated, seeded or printed, and the one
    # line says so (instead of a "serving on" line followed by a failure).
    try:
        sockets = bind_listeners(settings.host, settings.port)
    except TradeguardError as exc:
        fail_on_error(exc)
    try:
        workspace = run_async(
            _prepare(settings, demo=demo), database_url=settings.main_database_url
        )
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if workspace is not None and workspace.credentials:
        _show_credentials(workspace.credentials)
    elif workspace is not None:
        console.print(
            "demo workspace already seeded; its passwords were shown when it was made "
            "(forgot them? reset one through `tradeguard dev mailbox`, or stop the server, "
            f"delete {settings.data_dir} and run it again for a fresh demo)"
        )
    if workspace is not None:
        _show_tour(settings, workspace)

    def announce() -> None:
        console.print(
            f"tradeguard serving on [bold]{_listen_address(settings)}[/] "
            f"(public origin {settings.public_origin}; TLS only; Ctrl+C stops)"
        )

    try:
        serve(settings, sockets=sockets, on_started=announce)
    except TradeguardError as exc:
        fail_on_error(exc)
    except SystemExit as exc:
        # uvicorn exits with STARTUP_FAILURE when the app's start-up fails; the reason is in
        # the log lines above, so the last line only says that it did not start.
        if exc.code == STARTUP_FAILURE:
            fail("the platform did not start; the reason is logged above")
        raise
