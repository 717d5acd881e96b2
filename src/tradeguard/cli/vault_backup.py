"""`tradeguard vault backup`: encrypted, signed backups of the card vault's own database
(ENC-1, PCI DSS 3.5.1), under the vault's key hierarchy.

The same format, checks and restore rules as `tradeguard backup` (docs/backups.md), with the
vault's keys everywhere: the data key sealed under the vault's `card_vault` class (its key
table in the vault database, wrapped by keys/vault/master.key or the vault's KMS key), the
manifest signed by the vault's own backup key (keys/vault/backup/). The platform's master
key opens no vault backup, and the vault's opens no platform backup. Run these on the vault
host, where the vault's credentials are (PCI-3). Each backup and restore is recorded in the
vault's access log (`vault:backup:created` in the vault database backed up,
`vault:backup:restored` in the restored one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import make_url

from tradeguard.backup.errors import BackupRejected
from tradeguard.backup.keys import (
    VAULT_BACKUP_KEY_NAME,
    load_or_create_backup_keys,
    trusted_backup_keys,
)
from tradeguard.backup.service import (
    VAULT,
    DatabaseLocation,
    Verification,
    create_backup,
    event_data,
    restore_backup,
    signed_manifest,
    verify_backup,
)
from tradeguard.cli.backup import (
    MasterKeyOption,
    PublicKeyOption,
    RichProgress,
    keks_for,
    progress_bar,
    trusted_keys,
)
from tradeguard.cli.bootstrap import sqlite_file
from tradeguard.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    DataDirOption,
    console,
    fail,
    operator_party,
    run_async,
    settings_from,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.errors import TradeguardError
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.providers import KekProvider
from tradeguard.crypto.tasks import vault_kek
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.vault.container import open_store, own_vault_url
from tradeguard.vault.keys import (
    BACKUP_CREATED,
    BACKUP_RESTORED,
    OperatorEvent,
    VaultKeyAudit,
)
from tradeguard.vault.migrate import current_revision, head_revision

app = typer.Typer(
    help="Encrypted, signed backups of the card vault's database, under the vault's keys.",
    no_args_is_help=True,
)

BACKUP_VERIFIED = "vault:backup:verified"
BACKUP_REJECTED = "vault:backup:rejected"


def vault_backup_keys_dir(settings: Settings) -> Path:
    return settings.keys_dir / "vault" / "backup"


def _vault_settings(data_dir: Path | None) -> Settings:
    settings = settings_from(data_dir)
    try:
        own_vault_url(settings)
    except TradeguardError as error:
        fail(error.detail, code=EXIT_USAGE)
    path = sqlite_file(settings.vault_url)
    if path is not None and not path.exists():
        fail(
            "no vault database here",
            hint="run `tradeguard init` or `tradeguard vault upgrade` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    return settings


async def _record(url: str, operation: str, data: dict[str, Any]) -> str:
    """One row in the vault access log of the vault database at `url`, when it is at this
    release's schema; otherwise say why not."""
    engine = create_engine(url)
    clock = SystemClock()
    try:
        if await current_revision(engine) != head_revision():
            return (
                "not recorded: the vault database is not at this release's schema (run "
                "`tradeguard vault upgrade` on it)"
            )
        async with unit_of_work(session_factory(engine)) as session:
            event = OperatorEvent(operation, operator_party(), data)
            await VaultKeyAudit(clock=clock, ids=IdGenerator(clock)).append(session, event)
    except (OSError, TradeguardError) as error:
        return f"not recorded: the vault database is unreachable ({type(error).__name__})"
    finally:
        await engine.dispose()
    return "recorded in the vault's access log"


def _default_out(settings: Settings, backend: str) -> Path:
    stamp = ns_to_iso(SystemClock().now_ns()).replace(":", "").replace("-", "")[:15]
    settings.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return settings.backup_dir / f"tradeguard-vault-{backend}-{stamp}Z.tgbk"


def _vault_trusted(settings: Settings, public_key: Path | None) -> list[Any]:
    return trusted_keys(
        settings, public_key, vault_backup_keys_dir(settings), name=VAULT_BACKUP_KEY_NAME
    )


async def _vault_keks(
    settings: Settings, backup: Path, trusted: list[Any], master_keys: list[Path]
) -> list[KekProvider]:
    return await keks_for(
        settings, signed_manifest(backup, trusted), master_keys, setup=vault_kek(settings)
    )


@app.command("create")
def create(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The backup file to write (must not exist); its manifest goes beside it as "
            "OUT.manifest. Default: <data dir>/backups/tradeguard-vault-<backend>-<time>.tgbk.",
            dir_okay=False,
        ),
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Back up the card vault's database: streamed, zstd-compressed, encrypted, signed.

    The data key is sealed under the vault's own key class (wrapped by the vault's master
    key or KMS key, never the platform's); the manifest is signed with the vault's backup
    key (keys/vault/backup). Recorded in the vault's access log.
    """
    settings = _vault_settings(data_dir)
    try:
        source = DatabaseLocation(settings.vault_url)
        backend = source.backend
    except TradeguardError as error:
        fail(error.detail, code=EXIT_USAGE)
    target = out if out is not None else _default_out(settings, backend)
    signer = load_or_create_backup_keys(
        vault_backup_keys_dir(settings), VAULT_BACKUP_KEY_NAME
    ).active

    async def main() -> None:
        clock = SystemClock()
        store = open_store(settings, clock=clock, ids=IdGenerator(clock))
        try:
            await store.start()  # checks the schema; makes the first data key if none
            with progress_bar() as bar:
                made = await create_backup(
                    source=source,
                    out=target,
                    management=store.keys,
                    sessions=store.sessions,
                    signer=signer,
                    clock=clock,
                    progress=RichProgress(bar),
                    kind=VAULT,
                )
            try:
                async with store.unit_of_work() as session:
                    event = OperatorEvent(
                        BACKUP_CREATED,
                        operator_party(),
                        event_data(made.manifest, made.note, file=made.data),
                    )
                    await VaultKeyAudit(clock=clock, ids=store.ids).append(session, event)
            except BaseException:
                # A backup the vault's log does not know of must not exist.
                made.data.unlink(missing_ok=True)
                made.manifest_file.unlink(missing_ok=True)
                raise
        finally:
            await store.close()
        manifest = made.manifest
        console.print(f"backup     {made.data}")
        console.print(f"manifest   {made.manifest_file}")
        console.print(
            f"contents   vault database, {backend}, schema {manifest.schema_revision or '-'}, "
            f"{manifest.plaintext_bytes:,} bytes -> {manifest.ciphertext_bytes:,} bytes in "
            f"{manifest.chunk_count} chunks"
        )
        console.print(
            f"key        {manifest.keys.data_class} v{manifest.keys.version} "
            f"under {manifest.keys.kek_id}; signed by {made.signed_by.vkey}"
        )

    run_async(main(), database_url=settings.vault_url)


def _report(verification: Verification) -> None:
    manifest = verification.manifest
    console.print(
        f"vault backup {manifest.backup_id}: {manifest.backend}, schema "
        f"{manifest.schema_revision or '-'}, made {manifest.created_at}, "
        f"{manifest.chunk_count} chunks, {manifest.ciphertext_bytes:,} bytes"
    )
    console.print(f"signed by  {verification.signed_by.vkey}")
    for check in verification.checked:
        console.print(f"[green]ok[/]         {check}")
    for check in verification.not_checked:
        console.print(f"[yellow]unchecked[/]  {check} (needs the vault master key)")


async def _record_here(settings: Settings, operation: str, data: dict[str, Any]) -> str:
    path = sqlite_file(settings.vault_url)
    if path is not None and not path.exists():
        return "not recorded: no vault database in this data directory"
    return await _record(settings.vault_url, operation, data)


@app.command("verify")
def verify(
    backup: Annotated[Path, typer.Argument(help="The backup file (its .manifest beside it).")],
    public_key: Annotated[Path | None, PublicKeyOption] = None,
    master_keys: Annotated[list[Path] | None, MasterKeyOption] = None,
    signature_only: Annotated[
        bool,
        typer.Option(
            "--signature-only",
            help="Check what the signature covers only (no vault master key needed).",
        ),
    ] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Check a vault backup: its signed manifest, the file, and with the vault's master key
    (keys/vault/master.key, a retired one, --master-key, or the vault's KMS key) every chunk.

    --master-key files are vault master keys (read with
    TRADEGUARD_VAULT_MASTER_KEY_PASSPHRASE when sealed).
    """
    settings = settings_from(data_dir)
    trusted = _vault_trusted(settings, public_key)

    async def main() -> None:
        try:
            keks: list[KekProvider] = []
            if not signature_only:
                keks = await _vault_keks(settings, backup, trusted, master_keys or [])
            with progress_bar() as bar:
                verification = await verify_backup(
                    data=backup,
                    trusted=trusted,
                    provider=None,
                    also=keks,
                    progress=RichProgress(bar),
                    kind=VAULT,
                )
        except BackupRejected as rejected:
            where = await _record_here(
                settings, BACKUP_REJECTED, {"file": str(backup), "reason": rejected.reason.value}
            )
            fail(
                f"backup rejected [{rejected.reason.value}]: {rejected.detail}",
                hint=where,
                code=EXIT_FAILURE,
            )
        _report(verification)
        data = event_data(verification.manifest, verification.note, file=backup)
        data["complete"] = verification.complete
        console.print(await _record_here(settings, BACKUP_VERIFIED, data))
        if not verification.complete:
            console.print(
                "[yellow]partly verified[/]: the signature and the file's hash hold; the "
                "chunks were not decrypted"
            )

    run_async(main())


@app.command("restore")
def restore(
    backup: Annotated[Path, typer.Argument(help="The backup file (its .manifest beside it).")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Where to restore: a new SQLite file path (must not exist), or a PostgreSQL "
            "URL of an existing, empty database (the vault's own, never the platform's).",
            show_default=False,
        ),
    ],
    public_key: Annotated[Path | None, PublicKeyOption] = None,
    master_keys: Annotated[list[Path] | None, MasterKeyOption] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Verify a vault backup completely, then restore it into a fresh database.

    Needs the vault's key-encrypting key the backup was made under (its manifest names it).
    The restored vault database holds the vault's key table as it was: the same vault
    master key opens it. Recorded in the restored database's access log.
    """
    settings = settings_from(data_dir)
    trusted = _vault_trusted(settings, public_key)
    is_url = "://" in to
    target = DatabaseLocation(to if is_url else f"sqlite:///{Path(to).absolute().as_posix()}")
    try:
        if target.backend == "postgresql" and _same_database(target.url, settings):
            fail("--to names the platform's database; a vault restore needs its own", code=2)
    except TradeguardError as error:
        fail(error.detail, code=EXIT_USAGE)

    async def main() -> None:
        try:
            keks = await _vault_keks(settings, backup, trusted, master_keys or [])
            with progress_bar() as bar:
                verification = await restore_backup(
                    data=backup,
                    trusted=trusted,
                    provider=None,
                    also=keks,
                    target=target,
                    progress=RichProgress(bar),
                    kind=VAULT,
                )
        except BackupRejected as rejected:
            fail(
                f"backup rejected [{rejected.reason.value}]: {rejected.detail}; nothing restored",
                code=EXIT_FAILURE,
            )
        manifest = verification.manifest
        note = await _record(target.url, BACKUP_RESTORED, event_data(manifest, verification.note))
        shown = (
            str(target.sqlite_path)
            if target.backend == "sqlite"
            else make_url(target.url).render_as_string(hide_password=True)
        )
        console.print(
            f"restored vault backup {manifest.backup_id} ({manifest.created_at}, schema "
            f"{manifest.schema_revision or '-'}) into {shown}"
        )
        console.print(note.replace("recorded in the vault's", "recorded in the restored"))

    run_async(main(), database_url=target.url)


def _same_database(url: str, settings: Settings) -> bool:
    probe = settings.model_copy(update={"vault_database_url": url})
    try:
        own_vault_url(probe)
    except TradeguardError:
        return True
    return False


@app.command("public-key")
def public_key_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Print the vault backup signing keys' public halves, for `vault backup verify
    --public-key`."""
    settings = settings_from(data_dir)
    keys = trusted_backup_keys(vault_backup_keys_dir(settings), VAULT_BACKUP_KEY_NAME)
    if not keys:
        fail(
            f"no vault backup signing key in {vault_backup_keys_dir(settings)}",
            hint="run `tradeguard vault backup create` once",
            code=EXIT_USAGE,
        )
    for key in keys:
        print(key.vkey)
