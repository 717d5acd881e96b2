"""The `tradeguard` command: init, serve, db, audit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tradeguard import __version__
from tradeguard.cli import (
    access,
    access_alerts,
    aml,
    apikeys,
    audit,
    backup,
    db,
    dev,
    funds,
    keys,
    kyc,
    kyc_documents,
    sanctions,
    surveillance,
    takeover,
    trading,
    users,
    vault,
)
from tradeguard.cli.bootstrap import initialize
from tradeguard.cli.common import DataDirOption, console, run_async, settings_from
from tradeguard.core.clock import SystemClock

app = typer.Typer(
    name="tradeguard",
    help="Security, compliance and privacy core of a stock-trading platform.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(audit.app, name="audit")
app.add_typer(users.app, name="users")
app.add_typer(keys.app, name="keys")
app.add_typer(apikeys.app, name="apikeys")
app.add_typer(backup.app, name="backup")
app.add_typer(dev.app, name="dev")
app.add_typer(trading.app, name="trading")
app.add_typer(surveillance.app, name="surveillance")
app.add_typer(takeover.app, name="takeover")
app.add_typer(vault.app, name="vault")
app.add_typer(funds.app, name="funds")
# `tradeguard kyc`: account applications (KYC-1, KYC-2), and identity documents under it.
kyc.app.add_typer(kyc_documents.app, name="documents")
app.add_typer(kyc.app, name="kyc")
app.add_typer(sanctions.app, name="sanctions")
app.add_typer(aml.app, name="aml")
# `tradeguard access`: staff access administration; its `alerts` group is IAC-4.
access.app.add_typer(access_alerts.app, name="alerts")
app.add_typer(access.app, name="access")


def _version(value: bool) -> None:
    if value:
        console.print(f"tradeguard {__version__}")
        raise typer.Exit


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Security, compliance and privacy core of a stock-trading platform."""
    # Whatever this process creates (databases and their WAL, keys, certificates, backups,
    # the development mailbox) is for the service account only.
    os.umask(0o077)


@app.command()
def init(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Create the data directory, migrate the database and make a development certificate.

    Safe to run again: it only adds what is missing.
    """
    settings = settings_from(data_dir)
    report = run_async(
        initialize(settings, clock=SystemClock()), database_url=settings.main_database_url
    )
    console.print(f"data directory   {report.data_dir}")
    console.print(f"database schema  {report.migrated_from or 'new'} -> {report.migrated_to}")
    if report.created_certificate:
        console.print(f"dev certificate  created at {settings.dev_cert_file}")
    if report.created_ledger_key:
        console.print(f"audit log key    created in {settings.ledger_keys_dir}")
    console.print(f"audit log vkey   {report.ledger_key}")
    console.print("                 [dim](publish it: checkpoints verify with it)[/]")
    console.print(f"backup vkey      {report.backup_key}")
    console.print("                 [dim](keep it apart: backup manifests verify with it)[/]")
    console.print("[green]ready[/]: start the platform with [bold]tradeguard serve[/]")


@app.command()
def serve(
    data_dir: Annotated[Path | None, DataDirOption] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[
        int | None, typer.Option(help="TLS port to listen on.", min=1, max=65535)
    ] = None,
    cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain (default: the dev certificate).")
    ] = None,
    key: Annotated[Path | None, typer.Option(help="PEM private key for --cert.")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Seed demo users and instruments (development only).")
    ] = False,
) -> None:
    """Run the platform over HTTPS (TLS only; there is no plain-HTTP listener)."""
    from tradeguard.cli.serving import serve_platform  # noqa: PLC0415 - heavy import

    # The demo market stays open around the clock, so a visitor can trade at any hour.
    hours = "always" if demo and "TRADEGUARD_MARKET_HOURS" not in os.environ else None
    settings = settings_from(
        data_dir, host=host, port=port, tls_cert_file=cert, tls_key_file=key, market_hours=hours
    )
    serve_platform(settings, demo=demo)


def run() -> None:
    app()
