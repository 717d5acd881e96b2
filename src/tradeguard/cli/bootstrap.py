"""`tradeguard init`: everything a data directory needs, created idempotently."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from tradeguard.backup.keys import load_or_create_backup_keys
from tradeguard.cli.common import EXIT_USAGE, fail, settings_from
from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.core.errors import ConfigurationError
from tradeguard.core.events import AuditEvent
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import current_revision, head_revision, upgrade
from tradeguard.ledger.domain import LedgerEvent
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.tree.keys import ACTIVE_KEY_FILE, load_or_create_log_keys
from tradeguard.vault.container import own_vault_url
from tradeguard.vault.migrate import upgrade as upgrade_vault
from tradeguard.web.tls import ensure_dev_certificate


@dataclass(frozen=True, slots=True)
class InitReport:
    data_dir: str
    migrated_from: str | None
    migrated_to: str | None
    created_certificate: bool
    first_run: bool
    ledger_key: str  # the checkpoint signing key's public key (a vkey line)
    created_ledger_key: bool
    backup_key: str  # the backup manifest signing key's public key (a vkey line)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for PostgreSQL and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))


def check_sqlite_directory(settings: Settings) -> None:
    """Refuse a SQLite database in a directory that does not exist.

    Only the data directory is created on demand (by `init`, `serve`, `db upgrade`). A
    configured path elsewhere whose directory is missing is almost always a typo or an
    unmounted volume, and creating it would put the database where nobody looks for it.
    """
    path = sqlite_file(settings.main_database_url)
    if path is None or path.parent.is_dir():
        return
    if path.parent.resolve() == settings.data_dir.resolve():
        return
    raise ConfigurationError(
        f"TRADEGUARD_DATABASE_URL: the directory {path.parent} of the SQLite file does not "
        "exist; create it first, or leave the setting unset to use the data directory"
    )


def prepare_data_dir(settings: Settings) -> None:
    check_sqlite_directory(settings)
    for directory in (settings.data_dir, settings.keys_dir, settings.tls_dir):
        directory.mkdir(parents=True, exist_ok=True)
    # Keys and certificates are secrets: only the service account may read them.
    os.chmod(settings.keys_dir, 0o700)
    os.chmod(settings.tls_dir, 0o700)


def owner_only(data_dir: Path) -> None:
    """Everything in the data directory readable by the service account only: directories
    0700, files 0600 (the SQLite databases and their WAL hold password hashes and sealed
    data; keys and certificates are secrets). Sockets and symbolic links are left as they
    are (the vault's socket is 0660 on purpose). New files are owner-only anyway: every
    `tradeguard` process runs with the umask 077."""
    for path in (data_dir, *data_dir.rglob("*")):
        if path.is_symlink():
            continue
        if path.is_dir():
            os.chmod(path, 0o700)
        elif path.is_file():
            os.chmod(path, 0o600)


async def initialize(settings: Settings, *, clock: Clock) -> InitReport:
    """Create the data dir, migrate the database, make the dev certificate; safe to repeat."""
    # Checked before anything is made: the in-process vault's database must not be the main one.
    vault_url = own_vault_url(settings) if settings.vault_endpoint is None else None
    prepare_data_dir(settings)
    engine = create_engine(settings.main_database_url)
    try:
        before = await current_revision(engine)
        await upgrade(engine)
        after = await current_revision(engine)
        if vault_url is not None:
            # The in-process card vault's own database and migration chain (PCI-2).
            vault_engine = create_engine(vault_url)
            try:
                await upgrade_vault(vault_engine)
            finally:
                await vault_engine.dispose()
        created_cert = False
        if settings.tls_cert_file is None:
            created_cert = ensure_dev_certificate(settings, clock)
        # The audit ledger's checkpoint signing key, made now rather than by the first
        # checkpoint, so that its public key can be published before anything is signed.
        created_key = not (settings.ledger_keys_dir / ACTIVE_KEY_FILE).exists()
        log_keys = load_or_create_log_keys(settings.ledger_keys_dir, settings.ledger_origin)
        # The backup manifest signing key: a key of its own (backup/keys.py says why).
        backup_keys = load_or_create_backup_keys(settings.backup_keys_dir)
        first_run = before is None
        if first_run:
            ledger = Ledger(clock=clock, ids=IdGenerator(clock))
            async with unit_of_work(session_factory(engine)) as session:
                await ledger.append(
                    session,
                    LedgerEvent(
                        type=AuditEvent.SYSTEM_INITIALIZED,
                        data={"schema": after, "environment": settings.env.value},
                    ),
                )
            await LedgerSequencer(engine, clock=clock).drain()
    finally:
        await engine.dispose()
    owner_only(settings.data_dir)
    return InitReport(
        data_dir=str(settings.data_dir),
        migrated_from=before,
        migrated_to=after,
        created_certificate=created_cert,
        first_run=first_run,
        ledger_key=log_keys.active.key.vkey,
        created_ledger_key=created_key,
        backup_key=backup_keys.active.key.vkey,
    )


def database_missing(settings: Settings) -> bool:
    """True when the configured SQLite file is absent (read-only commands must not create it)."""
    path = sqlite_file(settings.main_database_url)
    return path is not None and not path.exists()


async def database_status(settings: Settings) -> tuple[str | None, str | None]:
    engine = create_engine(settings.main_database_url)
    try:
        return await current_revision(engine), head_revision()
    finally:
        await engine.dispose()


def existing_settings(data_dir: Path | None) -> Settings:
    """The settings of an initialized data directory; exit 2 with what to do when its SQLite
    database is absent (a command that reads or records must not create one)."""
    settings = settings_from(data_dir)
    if database_missing(settings):
        fail(
            "no tradeguard database here",
            hint="run `tradeguard init` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    return settings
