"""`tradeguard backup`: create, verify and restore encrypted, signed database backups (ENC-1).

Every operation is a ledger event: a backup in the database it was taken from, a
verification in the configured database (when there is one), a restore in the restored
database. docs/backups.md explains the format, the keys and what to keep where.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.backup.errors import BackupRejected
from tradeguard.backup.keys import (
    BACKUP_KEY_NAME,
    load_or_create_backup_keys,
    trusted_backup_keys,
)
from tradeguard.backup.manifest import Manifest
from tradeguard.backup.service import (
    BackupEvent,
    DatabaseLocation,
    Verification,
    create_backup,
    event_data,
    record,
    restore_backup,
    signed_manifest,
    verify_backup,
)
from tradeguard.cli.bootstrap import database_missing
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
from tradeguard.crypto.kms_settings import KMS_KEK_PREFIX
from tradeguard.crypto.providers import KekProvider, LocalFileKek, read_master_key
from tradeguard.crypto.service import KeyManagement
from tradeguard.crypto.tasks import (
    KekSetup,
    connect_kms,
    key_policy_from,
    keyring_from,
    kms_settings_from,
    open_keyring,
    platform_kek,
    retired_local_keks,
)
from tradeguard.db.engine import create_engine, session_factory
from tradeguard.db.migrate import current_revision, head_revision
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.tree.errors import MalformedNote
from tradeguard.ledger.tree.keys import read_verifier_keys
from tradeguard.ledger.tree.note import VerifierKey

app = typer.Typer(help="Encrypted, signed database backups.", no_args_is_help=True)

Sessions = async_sessionmaker[AsyncSession]

PublicKeyOption = typer.Option(
    "--public-key",
    help="Trust the backup signing keys in this file (vkey lines, from `backup public-key`) "
    "instead of the data directory's.",
    dir_okay=False,
)


class RichProgress:
    """A progress bar per phase: bytes done, speed, elapsed time."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def phase(self, label: str, total: int | None) -> None:
        if self._task is not None:
            task = self._progress.tasks[self._task]
            self._progress.update(self._task, total=task.completed)
        self._task = self._progress.add_task(label, total=total)

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)


def progress_bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description:34}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=not sys.stdout.isatty(),
    )


MasterKeyOption = typer.Option(
    "--master-key",
    help="A master key file the backup may have been made under, such as the one in use "
    "before `tradeguard keys rotate-master` (repeatable). Read with "
    "TRADEGUARD_MASTER_KEY_PASSPHRASE when sealed under a passphrase.",
    dir_okay=False,
    show_default=False,
)


def _given_kek(path: Path, settings: Settings, setup: KekSetup | None = None) -> KekProvider:
    """A master key file named on the command line: one that does not read is an error."""
    passphrase = (setup or platform_kek(settings)).passphrase
    try:
        return LocalFileKek(read_master_key(path, passphrase=passphrase))
    except TradeguardError as error:
        fail(f"--master-key: {error.detail}", code=EXIT_USAGE)


def _installed_keks(settings: Settings, setup: KekSetup | None = None) -> list[KekProvider]:
    """The data directory's master keys: the current one (an unreadable one is an error, as
    it always was), one a rotation under way moves to, and the rotated-out copies (the
    platform's, or with `setup` the card vault's own)."""
    kek = setup or platform_kek(settings)
    found: list[KekProvider] = []
    if kek.master_key.exists():
        try:
            found.append(LocalFileKek(read_master_key(kek.master_key, passphrase=kek.passphrase)))
        except TradeguardError as error:
            fail(error.detail, code=EXIT_USAGE)
    # The new key of a rotation under way: a backup made meanwhile may carry a class key
    # already re-wrapped under it.
    with contextlib.suppress(TradeguardError):
        found.append(
            LocalFileKek(read_master_key(kek.pending_master_key, passphrase=kek.passphrase))
        )
    return found + retired_local_keks(kek)


def _region_of(arn: str) -> str | None:
    """The region of a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)."""
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[:3] == ["arn", "aws", "kms"] and parts[3] else None


async def keks_for(
    settings: Settings,
    manifest: Manifest,
    master_keys: list[Path],
    setup: KekSetup | None = None,
) -> list[KekProvider]:
    """Every key-encrypting key that may open the backup: the files given, this data
    directory's master keys (the platform's, or with `setup` the vault's), and the AWS KMS
    key the (verified) manifest names, reached only when that is the one needed."""
    found = [_given_kek(path, settings, setup) for path in master_keys]
    found += _installed_keks(settings, setup)
    needed = manifest.keys.kek_id
    if needed.startswith(KMS_KEK_PREFIX) and all(kek.kek_id != needed for kek in found):
        arn = needed.removeprefix(KMS_KEK_PREFIX)
        try:
            kms = kms_settings_from(settings, key_id=arn, region=_region_of(arn))
            found.append(await asyncio.to_thread(connect_kms, kms))
        except TradeguardError as error:
            fail(
                f"the backup's keys are wrapped under the key-encrypting key {needed}, which "
                f"cannot be reached here: {error.detail}",
                code=EXIT_FAILURE,
            )
    return found


def trusted_keys(
    settings: Settings,
    public_key: Path | None,
    directory: Path | None = None,
    name: str = BACKUP_KEY_NAME,
) -> list[VerifierKey]:
    if public_key is not None:
        try:
            keys = read_verifier_keys(public_key)
        except (OSError, UnicodeDecodeError) as error:
            fail(f"cannot read {public_key} ({type(error).__name__})", code=EXIT_USAGE)
        except MalformedNote as error:
            fail(f"{public_key}: {error.detail}", code=EXIT_USAGE)
        if not keys:
            fail(f"{public_key} holds no public key", code=EXIT_USAGE)
        return keys
    where = directory or settings.backup_keys_dir
    keys = trusted_backup_keys(where, name)
    if not keys:
        fail(
            f"no backup signing key in {where}",
            hint="pass --public-key FILE (the output of `public-key`)",
            code=EXIT_USAGE,
        )
    return keys


@asynccontextmanager
async def _database(
    url: str, pg_schema: str | None = None
) -> AsyncIterator[tuple[AsyncEngine, Sessions]]:
    engine = create_engine(url, pg_schema=pg_schema)
    try:
        yield engine, session_factory(engine)
    finally:
        await engine.dispose()


def _default_out(settings: Settings, backend: str) -> Path:
    stamp = ns_to_iso(SystemClock().now_ns()).replace(":", "").replace("-", "")[:15]
    settings.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return settings.backup_dir / f"tradeguard-{backend}-{stamp}Z.tgbk"


@app.command("create")
def create(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The backup file to write (must not exist); its manifest goes beside it as "
            "OUT.manifest. Default: <data dir>/backups/tradeguard-<backend>-<time>.tgbk.",
            dir_okay=False,
        ),
    ] = None,
    pg_schema: Annotated[
        str | None,
        typer.Option(help="PostgreSQL only: back up this schema instead of the whole database."),
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Back up the configured database: streamed, zstd-compressed, encrypted, signed.

    SQLite is copied with the online backup API and PostgreSQL dumped with pg_dump (custom
    format), both consistent while the platform keeps writing. The backup gets a fresh data
    key, sealed under the keyring's `backup` key class; the manifest is signed with the
    backup signing key (keys/backup). The backup is recorded in the database's ledger.
    """
    settings = settings_from(data_dir)
    if database_missing(settings):
        fail(
            "no tradeguard database here",
            hint="run `tradeguard init` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    try:
        source = DatabaseLocation(settings.main_database_url, pg_schema)
        backend = source.backend
    except TradeguardError as error:
        fail(error.detail, code=EXIT_USAGE)
    if pg_schema is not None and backend != "postgresql":
        fail("--pg-schema applies to PostgreSQL only", code=EXIT_USAGE)
    target = out if out is not None else _default_out(settings, backend)
    signer = load_or_create_backup_keys(settings.backup_keys_dir).active

    async def main() -> None:
        clock = SystemClock()
        ids = IdGenerator(clock)
        async with _database(source.url) as (_, sessions):
            ledger = Ledger(clock=clock, ids=ids)
            keyring = keyring_from(settings, clock=clock)
            management = KeyManagement(keyring, ledger=ledger, policy=key_policy_from(settings))
            await open_keyring(management, sessions)
            with progress_bar() as bar:
                made = await create_backup(
                    source=source,
                    out=target,
                    management=management,
                    sessions=sessions,
                    signer=signer,
                    clock=clock,
                    progress=RichProgress(bar),
                )
            try:
                await record(
                    ledger,
                    sessions,
                    BackupEvent.CREATED,
                    actor=operator_party(),
                    data=event_data(made.manifest, made.note, file=made.data),
                )
            except BaseException:
                # A backup the ledger does not know of must not exist.
                made.data.unlink(missing_ok=True)
                made.manifest_file.unlink(missing_ok=True)
                raise
        manifest = made.manifest
        console.print(f"backup     {made.data}")
        console.print(f"manifest   {made.manifest_file}")
        console.print(
            f"contents   {backend}, schema {manifest.schema_revision or '-'}, "
            f"{manifest.plaintext_bytes:,} bytes -> {manifest.ciphertext_bytes:,} bytes in "
            f"{manifest.chunk_count} chunks"
        )
        console.print(
            f"key        {manifest.keys.data_class} v{manifest.keys.version} "
            f"under {manifest.keys.kek_id}; signed by {made.signed_by.vkey}"
        )

    run_async(main(), database_url=settings.main_database_url)


def _report(verification: Verification) -> None:
    manifest = verification.manifest
    console.print(
        f"backup {manifest.backup_id}: {manifest.backend}, schema "
        f"{manifest.schema_revision or '-'}, made {manifest.created_at}, "
        f"{manifest.chunk_count} chunks, {manifest.ciphertext_bytes:,} bytes"
    )
    console.print(f"signed by  {verification.signed_by.vkey}")
    for check in verification.checked:
        console.print(f"[green]ok[/]         {check}")
    for check in verification.not_checked:
        console.print(f"[yellow]unchecked[/]  {check} (needs the master key)")


async def _record_verification(settings: Settings, event: BackupEvent, data: dict[str, Any]) -> str:
    """Record in the configured database; say where it went, or why it did not."""
    if database_missing(settings):
        return "not recorded: no tradeguard database in this data directory"
    clock = SystemClock()
    try:
        async with _database(settings.main_database_url) as (engine, sessions):
            if await current_revision(engine) != head_revision():
                return "not recorded: the configured database is not at this release's schema"
            await record(
                Ledger(clock=clock, ids=IdGenerator(clock)),
                sessions,
                event,
                actor=operator_party(),
                data=data,
            )
    except (OSError, TradeguardError) as error:
        return f"not recorded: the configured database is unreachable ({type(error).__name__})"
    return "recorded in the ledger"


@app.command("verify")
def verify(
    backup: Annotated[Path, typer.Argument(help="The backup file (its .manifest beside it).")],
    public_key: Annotated[Path | None, PublicKeyOption] = None,
    master_keys: Annotated[list[Path] | None, MasterKeyOption] = None,
    signature_only: Annotated[
        bool,
        typer.Option(
            "--signature-only",
            help="Do not use the master key even if there is one: check what the signature "
            "covers (manifest, sizes, SHA-256, framing) and say what was left unchecked.",
        ),
    ] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Check a backup: its signed manifest, and that the file is exactly what it describes.

    With the key-encrypting key the manifest names (the data directory's master key, one
    kept by `keys rotate-master`, a file given with --master-key, or the AWS KMS key), every
    chunk is also authenticated and the contents decompressed to the size in the manifest.
    With only a public key (--public-key, and no master key or --signature-only) the
    signature, sizes, framing and SHA-256 are checked, and the rest is reported as unchecked.
    """
    settings = settings_from(data_dir)
    trusted = trusted_keys(settings, public_key)

    async def main() -> None:
        try:
            keks: list[KekProvider] = []
            if not signature_only:
                keks = await keks_for(settings, signed_manifest(backup, trusted), master_keys or [])
            with progress_bar() as bar:
                verification = await verify_backup(
                    data=backup,
                    trusted=trusted,
                    provider=None,
                    also=keks,
                    progress=RichProgress(bar),
                )
        except BackupRejected as rejected:
            where = await _record_verification(
                settings,
                BackupEvent.REJECTED,
                {"file": str(backup), "reason": rejected.reason.value},
            )
            fail(
                f"backup rejected [{rejected.reason.value}]: {rejected.detail}",
                hint=where,
                code=EXIT_FAILURE,
            )
        _report(verification)
        data = event_data(verification.manifest, verification.note, file=backup)
        data["complete"] = verification.complete
        console.print(await _record_verification(settings, BackupEvent.VERIFIED, data))
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
            "URL of an existing, empty database.",
            show_default=False,
        ),
    ],
    public_key: Annotated[Path | None, PublicKeyOption] = None,
    master_keys: Annotated[list[Path] | None, MasterKeyOption] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Verify a backup completely, then restore it into a fresh database.

    Needs the key-encrypting key the backup was made under, which its signed manifest names
    (kek_id): the data directory's keys/master.key, an older master key kept there by
    `tradeguard keys rotate-master` (keys/master.key.retired-*) or given with --master-key,
    or the AWS KMS key (reached with the AWS credentials in the environment). Refuses a
    SQLite path that exists, or a PostgreSQL database (or, for a backup of one schema, that
    schema) that already holds anything. The restore is recorded in the restored database's
    ledger.
    """
    settings = settings_from(data_dir)
    trusted = trusted_keys(settings, public_key)
    is_url = "://" in to
    target = DatabaseLocation(to if is_url else f"sqlite:///{Path(to).absolute().as_posix()}")

    async def main() -> None:
        try:
            keks = await keks_for(settings, signed_manifest(backup, trusted), master_keys or [])
            with progress_bar() as bar:
                verification = await restore_backup(
                    data=backup,
                    trusted=trusted,
                    provider=None,
                    also=keks,
                    target=target,
                    progress=RichProgress(bar),
                )
        except BackupRejected as rejected:
            fail(
                f"backup rejected [{rejected.reason.value}]: {rejected.detail}; nothing restored",
                code=EXIT_FAILURE,
            )
        manifest = verification.manifest
        note = await _record_restore(target, verification)
        console.print(
            f"restored backup {manifest.backup_id} ({manifest.created_at}, schema "
            f"{manifest.schema_revision or '-'}) into {_shown(target)}"
        )
        console.print(note)

    run_async(main(), database_url=target.url)


def _shown(target: DatabaseLocation) -> str:
    if target.backend == "sqlite":
        return str(target.sqlite_path)
    return make_url(target.url).render_as_string(hide_password=True)


async def _record_restore(target: DatabaseLocation, verification: Verification) -> str:
    manifest = verification.manifest
    clock = SystemClock()
    async with _database(target.url, manifest.pg_schema) as (engine, sessions):
        revision = await current_revision(engine)
        if revision != head_revision():
            return (
                f"schema {revision} is behind this release's {head_revision()}: run "
                "`tradeguard db upgrade` on it; the restore is not recorded in its ledger yet"
            )
        await record(
            Ledger(clock=clock, ids=IdGenerator(clock)),
            sessions,
            BackupEvent.RESTORED,
            actor=operator_party(),
            data=event_data(manifest, verification.note),
        )
        await LedgerSequencer(engine, clock=clock).drain()
    return "recorded in the restored database's ledger"


@app.command("public-key")
def public_key_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Print the backup signing keys' public halves (vkey lines), for `verify --public-key`."""
    settings = settings_from(data_dir)
    keys = trusted_backup_keys(settings.backup_keys_dir)
    if not keys:
        fail(
            f"no backup signing key in {settings.backup_keys_dir}",
            hint="run `tradeguard init`",
            code=EXIT_USAGE,
        )
    for key in keys:
        print(key.vkey)
