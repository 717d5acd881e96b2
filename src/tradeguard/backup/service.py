"""Backup use cases: create, verify and restore encrypted, signed database backups (ENC-1).

A backup is two files: `<name>` (the encrypted stream, backup/format.py) and
`<name>.manifest` (the signed manifest, backup/manifest.py). Each backup has a fresh random
data key, sealed under the keyring's `backup` class (versioned and rotated like every
class); the manifest carries that class key as the key table holds it, wrapped by the
key-encrypting key, so a restore after losing the database needs the master key (or KMS)
and the backup files, nothing else.

The streaming work (copy, compress, encrypt, hash; or read, authenticate, decompress) runs
in a worker thread, a block at a time; nothing holds a whole database in memory. Services
never commit: the command records each operation in the ledger (`record`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, Protocol, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard import __version__
from tradeguard.backup import postgres, sqlite
from tradeguard.backup.errors import BackupRefused, BackupRejected, RejectReason
from tradeguard.backup.format import (
    CHUNK_BYTES,
    ZSTD_LEVEL,
    ChunkReader,
    Expected,
    FileHeader,
    SealedStats,
    new_data_key,
    open_stream,
    seal_stream,
)
from tradeguard.backup.manifest import (
    MANIFEST_FORMAT,
    MAX_MANIFEST_BYTES,
    Manifest,
    WrappedKeys,
    b64,
    open_manifest,
)
from tradeguard.core.clock import Clock, ns_to_iso
from tradeguard.crypto.classes import CLASS_OF_ID, DataClass
from tradeguard.crypto.envelope import (
    EnvelopeBroken,
    FieldBinding,
    key_slot,
    open_sealed,
    parse_header,
)
from tradeguard.crypto.keyring import DATA
from tradeguard.crypto.kms_settings import KMS_KEK_PREFIX
from tradeguard.crypto.providers import KekProvider
from tradeguard.crypto.service import KeyManagement
from tradeguard.db.engine import unit_of_work
from tradeguard.db.migrate import head_revision, known_revision
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.tree.note import NoteSigner, VerifierKey
from tradeguard.vault import migrate as vault_migrate
from tradeguard.vault.models import VERSION_TABLE as VAULT_VERSION_TABLE

T = TypeVar("T")

MANIFEST_SUFFIX: Final = ".manifest"
COMPRESSION: Final = f"zstd-{ZSTD_LEVEL}"
CIPHER: Final = "AES-256-GCM STREAM (nonce prefix 7, counter 4, last flag 1)"


class BackupEvent(StrEnum):
    CREATED = "crypto:backup:created"
    VERIFIED = "crypto:backup:verified"
    REJECTED = "crypto:backup:rejected"
    RESTORED = "crypto:backup:restored"


class ProgressSink(Protocol):
    """Where long jobs report: a new phase (with its total in bytes, if known), then steps."""

    def phase(self, label: str, total: int | None) -> None: ...

    def advance(self, amount: int) -> None: ...


class NoProgress:
    def phase(self, label: str, total: int | None) -> None:
        return None

    def advance(self, amount: int) -> None:
        return None


PLAIN_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class DatabaseLocation:
    """A database to back up or restore into: a URL, and on PostgreSQL optionally one schema
    (the whole database otherwise)."""

    url: str
    pg_schema: str | None = None

    def __post_init__(self) -> None:
        # The schema reaches pg_dump's --schema pattern and the connection's search_path:
        # only a plain identifier, never a quoted name, a pattern or a list.
        if self.pg_schema is not None and not PLAIN_IDENTIFIER.fullmatch(self.pg_schema):
            raise BackupRefused(
                "the schema name must be a plain identifier (letters, digits and _, not "
                "starting with a digit, at most 63 characters)"
            )

    @property
    def backend(self) -> str:
        name = make_url(self.url.replace("postgres://", "postgresql://", 1)).get_backend_name()
        if name not in ("sqlite", "postgresql"):
            raise BackupRefused(f"unsupported database {name!r}")
        return name

    @property
    def sqlite_path(self) -> Path:
        database = make_url(self.url).database
        if not database or database == ":memory:":
            raise BackupRefused("an in-memory SQLite database cannot be backed up")
        return Path(database)


def manifest_path(data: Path) -> Path:
    return data.with_name(data.name + MANIFEST_SUFFIX)


@dataclass(frozen=True, slots=True)
class BackupKind:
    """Which database a backup is of, and so under whose keys it is sealed.

    The platform's database: the data key under the platform keyring's `backup` class,
    wrapped by keys/master.key. The card vault's database: under the vault's own key
    hierarchy (its `card_vault` class, in the vault database's key table, wrapped by
    keys/vault/master.key or the vault's KMS key), bound to a table no card uses; neither
    operator's keys open the other's backups (PCI DSS 3.5.1, 3.6)."""

    name: str
    data_class: DataClass
    binding_table: str
    version_table: str
    command: str
    known_revision: Callable[[str], bool]
    head_revision: Callable[[], str | None]
    upgrade_command: str


def _vault_known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - only for a vault restore

    try:
        script = ScriptDirectory.from_config(vault_migrate.alembic_config())
        return script.get_revision(revision) is not None
    except Exception:
        return False


MAIN: Final = BackupKind(
    name="the platform database",
    data_class=DataClass.BACKUP,
    binding_table="backup_file",
    version_table="alembic_version",
    command="tradeguard backup",
    known_revision=known_revision,
    head_revision=head_revision,
    upgrade_command="tradeguard db upgrade",
)
VAULT: Final = BackupKind(
    name="the card vault database",
    data_class=DataClass.CARD_VAULT,
    binding_table="vault_backup_file",
    version_table=VAULT_VERSION_TABLE,
    command="tradeguard vault backup",
    known_revision=_vault_known_revision,
    head_revision=vault_migrate.head_revision,
    upgrade_command="tradeguard vault upgrade",
)
KINDS: Final = (MAIN, VAULT)


def _binding(backup_id: bytes, kind: BackupKind = MAIN) -> FieldBinding:
    # The sealed data key is bound to its backup: moved into another manifest, it fails.
    return FieldBinding(kind.data_class.value, kind.binding_table, "data_key", backup_id)


def check_kind(manifest: Manifest, kind: BackupKind) -> None:
    """Refuse, naming the right command, a backup of the other database."""
    if manifest.keys.data_class == kind.data_class.value:
        return
    for other in KINDS:
        if manifest.keys.data_class == other.data_class.value:
            raise BackupRejected(
                RejectReason.WRONG_DATABASE,
                f"this is a backup of {other.name}, sealed under its keys: use "
                f"`{other.command}`, where {other.name}'s keys are",
            )
    raise BackupRejected(
        RejectReason.MANIFEST_MALFORMED, "the manifest's data key is not a backup key"
    )


async def seal_data_key(
    management: KeyManagement, session: AsyncSession, backup_id: bytes, kind: BackupKind = MAIN
) -> tuple[bytes, WrappedKeys]:
    """A fresh data key, sealed under the encrypting version of the kind's class."""
    key = new_data_key()
    sealed = management.keyring.seal(key, _binding(backup_id, kind), kind.data_class)
    header = parse_header(sealed)
    assert header is not None  # noqa: S101 - seal writes a v2 header
    wrapped, kek_id = await management.wrapped_data_key(session, kind.data_class, header.version)
    return key, WrappedKeys(
        data_class=kind.data_class.value,
        version=header.version,
        kek_id=kek_id,
        wrapped_class_key=b64(wrapped),
        sealed_data_key=b64(sealed),
    )


def choose_kek(
    keks: Sequence[KekProvider], manifest: Manifest, kind: BackupKind | None = None
) -> KekProvider:
    """The key-encrypting key the manifest names (by its public id), among those given.

    A backup outlives master-key rotations: its class key stays wrapped under the KEK of its
    day, so a restore picks that KEK by the id in the signed manifest (an old master key
    file, or the KMS key), never the installation's current one by default. The refusal
    names the KEK needed (an id, never key material) and how to supply it.
    """
    needed = manifest.keys.kek_id
    for kek in keks:
        if kek.kek_id == needed:
            return kek
    given = ", ".join(sorted({kek.kek_id for kek in keks})) or "none"
    if needed.startswith(KMS_KEK_PREFIX):
        how = (
            "run the restore with AWS credentials allowed kms:Decrypt on that key, in its "
            "region (TRADEGUARD_AWS_KMS_REGION, or the region in its ARN)"
        )
    elif kind is not None and kind.data_class is DataClass.CARD_VAULT:
        how = (
            "use the vault master key the backup was made with: pass its file with "
            "--master-key (a rotated-out key is kept as "
            "keys/vault/master.key.retired-<date>-<fingerprint>); the platform's master key "
            "never opens a vault backup"
        )
    else:
        how = (
            "use the master key the backup was made with: pass its file with --master-key "
            "(a rotated-out key is kept as keys/master.key.retired-<date>-<fingerprint>), "
            "or rebuild it with `tradeguard keys combine` from its shares"
        )
    raise BackupRejected(
        RejectReason.DATA_KEY_UNAVAILABLE,
        f"the backup's keys are wrapped under the key-encrypting key {needed}, which was not "
        f"given (given: {given}); {how}",
    )


async def open_data_key(
    keks: Sequence[KekProvider], manifest: Manifest, kind: BackupKind = MAIN
) -> bytes:
    """The backup's data key, through the key-encrypting key alone (no database)."""
    check_kind(manifest, kind)
    keys = manifest.keys
    sealed = manifest.sealed_data_key()
    header = parse_header(sealed)
    if (
        header is None
        or CLASS_OF_ID.get(header.class_id) is not kind.data_class
        or header.version != keys.version
    ):
        raise BackupRejected(
            RejectReason.MANIFEST_MALFORMED, "the manifest's data key is not a backup key"
        )
    provider = choose_kek(keks, manifest, kind)
    try:
        class_key = await provider.unwrap(
            manifest.wrapped_class_key(),
            associated_data=key_slot(kind.data_class.value, DATA, keys.version),
        )
        return open_sealed(AESGCM(class_key), sealed, _binding(manifest.backup_id_bytes, kind))
    except EnvelopeBroken:
        raise BackupRejected(
            RejectReason.DATA_KEY_UNAVAILABLE,
            f"the backup's data key does not open under {provider.kek_id}, the key-encrypting "
            "key its manifest names (the manifest's key was altered, or it is not that key)",
        ) from None


# -- create -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreatedBackup:
    data: Path
    manifest_file: Path
    manifest: Manifest
    note: str
    signed_by: VerifierKey


@dataclass(frozen=True, slots=True)
class _Dumped:
    stats: SealedStats
    revision: str | None
    tools: dict[str, str]


def _new_private_file(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


@dataclass(frozen=True, slots=True)
class _Sealing:
    """Where and how the stream being written is sealed."""

    partial: Path
    key: bytes = field(repr=False)
    header: FileHeader
    chunk_bytes: int
    sink: ProgressSink


def _sealed_into(sealing: _Sealing, source: BinaryIO | IO[bytes]) -> SealedStats:
    with _new_private_file(sealing.partial) as out:
        stats = seal_stream(
            source,
            out,
            key=sealing.key,
            header=sealing.header,
            progress=sealing.sink.advance,
            chunk_bytes=sealing.chunk_bytes,
        )
        out.flush()
        os.fsync(out.fileno())
    return stats


async def create_backup(
    *,
    source: DatabaseLocation,
    out: Path,
    management: KeyManagement,
    sessions: async_sessionmaker[AsyncSession],
    signer: NoteSigner,
    clock: Clock,
    progress: ProgressSink | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    kind: BackupKind = MAIN,
) -> CreatedBackup:
    """Back up `source` into `out` and `out.manifest` (neither may exist); `management` and
    `sessions` are the key table of the kind's keys (the vault's own for VAULT)."""
    sink = progress or NoProgress()
    manifest_file = manifest_path(out)
    for path in (out, manifest_file):
        if path.exists() or path.is_symlink():
            raise BackupRefused(f"{path} exists; a backup never overwrites a file")
    if not out.parent.is_dir():
        raise BackupRefused(f"the directory {out.parent} does not exist")
    header = FileHeader.new()
    async with unit_of_work(sessions) as session:
        key, wrapped = await seal_data_key(management, session, header.backup_id, kind)
    created_ns = clock.now_ns()
    partial = out.with_name(f".{out.name}.partial-{secrets.token_hex(6)}")
    sealing = _Sealing(partial, key, header, chunk_bytes, sink)
    try:
        if source.backend == "sqlite":
            dumped = await _dump_sqlite(source, sealing, kind.version_table)
        else:
            dumped = await _dump_postgres(source, sealing, kind.version_table)
        stats = dumped.stats
        manifest = Manifest(
            format=MANIFEST_FORMAT,
            backup_id=header.backup_id.hex(),
            created_at=ns_to_iso(created_ns),
            backend=source.backend,
            pg_schema=source.pg_schema if source.backend == "postgresql" else None,
            schema_revision=dumped.revision,
            tools=dumped.tools,
            file_name=out.name,
            compression=COMPRESSION,
            cipher=CIPHER,
            chunk_bytes=chunk_bytes,
            chunk_count=stats.chunk_count,
            plaintext_bytes=stats.plaintext_bytes,
            compressed_bytes=stats.compressed_bytes,
            ciphertext_bytes=stats.ciphertext_bytes,
            ciphertext_sha256=stats.ciphertext_sha256,
            keys=wrapped,
            tradeguard_version=__version__,
        )
        note = manifest.sign(signer)
        with _new_private_file(partial.with_name(partial.name + MANIFEST_SUFFIX)) as handle:
            handle.write(note.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        # Links, not renames: a file that appeared at either name meanwhile is kept.
        os.link(partial.with_name(partial.name + MANIFEST_SUFFIX), manifest_file)
        try:
            os.link(partial, out)
        except BaseException:
            manifest_file.unlink(missing_ok=True)
            raise
    finally:
        partial.unlink(missing_ok=True)
        partial.with_name(partial.name + MANIFEST_SUFFIX).unlink(missing_ok=True)
    return CreatedBackup(out, manifest_file, manifest, note, signer.key)


async def _dump_sqlite(source: DatabaseLocation, sealing: _Sealing, version_table: str) -> _Dumped:
    sink = sealing.sink
    path = source.sqlite_path

    def work() -> _Dumped:
        sink.phase("snapshot (online backup API)", None)
        with sqlite.snapshot(path, version_table) as (handle, size, revision):
            sink.phase("compress and encrypt", size)
            stats = _sealed_into(sealing, handle)
        return _Dumped(stats, revision, {"sqlite": sqlite.sqlite_version()})

    return await asyncio.to_thread(work)


async def _dump_postgres(
    source: DatabaseLocation, sealing: _Sealing, version_table: str
) -> _Dumped:
    sink = sealing.sink
    tool = postgres.tool_version("pg_dump")
    before = await postgres.server_info(
        source.url, pg_schema=source.pg_schema, version_table=version_table
    )
    postgres.check_dump_versions(before, tool)
    if source.pg_schema is not None and before.empty:
        raise BackupRefused(f"the database has no schema {source.pg_schema!r}")

    def work() -> SealedStats:
        sink.phase("pg_dump, compress and encrypt", None)
        with postgres.dump(source.url, pg_schema=source.pg_schema) as stream:
            return _sealed_into(sealing, stream)

    stats = await asyncio.to_thread(work)
    after = await postgres.server_info(
        source.url, pg_schema=source.pg_schema, version_table=version_table
    )
    if after.revision != before.revision:
        raise BackupRefused(
            f"the schema was migrated during the backup ({before.revision} -> "
            f"{after.revision}); take it again"
        )
    tools = {"pg_dump": tool.text, "server": before.version, "server_major": str(before.major)}
    return _Dumped(stats, before.revision, tools)


# -- verify -------------------------------------------------------------------------------


SIGNATURE_CHECKS: Final = (
    "manifest signature (Ed25519)",
    "manifest fields",
    "file name is the signed name",
    "file header and backup id match the manifest",
    "chunk framing and count",
    "file size",
    "file SHA-256",
)
KEYED_CHECKS: Final = (
    "data key opens under the key-encrypting key",
    "every chunk authenticates (AES-256-GCM, index and last-chunk flag bound)",
    "contents decompress to the size in the manifest",
)


@dataclass(frozen=True, slots=True)
class Verification:
    manifest: Manifest
    note: str
    signed_by: VerifierKey
    checked: tuple[str, ...]
    not_checked: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.not_checked


def read_manifest(data: Path) -> str:
    path = manifest_path(data)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise BackupRejected(
            RejectReason.MANIFEST_MALFORMED, f"no manifest {path.name} beside the backup"
        ) from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BackupRejected(RejectReason.MANIFEST_MALFORMED, "the manifest is too large")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BackupRejected(RejectReason.MANIFEST_MALFORMED, "the manifest is not text") from None


def _expected(manifest: Manifest) -> Expected:
    return Expected(
        manifest.backup_id_bytes,
        manifest.chunk_bytes,
        manifest.chunk_count,
        manifest.ciphertext_bytes,
        manifest.ciphertext_sha256,
    )


async def _read_through(
    data: Path,
    manifest: Manifest,
    key: bytes | None,
    sink: ProgressSink,
    consume: Callable[[Iterator[bytes]], T],
) -> T:
    def work() -> T:
        try:
            handle = data.open("rb")
        except FileNotFoundError:
            raise BackupRejected(RejectReason.NOT_A_BACKUP, f"no backup file {data}") from None
        with handle:
            reader = ChunkReader(handle, _expected(manifest), key=key, progress=sink.advance)
            if key is None:
                return consume(reader.chunks())
            return consume(open_stream(reader, plaintext_bytes=manifest.plaintext_bytes))

    return await asyncio.to_thread(work)


def _exhaust(blocks: Iterator[bytes]) -> None:
    for _ in blocks:
        pass


def _keks(provider: KekProvider | None, also: Sequence[KekProvider]) -> list[KekProvider]:
    return [kek for kek in (provider, *also) if kek is not None]


def _open_for(data: Path, note: str, trusted: list[VerifierKey]) -> tuple[Manifest, VerifierKey]:
    """The manifest once its signature verifies and it is the one signed for `data`: the
    signed file name must be the data file's, so a backup copied or renamed under another
    name (nightly.tgbk from b1.tgbk) is refused instead of passing for that one."""
    manifest, signed_by = open_manifest(note, trusted)
    if manifest.file_name != data.name:
        raise BackupRejected(
            RejectReason.FILE_NAME_MISMATCH,
            f"the manifest was signed for {manifest.file_name!r}, not {data.name!r} "
            "(a renamed or substituted backup)",
        )
    return manifest, signed_by


def signed_manifest(data: Path, trusted: list[VerifierKey]) -> Manifest:
    """The backup's manifest, once its signature verifies (which KEK it needs, and so which
    to load or connect to, is read only from a manifest a trusted key signed)."""
    manifest, _ = _open_for(data, read_manifest(data), trusted)
    return manifest


async def verify_backup(
    *,
    data: Path,
    trusted: list[VerifierKey],
    provider: KekProvider | None,
    also: Sequence[KekProvider] = (),
    progress: ProgressSink | None = None,
    kind: BackupKind = MAIN,
) -> Verification:
    """Check a backup: everything the signature covers always; with key-encrypting keys
    (`provider` and `also`: the one the manifest names is used), every chunk authenticates
    and the contents decompress too. BackupRejected if not."""
    sink = progress or NoProgress()
    note = read_manifest(data)
    manifest, signed_by = _open_for(data, note, trusted)
    check_kind(manifest, kind)
    keks = _keks(provider, also)
    key = await open_data_key(keks, manifest, kind) if keks else None
    sink.phase("verify", manifest.ciphertext_bytes)
    await _read_through(data, manifest, key, sink, _exhaust)
    if key is None:
        return Verification(manifest, note, signed_by, SIGNATURE_CHECKS, KEYED_CHECKS)
    return Verification(manifest, note, signed_by, SIGNATURE_CHECKS + KEYED_CHECKS, ())


# -- restore ------------------------------------------------------------------------------


async def restore_backup(
    *,
    data: Path,
    trusted: list[VerifierKey],
    provider: KekProvider | None,
    target: DatabaseLocation,
    also: Sequence[KekProvider] = (),
    progress: ProgressSink | None = None,
    kind: BackupKind = MAIN,
) -> Verification:
    """Verify the backup completely, then restore it into a fresh database at `target`.

    The backup's keys open under the key-encrypting key its manifest names, one of
    `provider` and `also` (the current KEK, old master keys, a KMS key); refused, with
    nothing restored, when none of them is it.

    SQLite: `target` must not exist. PostgreSQL: the target database must exist and hold
    nothing (for a backup of one schema: no schema of that name). Refused otherwise.
    """
    sink = progress or NoProgress()
    note = read_manifest(data)
    manifest, _ = _open_for(data, note, trusted)
    check_kind(manifest, kind)
    if manifest.backend != target.backend:
        raise BackupRefused(f"a {manifest.backend} backup restores only into {manifest.backend}")
    revision = manifest.schema_revision
    if revision is not None and not kind.known_revision(revision):
        raise BackupRefused(
            f"the backup's schema revision {revision} is unknown to this tradeguard "
            f"(head {kind.head_revision()}): restore it with the release that made it"
        )
    # The cheap refusals first, before reading gigabytes.
    keks = _keks(provider, also)
    choose_kek(keks, manifest, kind)
    restore_tool = None
    if target.backend == "sqlite":
        sqlite.check_fresh_target(target.sqlite_path)
    else:
        restore_tool = postgres.tool_version("pg_restore")
        info = await postgres.server_info(
            target.url, pg_schema=manifest.pg_schema, version_table=kind.version_table
        )
        if not info.empty and manifest.pg_schema:
            raise BackupRefused(
                f"the target database already has a schema {manifest.pg_schema!r}; a restore "
                "of a schema backup only creates it"
            )
        if not info.empty:
            raise BackupRefused(
                "the target database is not empty; a restore only fills a fresh one"
            )
        postgres.check_restore_versions(
            source_server=int(manifest.tools.get("server_major", "0")),
            dumped_with=int(manifest.tools.get("pg_dump", "0").split(".")[0]),
            target=info,
            restore_tool=restore_tool,
        )
    verification = await verify_backup(
        data=data, trusted=trusted, provider=None, also=keks, progress=sink, kind=kind
    )
    if verification.note != note:
        raise BackupRejected(RejectReason.PAIR_MISMATCH, "the manifest changed during the restore")
    key = await open_data_key(keks, manifest, kind)
    sink.phase("restore", manifest.ciphertext_bytes)
    if target.backend == "sqlite":
        path = target.sqlite_path
        await _read_through(data, manifest, key, sink, lambda b: sqlite.restore(b, path))
    else:
        await _read_through(data, manifest, key, sink, lambda b: postgres.restore(b, target.url))
    return verification


# -- the ledger ---------------------------------------------------------------------------


def event_data(manifest: Manifest, note: str, *, file: Path | None = None) -> dict[str, Any]:
    """What the ledger keeps of a backup: identity, sizes, hashes, keys by name only."""
    data: dict[str, Any] = {
        "backup_id": manifest.backup_id,
        "backend": manifest.backend,
        "schema_revision": manifest.schema_revision,
        "created_at": manifest.created_at,
        "chunk_count": manifest.chunk_count,
        "plaintext_bytes": manifest.plaintext_bytes,
        "ciphertext_bytes": manifest.ciphertext_bytes,
        "ciphertext_sha256": manifest.ciphertext_sha256,
        "manifest_sha256": hashlib.sha256(note.encode("utf-8")).hexdigest(),
        "data_class": manifest.keys.data_class,
        "key_version": manifest.keys.version,
        "kek_id": manifest.keys.kek_id,
    }
    if file is not None:
        data["file"] = str(file)
    return data


async def record(
    ledger: Ledger,
    sessions: async_sessionmaker[AsyncSession],
    event: BackupEvent,
    *,
    actor: Party,
    data: dict[str, Any],
) -> None:
    """One backup operation as a ledger event, committed on its own."""
    async with unit_of_work(sessions) as session:
        await ledger.append(session, LedgerEvent(type=event, actor=actor, data=data))
