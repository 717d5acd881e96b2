"""`tradeguard keys`: signing-key rotation, and the field-encryption keyring: status, rotate,
rewrap, usage, retire, the master key's Shamir shares (split / combine), and the rotation of
the key-encrypting key itself (rotate-master: a new local master key, or a move to AWS KMS).

Every keyring command acts as the operating-system user who runs it (`operator:<name>` in
the ledger), and every change it makes is a ledger event committed with the change.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.cli.bootstrap import database_missing
from tradeguard.cli.common import (
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
from tradeguard.core.errors import ConfigurationError, TradeguardError
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.catalogue import index_locations_of
from tradeguard.crypto.classes import PLATFORM_CLASSES, SPEC_OF, DataClass, parse_data_class
from tradeguard.crypto.keyring import Keyring
from tradeguard.crypto.legacy import master_key_id
from tradeguard.crypto.providers import (
    KekProvider,
    LocalFileKek,
    create_master_key_file,
    read_master_key,
)
from tradeguard.crypto.service import KeyEvent, KeyManagement
from tradeguard.crypto.shares import combine_shares, split_secret
from tradeguard.crypto.tasks import (
    AWS_KMS,
    LOCAL,
    connect_kms,
    kek_provider_from,
    key_policy_from,
    kms_settings_from,
    master_key_path,
    pending_master_key_path,
    reindex_class,
    retired_local_keks,
    retired_master_key_paths,
    rewrap_class,
    rotate_master_key,
    unwrap_only_providers_from,
)
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import start_identity
from tradeguard.identity.keystore import (
    KEY_WATCH_INTERVAL_SECONDS,
    load_or_create_ring,
    rotate_ring,
)
from tradeguard.ledger.service import Ledger

T = TypeVar("T")
Sessions = async_sessionmaker[AsyncSession]

app = typer.Typer(help="Key management.", no_args_is_help=True)

CLASS_HELP = "Data class: " + ", ".join(c.value for c in DataClass) + "."
MAX_SHARE_LINES = 16


@app.command("rotate-jwt")
def rotate_jwt(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Make a new access-token signing key; the old one keeps verifying tokens it signed.

    Running servers that use this data directory watch its key files: they sign with the new
    key within about a second, without a restart, and go on accepting tokens the old key
    signed until those expire.
    """
    settings = settings_from(data_dir)
    if not settings.data_dir.exists():
        fail("no data directory here", hint="run `tradeguard init` (or pass --data-dir)", code=2)
    before = load_or_create_ring(settings.jwt_keys_dir).active.kid
    ring = rotate_ring(settings.jwt_keys_dir)
    console.print(f"active key   {ring.active.kid}")
    console.print(f"retired key  {before} (still verifies; published in /.well-known/jwks.json)")
    console.print(
        f"running servers on {settings.jwt_keys_dir} sign with the new key within "
        f"about {KEY_WATCH_INTERVAL_SECONDS:g} s; no restart needed"
    )


VAULT_DATA_KEY_HINT = "use `tradeguard vault rotate-key` (docs/vault.md)"
# Card fingerprints are the bare HMAC under the vault's index key v1, compared across the
# vault's and the platform's databases: that key keeps its version.
VAULT_INDEX_HINT = (
    "the card vault's fingerprint key is not rotated (docs/security/key-management.md)"
)


def _classes(names: list[str] | None, *, vault_hint: str = VAULT_DATA_KEY_HINT) -> list[DataClass]:
    if not names:
        return list(PLATFORM_CLASSES)
    try:
        chosen = [parse_data_class(name) for name in names]
    except ValueError as exc:
        fail(str(exc), code=EXIT_USAGE)
    for data_class in chosen:
        if SPEC_OF[data_class].in_vault:
            fail(
                f"the {data_class.value} keys live in the card vault's own database, not here",
                hint=vault_hint,
                code=EXIT_USAGE,
            )
    return chosen


def _ready(data_dir: Path | None) -> Settings:
    settings = settings_from(data_dir)
    if database_missing(settings):
        fail(
            "no tradeguard database here",
            hint="run `tradeguard init` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    return settings


@asynccontextmanager
async def _keys(settings: Settings) -> AsyncIterator[tuple[KeyManagement, Sessions]]:
    clock = SystemClock()
    engine = create_engine(settings.main_database_url)
    try:
        sessions = session_factory(engine)
        identity = await start_identity(
            settings, clock=clock, ids=IdGenerator(clock), sessions=sessions
        )
        yield identity.key_management, sessions
    finally:
        await engine.dispose()


def _run(settings: Settings, work: Callable[[KeyManagement, Sessions], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _keys(settings) as (management, sessions):
            return await work(management, sessions)

    return run_async(main(), database_url=settings.main_database_url)


@app.command("status")
def status(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """List every key version: its state, when it was made and activates, its last usage count.

    States: encrypting (new values are sealed under it), pending (made by a rotation, encrypts
    or indexes after the activation delay), decrypt-only (older; values under it still read),
    retired (no value uses it; it never encrypts, decrypts or indexes again); for blind-index
    keys (kind index): indexing (new index values are computed under it), lookup-only (older;
    lookups still match under it until `keys reindex` has moved its values).
    """
    settings = _ready(data_dir)

    async def work(management: KeyManagement, sessions: Sessions) -> None:
        async with unit_of_work(sessions) as session:
            rows = await management.status(session)
        console.print(
            f"{'class':20} {'kind':6} {'ver':>4} {'state':12} {'activates':30} {'usage':>8}  kek"
        )
        for row in rows:
            usage = "-" if row.usage_count is None else str(row.usage_count)
            console.print(
                f"{row.data_class.value:20} {row.kind:6} {row.version:>4} {row.state:12} "
                f"{ns_to_iso(row.activates_ns):30} {usage:>8}  {row.kek_id or '-'}"
            )
        async with unit_of_work(sessions) as session:
            counts = await management.kek_counts(session)
        console.print("wrapped keys (data, index, peppers) per key-encrypting key:")
        for kek, count in sorted(counts.items()):
            console.print(f"  {count:>5}  {kek}")

    _run(settings, work)


ClassOption = typer.Option("--class", "-c", help=CLASS_HELP, show_default=False)
PauseMs = Annotated[
    int, typer.Option(help="Pause between batches, to spare a busy database.", min=0, max=60_000)
]


@contextmanager
def _batch_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over `total` values (unknown if 0); yields what advances it."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=not sys.stdout.isatty(),
    ) as progress:
        task = progress.add_task(label, total=total or None)
        yield lambda amount: progress.advance(task, amount)


@app.command("rotate")
def rotate(
    classes: Annotated[list[str] | None, ClassOption] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Make a new key version for each class named (every class without --class).

    The new version encrypts after the activation delay (TRADEGUARD_KEY_ACTIVATION_DELAY_SECONDS),
    once every running process has read it; values under older versions still read. Move them
    with `tradeguard keys rewrap --class C`. The scheduled check rotates on its own every
    TRADEGUARD_KEY_ROTATION_DAYS (90) days.
    """
    targets = _classes(classes)
    settings = _ready(data_dir)

    async def work(management: KeyManagement, sessions: Sessions) -> None:
        async with unit_of_work(sessions) as session:
            made = [
                await management.rotate(session, data_class, actor=operator_party())
                for data_class in targets
            ]
        for key in made:
            console.print(
                f"{key.data_class.value:20} v{key.version}  "
                f"encrypts from {ns_to_iso(key.activates_ns)}"
            )

    _run(settings, work)


@app.command("usage")
def usage(
    classes: Annotated[list[str] | None, ClassOption] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Count the stored values under each key version, and the stored blind indexes under
    each index key version (recorded; shown by `keys status`)."""
    targets = _classes(classes)
    settings = _ready(data_dir)

    async def work(management: KeyManagement, sessions: Sessions) -> None:
        async with unit_of_work(sessions) as session:
            for data_class in targets:
                counts = await management.count_usage(session, data_class, actor=operator_party())
                shown = ", ".join(f"v{v}: {n}" for v, n in sorted(counts.items())) or "no values"
                console.print(f"{data_class.value:20} {shown}")
                if not index_locations_of(data_class, management.keyring.indexes):
                    continue  # no blind-index column of this class to count
                indexes = await management.count_index_usage(
                    session, data_class, actor=operator_party()
                )
                if indexes:
                    shown = ", ".join(f"v{v}: {n}" for v, n in sorted(indexes.items()))
                    console.print(f"{data_class.value:20} index {shown}")

    _run(settings, work)


@app.command("rewrap")
def rewrap(
    class_name: Annotated[str, typer.Option("--class", "-c", help=CLASS_HELP, show_default=False)],
    batch_size: Annotated[
        int, typer.Option(help="Values re-encrypted per committed batch.", min=1, max=100_000)
    ] = 1000,
    pause_ms: PauseMs = 0,
    retire: Annotated[
        bool, typer.Option(help="Retire the versions no value uses any more, when done.")
    ] = True,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Re-encrypt every stored value of a class under its encrypting key version.

    Works in committed batches and records how far it got: stopped or killed, it resumes at
    the last committed batch when run again. Values that do not decrypt are left as they are
    and counted (their version then cannot retire).
    """
    data_class = _classes([class_name])[0]
    settings = _ready(data_dir)

    async def work(management: KeyManagement, sessions: Sessions) -> None:
        async with unit_of_work(sessions) as session:
            counts = await management.usage(session, data_class)
        target = management.keyring.encrypting_version(data_class)
        pending = sum(n for v, n in counts.items() if v != target)
        with _batch_progress(f"rewrap {data_class.value} -> v{target}", pending) as advance:
            run = await rewrap_class(
                management,
                sessions,
                data_class,
                actor=operator_party(),
                batch_size=batch_size,
                pause_seconds=pause_ms / 1000,
                on_batch=lambda batch: advance(batch.rewrapped + batch.unreadable),
            )
        console.print(
            f"{data_class.value}: {run.rewrapped} values re-encrypted under v{target} "
            f"in {run.batches} batches"
        )
        if run.unreadable:
            console.print(
                f"[yellow]{run.unreadable} values did not decrypt and were left as they are[/]"
            )
        if retire:
            async with unit_of_work(sessions) as session:
                retired = await management.retire_unused(
                    session, data_class, actor=operator_party()
                )
            console.print(
                "retired " + ", ".join(f"v{v}" for v in retired)
                if retired
                else "no version retired (still in use, or its successor is within the grace)"
            )

    _run(settings, work)


@app.command("rotate-index")
def rotate_index(
    classes: Annotated[list[str] | None, ClassOption] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Make a new blind-index key version for each class named (every class without --class).

    Lookups and duplicate checks match under every live index version at once, so nothing is
    missed while values move. New index values are computed under the new version after the
    activation delay; `tradeguard keys reindex --class C` then recomputes the stored ones, and
    the old version retires once no index uses it.
    """
    targets = _classes(classes, vault_hint=VAULT_INDEX_HINT)
    settings = _ready(data_dir)

    async def work(management: KeyManagement, sessions: Sessions) -> None:
        async with unit_of_work(sessions) as session:
            made = [
                await management.rotate_index(session, data_class, actor=operator_party())
                for data_class in targets
            ]
        for key in made:
            console.print(
                f"{key.data_class.value:20} index v{key.version}  "
                f"indexes from {ns_to_iso(key.activates_ns)}"
            )

    _run(settings, work)


@app.command("reindex")
def reindex(
    class_name: Annotated[str, typer.Option("--class", "-c", help=CLASS_HELP, show_default=False)],
    batch_size: Annotated[
        int, typer.Option(help="Index values recomputed per committed batch.", min=1, max=100_000)
    ] = 1000,
    pause_ms: PauseMs = 0,
    retire: Annotated[
        bool, typer.Option(help="Retire the index versions no value uses any more, when done.")
    ] = True,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Recompute every stored blind index of a class under its current index key version.

    Each index is recomputed from the encrypted value beside it (decrypted in memory only).
    Works in committed batches and records how far it got: stopped or killed, it resumes at
    the last committed batch when run again. Also moves indexes stored before index keys had
    versions into the versioned format. An index whose value does not decrypt is left as it
    is and counted (its version then cannot retire).
    """
    data_class = _classes([class_name], vault_hint=VAULT_INDEX_HINT)[0]
    settings = _ready(data_dir)

    async def work(management: KeyManagement, sessions: Sessions) -> None:
        target = management.keyring.index_version(data_class)
        if target is None:
            fail(f"no blind-index key of {data_class.value} computes indexes yet", code=1)
        live = management.keyring.keyset.index_keys.get(data_class, {})
        pending = [key for key in live.values() if key.version > target]
        if pending:
            # Reindexing now would move values to the version about to be replaced.
            fail(
                f"index v{pending[0].version} of {data_class.value} computes indexes from "
                f"{ns_to_iso(pending[0].activates_ns)} (the activation delay)",
                hint="run `tradeguard keys reindex` again after that",
                code=1,
            )
        async with unit_of_work(sessions) as session:
            counts = await management.count_index_usage(session, data_class, actor=operator_party())
        total = sum(counts.values())
        label = f"reindex {data_class.value} -> index v{target}"
        with _batch_progress(label, total) as advance:
            run = await reindex_class(
                management,
                sessions,
                data_class,
                actor=operator_party(),
                batch_size=batch_size,
                pause_seconds=pause_ms / 1000,
                on_batch=lambda batch: advance(batch.scanned),
            )
        console.print(
            f"{data_class.value}: {run.rewrapped} index values recomputed under index "
            f"v{target} in {run.batches} batches"
        )
        if run.unreadable:
            console.print(
                f"[yellow]{run.unreadable} index values could not be recomputed (their value "
                "did not decrypt) and were left as they are[/]"
            )
        if retire:
            async with unit_of_work(sessions) as session:
                retired = await management.retire_unused_index(
                    session, data_class, actor=operator_party()
                )
            console.print(
                "retired index " + ", ".join(f"v{v}" for v in retired)
                if retired
                else "no index version retired (still in use, or its successor is within the grace)"
            )

    _run(settings, work)


@app.command("retire")
def retire(
    classes: Annotated[list[str] | None, ClassOption] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Retire every older key version (data and blind-index keys) that no stored value uses:
    it never encrypts, decrypts or computes an index again."""
    targets = _classes(classes)
    settings = _ready(data_dir)

    async def work(management: KeyManagement, sessions: Sessions) -> None:
        async with unit_of_work(sessions) as session:
            for data_class in targets:
                retired = await management.retire_unused(
                    session, data_class, actor=operator_party()
                )
                if retired:
                    console.print(
                        f"{data_class.value:20} retired " + ", ".join(f"v{v}" for v in retired)
                    )
                index_retired = await management.retire_unused_index(
                    session, data_class, actor=operator_party()
                )
                if index_retired:
                    console.print(
                        f"{data_class.value:20} retired index "
                        + ", ".join(f"v{v}" for v in index_retired)
                    )

    _run(settings, work)


@app.command("split")
def split(
    threshold: Annotated[
        int, typer.Option(help="Shares needed to rebuild the key.", min=2, max=16)
    ],
    shares: Annotated[int, typer.Option(help="Shares to make (one per custodian).", min=2, max=16)],
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Write each share to its own file (mode 0600) here instead of printing."),
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Split the master key into Shamir shares (SLIP-0039 mnemonics) for split knowledge.

    Any THRESHOLD shares rebuild it with `tradeguard keys combine`; fewer reveal nothing.
    Give each share to a different custodian. The key's fingerprint is printed to check a
    rebuilt key against.
    """
    if threshold > shares:
        fail(f"--threshold {threshold} is more than --shares {shares}", code=EXIT_USAGE)
    settings = _ready(data_dir)
    passphrase = settings.master_key_passphrase
    master = read_master_key(
        settings.keys_dir / "master.key",
        passphrase=passphrase.get_secret_value() if passphrase else None,
    )
    fingerprint = master_key_id(master).hex()
    if out_dir is not None and out_dir.exists() and any(out_dir.iterdir()):
        fail(f"{out_dir} is not empty", hint="give an empty or new directory", code=EXIT_USAGE)

    async def work(management: KeyManagement, sessions: Sessions) -> list[str]:
        mnemonics = split_secret(master, threshold=threshold, shares=shares)
        async with unit_of_work(sessions) as session:
            await management.record_master_event(
                session,
                KeyEvent.MASTER_SPLIT,
                actor=operator_party(),
                data={"threshold": threshold, "shares": shares, "fingerprint": fingerprint},
            )
        return mnemonics

    mnemonics = _run(settings, work)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for number, words in enumerate(mnemonics, start=1):
            create_share_file(out_dir / f"share-{number}-of-{shares}.txt", words)
        console.print(f"{shares} shares written to {out_dir} (mode 0600)")
    else:
        for number, words in enumerate(mnemonics, start=1):
            console.print(f"share {number}/{shares}: {words}")
    console.print(f"any {threshold} of them rebuild the master key with fingerprint {fingerprint}")


def create_share_file(path: Path, words: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(words + "\n")


@app.command("combine")
def combine(
    out: Annotated[
        Path, typer.Option(help="Where to write the rebuilt master key (must not exist).")
    ],
    fingerprint: Annotated[
        str | None,
        typer.Option(help="The fingerprint `keys split` printed; refused if it differs."),
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Rebuild the master key from Shamir shares read from standard input, one per line.

    Writes it to OUT (mode 0600); put it in place as keys/master.key. The rebuild is recorded
    in the ledger when the database of --data-dir is reachable.
    """
    if out.exists():
        fail(
            f"{out} already exists",
            hint="name a new file; an existing key is never overwritten",
            code=EXIT_USAGE,
        )
    lines = [line for line in sys.stdin.read(64 * 1024).splitlines() if line.strip()]
    if len(lines) > MAX_SHARE_LINES:
        fail(f"more than {MAX_SHARE_LINES} shares on standard input", code=EXIT_USAGE)
    try:
        master = combine_shares(lines)
    except Exception as exc:  # SharesRefused: a clear message, no share echoed
        fail(f"the shares do not combine: {getattr(exc, 'detail', exc)}", code=EXIT_USAGE)
    rebuilt = master_key_id(master).hex()
    if fingerprint is not None and fingerprint.strip().lower() != rebuilt:
        fail(
            f"the shares rebuild a key with fingerprint {rebuilt}, not {fingerprint}",
            code=EXIT_USAGE,
        )
    create_master_key_file(out, master, None)
    console.print(f"master key with fingerprint {rebuilt} written to {out} (mode 0600)")
    settings = settings_from(data_dir)
    if database_missing(settings) or not (settings.keys_dir / "master.key").exists():
        console.print("not recorded in a ledger: no database with a master key here")
        return

    async def work(management: KeyManagement, sessions: Sessions) -> None:
        async with unit_of_work(sessions) as session:
            await management.record_master_event(
                session,
                KeyEvent.MASTER_COMBINED,
                actor=operator_party(),
                data={"shares": len(lines), "fingerprint": rebuilt},
            )

    _run(settings, work)


def _copy_owner_only(source: Path, target: Path) -> None:
    """A byte-for-byte copy of a key file, mode 0600, never over an existing file."""
    data = source.read_bytes()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _passphrase(settings: Settings) -> str | None:
    secret = settings.master_key_passphrase
    return secret.get_secret_value() if secret else None


def _new_local_target(settings: Settings, current: KekProvider) -> LocalFileKek:
    """The new master key (keys/master.key.next), made once: a rerun takes the same one.
    The current file is first copied to a dated backup (0600)."""
    pending = pending_master_key_path(settings)
    if pending.exists():
        return LocalFileKek(read_master_key(pending, passphrase=_passphrase(settings)))
    path = master_key_path(settings)
    fingerprint = current.kek_id.removeprefix("local:")
    if not any(p.name.endswith("-" + fingerprint) for p in retired_master_key_paths(settings)):
        stamp = ns_to_iso(SystemClock().now_ns())[:19].replace("-", "").replace(":", "")
        _copy_owner_only(path, settings.keys_dir / f"master.key.retired-{stamp}-{fingerprint}")
    create_master_key_file(pending, secrets.token_bytes(32), _passphrase(settings))
    return LocalFileKek(read_master_key(pending, passphrase=_passphrase(settings)))


@app.command("rotate-master")
def rotate_master(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Where the new key-encrypting key is: local (a new keys/master.key) "
            "or aws-kms (the KMS key of --key-id).",
        ),
    ] = LOCAL,
    key_id: Annotated[
        str | None,
        typer.Option(
            help="With --to aws-kms: the KMS key's ARN, id or alias/ name "
            "(default TRADEGUARD_AWS_KMS_KEY_ID)."
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(help="With --to aws-kms: the AWS region (default TRADEGUARD_AWS_KMS_REGION)."),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            help="With --to aws-kms: a KMS endpoint (VPC endpoint; default "
            "TRADEGUARD_AWS_KMS_ENDPOINT_URL)."
        ),
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Re-wrap every stored key (data keys, blind-index keys, peppers) under a new
    key-encrypting key: a new local master key, or an AWS KMS key (--to aws-kms).

    First stores each HMAC pepper wrapped under the new key (so peppered values keep
    matching), then re-wraps one key per committed transaction, each a ledger event. Stopped
    or killed, every key still opens under the old or the new KEK; run it again to finish.
    Refused while a class still has values in the legacy format (run `tradeguard keys
    rewrap --class C` first). A local rotation keeps the old file as
    keys/master.key.retired-<date>-<fingerprint> (it opens backups made before) and puts the
    new key in place when no key is left under the old one. After a move to AWS KMS, set
    TRADEGUARD_KEK_PROVIDER=aws-kms and TRADEGUARD_AWS_KMS_KEY_ID, and restart every process.
    """
    target_kind = to.strip().lower()
    if target_kind not in (LOCAL, AWS_KMS):
        fail(f"--to {to!r} is not known: use {LOCAL} or {AWS_KMS}", code=EXIT_USAGE)
    if target_kind == LOCAL and (key_id or region or endpoint_url):
        fail("--key-id, --region and --endpoint-url go with --to aws-kms", code=EXIT_USAGE)
    settings = _ready(data_dir)
    try:
        current = kek_provider_from(settings, create=False)
        kms_target: KekProvider | None = None
        if target_kind == AWS_KMS:
            kms = kms_settings_from(
                settings, key_id=key_id, region=region, endpoint_url=endpoint_url
            )
            kms_target = connect_kms(kms)
        elif current.legacy is None:
            fail(
                "the current key-encrypting key is a KMS key: moving back to a local master "
                "key file is not supported",
                code=EXIT_USAGE,
            )
        # The dated copies of earlier master keys: keys a process still wrapped under one of
        # them while a rotation ran are re-wrapped by running the rotation again.
        also = [*unwrap_only_providers_from(settings, current), *retired_local_keks(settings)]
    except TradeguardError as exc:
        fail(exc.detail, code=EXIT_USAGE if isinstance(exc, ConfigurationError) else 1)

    async def main() -> KekProvider:
        clock = SystemClock()
        engine = create_engine(settings.main_database_url)
        try:
            sessions = session_factory(engine)
            known = also if kms_target is None else [*also, kms_target]
            keyring = Keyring(current, clock=clock, also=known)
            management = KeyManagement(
                keyring,
                ledger=Ledger(clock=clock, ids=IdGenerator(clock)),
                policy=key_policy_from(settings),
            )
            async with sessions() as session:
                await keyring.refresh(session)
                # Refused before anything is made (no new key file, no row, no event).
                await management.check_no_legacy_values(session)
            # The new local key only now: made once, a rerun takes the same file.
            target = kms_target or _new_local_target(settings, current)
            keyring.add_provider(target)
            async with sessions() as session:
                await keyring.refresh(session)
            await _rotate(management, sessions, target)
            return target
        finally:
            await engine.dispose()

    target = run_async(main(), database_url=settings.main_database_url)
    if target_kind == LOCAL:
        pending = pending_master_key_path(settings)
        if pending.exists():
            pending.replace(master_key_path(settings))
            console.print(
                f"new master key in place at {master_key_path(settings)}; the old one is kept "
                f"as {settings.keys_dir}/master.key.retired-*: it opens backups made before "
                "now (keep it, or its shares, as long as those backups)"
            )
        console.print("restart every tradeguard process on this data directory now")
    else:
        console.print(
            f"every key is now wrapped under {target.kek_id}: set TRADEGUARD_KEK_PROVIDER=aws-kms "
            "and TRADEGUARD_AWS_KMS_KEY_ID, and restart every process; keep keys/master.key "
            "(or its shares) as long as the backups made before now"
        )


async def _rotate(management: KeyManagement, sessions: Sessions, target: KekProvider) -> None:
    with Progress(
        TextColumn(f"re-wrap keys under {target.kek_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=not sys.stdout.isatty(),
    ) as progress:
        task = progress.add_task("rotate-master", total=None)

        def started(total: int) -> None:
            progress.update(task, total=total)

        def advanced(_: str) -> None:
            progress.advance(task)

        run = await rotate_master_key(
            management,
            sessions,
            target,
            actor=operator_party(),
            on_start=started,
            on_key=advanced,
        )
    console.print(f"{run.rewrapped} of {run.pending} keys re-wrapped under {target.kek_id}")
    if not run.finished:
        left = ", ".join(f"{n} under {kek}" for kek, n in sorted(run.remaining.items()))
        fail(
            f"keys made while this ran are still under the old key-encrypting key ({left})",
            hint="run `tradeguard keys rotate-master` again with the same options",
        )
