"""`tradeguard vault`: the card vault's database, certificates and its own server (PCI-2/3)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from tradeguard.cli.bootstrap import prepare_data_dir
from tradeguard.cli.common import DataDirOption, console, run_async, settings_from
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine
from tradeguard.vault.certs import VaultPki, issue_all
from tradeguard.vault.container import open_store
from tradeguard.vault.migrate import current_revision, upgrade
from tradeguard.vault.server import create_vault_app
from tradeguard.vault.serving import VaultServer, bind_vault_socket
from tradeguard.web.logging import configure_logging

app = typer.Typer(
    help="The card vault: its database, certificates and server.", no_args_is_help=True
)


async def _upgrade(settings: Settings) -> tuple[str | None, str | None]:
    prepare_data_dir(settings)
    engine = create_engine(settings.vault_url)
    try:
        before = await current_revision(engine)
        await upgrade(engine)
        return before, await current_revision(engine)
    finally:
        await engine.dispose()


@app.command("upgrade")
def upgrade_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Apply the vault database's own migrations (TRADEGUARD_VAULT_DATABASE_URL)."""
    settings = settings_from(data_dir)
    before, after = run_async(_upgrade(settings), database_url=settings.vault_url)
    if before == after:
        console.print(f"vault database already at {after}")
    else:
        console.print(f"vault database migrated {before or 'new'} -> {after}")


@app.command("certs")
def certs_command(
    data_dir: Annotated[Path | None, DataDirOption] = None,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="A private address or name the vault listens on (repeat)."),
    ] = None,
) -> None:
    """Issue the vault's CA (once), server certificate and app/payment client certificates."""
    settings = settings_from(data_dir)
    written = issue_all(VaultPki(settings.vault_pki_dir), now=datetime.now(UTC), hosts=host or ())
    for path in written:
        console.print(f"wrote {path}")


async def _rotate(settings: Settings) -> int:
    clock = SystemClock()
    store = open_store(settings, clock=clock, ids=IdGenerator(clock))
    try:
        await store.start()
        return await store.rotate_data_key()
    finally:
        await store.close()


@app.command("rotate-key")
def rotate_key_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Create the next version of the vault's data key (PCI-4: every 90 days)."""
    settings = settings_from(data_dir)
    version = run_async(_rotate(settings), database_url=settings.vault_url)
    console.print(f"vault data key v{version} created; it encrypts after the activation delay")


@app.command("serve")
def serve_command(
    data_dir: Annotated[Path | None, DataDirOption] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help="unix:///path/vault.sock (default: <data dir>/vault.sock) or "
            "https://<private address>:<port> (env TRADEGUARD_VAULT_LISTEN)",
        ),
    ] = None,
) -> None:
    """Run the vault as its own process, over mutual TLS only (PCI-3)."""
    settings = settings_from(data_dir, vault_listen=listen)
    configure_logging(settings.log_level)
    prepare_data_dir(settings)
    pki = VaultPki(settings.vault_pki_dir)
    if not pki.server_cert.is_file():
        issue_all(pki, now=datetime.now(UTC))
    clock = SystemClock()
    store = open_store(settings, clock=clock, ids=IdGenerator(clock))
    address = settings.effective_vault_listen
    server = VaultServer(
        create_vault_app(store),
        pki,
        bind_vault_socket(address),
        handshake_timeout=settings.tls_handshake_timeout_seconds,
        on_started=lambda: console.print(f"vault listening on {address} (mutual TLS)"),
    )
    server.run()
