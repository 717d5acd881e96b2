"""`tradeguard vault`: the card vault's database, certificates, keys (PCI-4) and its own
server (PCI-2/3).

Key commands act as the operating-system user who runs them (`operator:<name>`), and every
change they make is recorded in the vault's own access log with the change (vault/keys.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.cli import vault_backup
from tradeguard.cli.bootstrap import prepare_data_dir, sqlite_file
from tradeguard.cli.common import (
    EXIT_USAGE,
    DataDirOption,
    console,
    fail,
    fail_on_error,
    operator_party,
    run_async,
    settings_from,
)
from tradeguard.cli.kek_rotation import (
    EndpointUrl,
    KeyId,
    Region,
    To,
    rotate_key_encrypting_key,
)
from tradeguard.cli.key_operations import (
    count_usage,
    print_status,
    retire_unused,
    rewrap_with_progress,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.errors import TradeguardError
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.providers import KekProvider
from tradeguard.crypto.service import KeyManagement, NewKeyVersion
from tradeguard.crypto.tasks import LOCAL, vault_kek, vault_key_policy_from
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.vault.certs import (
    REVOCATION_REASONS,
    IssuedCertificate,
    VaultPki,
    issue_all,
    issued_certificates,
    load_crl,
    parse_serial,
    resign_crl,
    revoke,
    revoked_certificates,
    x509_serial,
)
from tradeguard.vault.container import open_store, own_vault_url
from tradeguard.vault.domain import VaultRole
from tradeguard.vault.keys import CERTIFICATE_REVOKED, OperatorEvent, VaultKeyAudit
from tradeguard.vault.metrics import VaultMetrics
from tradeguard.vault.migrate import current_revision, head_revision, upgrade
from tradeguard.vault.server import create_vault_app
from tradeguard.vault.serving import MetricsListener, VaultServer, bind_vault_socket
from tradeguard.vault.store import CARD_CLASS, CardVaultStore, VaultNotMigrated
from tradeguard.web.logging import configure_logging

T = TypeVar("T")

app = typer.Typer(
    help="The card vault: its database, certificates, keys and server.", no_args_is_help=True
)


async def _upgrade(settings: Settings) -> tuple[str | None, str | None]:
    url = own_vault_url(settings)  # before anything is made
    prepare_data_dir(settings)
    engine = create_engine(url)
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


app.add_typer(vault_backup.app, name="backup")

certs_app = typer.Typer(
    help="The vault's mutual-TLS certificates: issue, list, revoke (PCI-3).",
    invoke_without_command=True,
)
app.add_typer(certs_app, name="certs")


@certs_app.callback()
def certs_command(
    ctx: typer.Context,
    data_dir: Annotated[Path | None, DataDirOption] = None,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="A private address or name the vault listens on (repeat)."),
    ] = None,
) -> None:
    """Issue the vault's CA (once), server certificate and app/payment client certificates.

    With a subcommand (list, revoke, crl), that instead.
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = data_dir
        return
    settings = settings_from(data_dir)
    written = issue_all(VaultPki(settings.vault_pki_dir), now=datetime.now(UTC), hosts=host or ())
    for path in written:
        console.print(f"wrote {path}")


def _pki_of(ctx: typer.Context, data_dir: Path | None) -> VaultPki:
    settings = settings_from(data_dir or ctx.obj)
    pki = VaultPki(settings.vault_pki_dir)
    if not pki.ca_cert.is_file():
        fail(
            f"no vault CA in {pki.directory}",
            hint="run `tradeguard vault certs` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    return pki


@certs_app.command("list")
def certs_list(ctx: typer.Context, data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Every certificate the vault CA issued here: serial, kind, role, expiry, and whether
    it is revoked (by the revocation list, crl.pem)."""
    pki = _pki_of(ctx, data_dir)
    try:
        revoked = revoked_certificates(load_crl(pki)) if pki.crl.is_file() else {}
        issued = issued_certificates(pki)
    except TradeguardError as exc:
        fail_on_error(exc)
    now = datetime.now(UTC)
    current = {
        x509_serial(path)
        for path in (pki.server_cert, *(pki.client_cert(role) for role in VaultRole))
        if path.is_file()
    }
    typer.echo(f"{'serial':<42} {'kind':<7} {'role':<8} {'expires':<10}  status")
    for cert in issued:
        entry = revoked.get(cert.serial)
        if entry is not None:
            status = f"revoked {entry.revoked_at:%Y-%m-%d %H:%M}Z ({entry.reason})"
        elif cert.not_after < now:
            status = "expired"
        elif cert.serial in current:
            status = "issued (current file)"
        else:
            status = "issued (replaced)"
        typer.echo(
            f"{cert.serial_hex:<42} {cert.kind:<7} {cert.role or '-':<8} "
            f"{cert.not_after:%Y-%m-%d}  {status}"
        )
    if not pki.crl.is_file():
        console.print("no revocation list yet (made by `vault certs crl` or the first revoke)")


@certs_app.command("revoke")
def certs_revoke(
    ctx: typer.Context,
    serial: Annotated[
        str, typer.Argument(help="The certificate's serial, in hex, as `vault certs list` shows.")
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="Why: " + ", ".join(REVOCATION_REASONS) + ".",
            show_default=False,
        ),
    ],
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Revoke a client certificate: add it to the vault CA's revocation list (crl.pem).

    A running vault reads the changed list at its next connection, without a restart, and
    refuses that certificate from then on; the other certificates keep working. Recorded in
    the vault's access log (operation vault:certificate:revoked). Needs the CA key.
    """
    pki = _pki_of(ctx, data_dir)
    settings = _vault_settings(data_dir or ctx.obj)
    try:
        number = parse_serial(serial)
    except TradeguardError as exc:
        fail_on_error(exc)

    async def work() -> IssuedCertificate:
        # The access log only: a revocation needs neither the vault's keys nor its cards.
        engine = create_engine(own_vault_url(settings))
        clock = SystemClock()
        try:
            current, head = await current_revision(engine), head_revision()
            if current != head:
                raise VaultNotMigrated(
                    f"the vault database is at {current or 'no revision'}, not {head}: "
                    "run `tradeguard vault upgrade` first"
                )
            async with unit_of_work(session_factory(engine)) as session:
                # The list is signed inside the transaction: a refused revocation records
                # nothing; the record commits right after the list is in place.
                revoked = revoke(pki, number, reason=reason, now=datetime.now(UTC))
                event = OperatorEvent(
                    CERTIFICATE_REVOKED,
                    operator_party(),
                    {
                        "serial": revoked.serial_hex,
                        "kind": revoked.kind,
                        "role": revoked.role,
                        "reason": reason,
                    },
                )
                await VaultKeyAudit(clock=clock, ids=IdGenerator(clock)).append(session, event)
        finally:
            await engine.dispose()
        return revoked

    revoked = run_async(work(), database_url=settings.vault_url)
    console.print(
        f"revoked {revoked.serial_hex} ({revoked.kind}, role {revoked.role or '-'}, "
        f"reason {reason}); the vault refuses it from its next connection"
    )


@certs_app.command("crl")
def certs_crl(ctx: typer.Context, data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Sign the revocation list again (a new validity of a year), or make an empty one."""
    pki = _pki_of(ctx, data_dir)
    if not pki.ca_key.is_file():
        fail(f"no vault CA key at {pki.ca_key}", hint="run it where the CA key is", code=2)
    try:
        crl = resign_crl(pki, now=datetime.now(UTC))
    except TradeguardError as exc:
        fail_on_error(exc)
    console.print(
        f"wrote {pki.crl}: {len(list(crl))} revoked, valid until {crl.next_update_utc:%Y-%m-%d}"
    )


# -- keys (PCI-4, PCI DSS 3.6/3.7) ---------------------------------------------------------


def _vault_settings(data_dir: Path | None) -> Settings:
    """The settings of a data directory whose vault database exists (a key command must not
    make an empty one)."""
    settings = settings_from(data_dir)
    path = sqlite_file(settings.vault_url)
    if path is not None and not path.exists():
        fail(
            "no vault database here",
            hint="run `tradeguard init` or `tradeguard vault upgrade` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    return settings


@asynccontextmanager
async def _opened(settings: Settings, *, create_key: bool = False) -> AsyncIterator[CardVaultStore]:
    """The vault store on the vault database, its keys read (made first when `create_key`:
    a first start)."""
    clock = SystemClock()
    store = open_store(settings, clock=clock, ids=IdGenerator(clock), create_key=create_key)
    try:
        if create_key:
            await store.start()
        else:
            await store.check_schema()
            await store.refresh_keys()
        yield store
    finally:
        await store.close()


def _run_on_vault(
    settings: Settings,
    work: Callable[[CardVaultStore], Awaitable[T]],
    *,
    create_key: bool = False,
) -> T:
    async def main() -> T:
        async with _opened(settings, create_key=create_key) as store:
            return await work(store)

    return run_async(main(), database_url=settings.vault_url)


@app.command("rotate-key")
def rotate_key_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Create the next version of the vault's data key now (PCI-4).

    The running vault also rotates on its own every TRADEGUARD_VAULT_KEY_ROTATION_DAYS (90)
    days. The new version encrypts after the activation delay; older PANs keep reading
    under their version until `tradeguard vault rewrap` moves them.
    """
    settings = _vault_settings(data_dir)

    async def work(store: CardVaultStore) -> NewKeyVersion:
        async with store.unit_of_work() as session:
            made = await store.keys.rotate(session, CARD_CLASS, actor=operator_party())
        await store.refresh_keys()
        return made

    made = _run_on_vault(settings, work, create_key=True)
    console.print(
        f"vault data key v{made.version} created; it encrypts from {ns_to_iso(made.activates_ns)}"
    )


@app.command("status")
def status_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """List the vault's key versions: state, activation, last usage count, and KEK.

    States: encrypting, pending (encrypts after the activation delay), decrypt-only,
    retired (never encrypts or decrypts again), indexing (the fingerprint key).
    """

    async def work(store: CardVaultStore) -> None:
        await print_status(store.keys, store.sessions)

    _run_on_vault(_vault_settings(data_dir), work)


@app.command("usage")
def usage_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Count the stored cards under each data-key version (recorded; shown by `vault status`)."""

    async def work(store: CardVaultStore) -> None:
        await count_usage(store.keys, store.sessions, [CARD_CLASS], actor=operator_party())

    _run_on_vault(_vault_settings(data_dir), work)


@app.command("rewrap")
def rewrap_command(
    batch_size: Annotated[
        int, typer.Option(help="Cards re-encrypted per committed batch.", min=1, max=100_000)
    ] = 1000,
    pause_ms: Annotated[
        int,
        typer.Option(help="Pause between batches, to spare a busy database.", min=0, max=60_000),
    ] = 0,
    retire: Annotated[
        bool, typer.Option(help="Retire the versions no stored card uses any more, when done.")
    ] = True,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Re-encrypt every stored card's PAN under the vault's encrypting data-key version.

    Works in committed batches and records how far it got: stopped or killed, it resumes
    at the last committed batch when run again. A PAN that does not decrypt is left as it
    is and counted (its version then cannot retire). Each batch's start, resume and end is
    recorded in the vault's access log.
    """

    async def work(store: CardVaultStore) -> None:
        await rewrap_with_progress(
            store.keys,
            store.sessions,
            CARD_CLASS,
            actor=operator_party(),
            batch_size=batch_size,
            pause_ms=pause_ms,
        )
        if retire:
            await retire_unused(
                store.keys, store.sessions, [CARD_CLASS], actor=operator_party(), say_none=True
            )

    _run_on_vault(_vault_settings(data_dir), work)


@app.command("retire")
def retire_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Retire every older data-key version no stored card uses (it never encrypts again).

    PCI DSS 3.7.5: a retired version also never decrypts, and the vault database refuses to
    make it active again. A version qualifies once its successor has encrypted for
    TRADEGUARD_KEY_RETIRE_GRACE_SECONDS and no stored card is sealed under it.
    """

    async def work(store: CardVaultStore) -> None:
        await retire_unused(
            store.keys, store.sessions, [CARD_CLASS], actor=operator_party(), say_none=True
        )

    _run_on_vault(_vault_settings(data_dir), work)


@app.command("rotate-master")
def rotate_master(
    to: To = LOCAL,
    key_id: KeyId = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Re-wrap every vault key under a new key-encrypting key (local, or AWS KMS).

    Every data-key version and the fingerprint key: under a new keys/vault/master.key, or
    the vault's own AWS KMS key (--to aws-kms). One key per committed transaction, each
    recorded in the vault's access log. Stopped or killed, every key still opens under the
    old or the new KEK; run it again to finish. A local rotation keeps the old file as
    keys/vault/master.key.retired-<date>-<fingerprint> and puts the new one in place when
    no key is left under the old one. After a move to AWS KMS, set
    TRADEGUARD_VAULT_KEK_PROVIDER=aws-kms and TRADEGUARD_VAULT_AWS_KMS_KEY_ID, and restart
    the vault. The PANs themselves are not touched (their data keys are the same).
    """
    settings = _vault_settings(data_dir)

    @asynccontextmanager
    async def open_keys(
        current: KekProvider, known: list[KekProvider]
    ) -> AsyncIterator[tuple[KeyManagement, async_sessionmaker[AsyncSession]]]:
        clock = SystemClock()
        store = CardVaultStore.open_with(
            engine=create_engine(own_vault_url(settings)),
            provider=current,
            clock=clock,
            ids=IdGenerator(clock),
            owns_engine=True,
            policy=vault_key_policy_from(settings),
            also=known,
        )
        try:
            await store.check_schema()
            yield store.keys, store.sessions
        finally:
            await store.close()

    rotate_key_encrypting_key(
        settings,
        vault_kek(settings),
        to=to,
        key_id=key_id,
        region=region,
        endpoint_url=endpoint_url,
        database_url=settings.vault_url,
        open_keys=open_keys,
        restart="the process that holds the vault (`tradeguard vault serve`, or `tradeguard "
        "serve` with the vault in process)",
    )


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
    metrics_address: Annotated[
        str | None,
        typer.Option(
            "--metrics-address",
            help="Where to serve the vault's Prometheus metrics (plain HTTP, path /metrics): "
            "IP:port, loopback unless --metrics-allow-remote, or `off` (default "
            "127.0.0.1:9465; env TRADEGUARD_VAULT_METRICS_ADDRESS).",
        ),
    ] = None,
    metrics_allow_remote: Annotated[
        bool | None,
        typer.Option(
            "--metrics-allow-remote/--metrics-loopback-only",
            help="Allow a private, non-loopback metrics address (firewall it to Prometheus).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the vault as its own process, over mutual TLS only (PCI-3).

    Client certificates are checked against the vault CA's revocation list (crl.pem, see
    `vault certs revoke`), re-read when it changes. Metrics go to a separate plain-HTTP
    listener (--metrics-address), never the card API.
    """
    settings = settings_from(
        data_dir,
        vault_listen=listen,
        vault_metrics_address=metrics_address,
        vault_metrics_allow_remote=metrics_allow_remote,
    )
    configure_logging(settings.log_level)
    prepare_data_dir(settings)
    address = settings.effective_vault_listen
    try:
        pki = VaultPki(settings.vault_pki_dir)
        if not pki.server_cert.is_file():
            issue_all(pki, now=datetime.now(UTC))
        clock = SystemClock()
        # The key file and the socket before serving: a key file others may read, a vault
        # already on the socket or a taken port is one line, not a traceback.
        store = open_store(settings, clock=clock, ids=IdGenerator(clock))
        metrics = VaultMetrics()
        listener = None
        if settings.vault_metrics_address.strip().lower() != "off":
            listener = MetricsListener(
                metrics,
                settings.vault_metrics_address,
                allow_remote=settings.vault_metrics_allow_remote,
            )
        try:
            sock = bind_vault_socket(address)
            server = VaultServer(
                create_vault_app(store, metrics),
                pki,
                sock,
                handshake_timeout=settings.tls_handshake_timeout_seconds,
                on_started=lambda: console.print(f"vault listening on {address} (mutual TLS)"),
                metrics=metrics,
            )
        except BaseException:
            if listener is not None:
                listener.stop()
            raise
    except TradeguardError as exc:
        fail_on_error(exc)
    if listener is not None:
        listener.start()
        console.print(f"vault metrics on {listener.url}")
    try:
        server.run()
    finally:
        if listener is not None:
            listener.stop()
