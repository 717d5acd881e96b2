"""`tradeguard keys`: signing-key rotation, and the field-encryption keyring: status, rotate,
rewrap, usage, retire, the master key's Shamir shares (split / combine), and the rotation of
the key-encrypting key itself (rotate-master: a new local master key, or a move to AWS KMS).

Every keyring command acts as the operating-system user who runs it (`operator:<name>` in
the ledger), and every change it makes is a ledger event committed with the change.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
from tradeguard.cli.kek_rotation import (
    EndpointUrl,
    KeyId,
    Region,
    To,
    rotate_key_encrypting_key,
)
from tradeguard.cli.key_operations import (
    batch_progress,
    count_usage,
    print_status,
    retire_unused,
    rewrap_with_progress,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.classes import PLATFORM_CLASSES, SPEC_OF, DataClass, parse_data_class
from tradeguard.crypto.keyring import Keyring
from tradeguard.crypto.legacy import master_key_id
from tradeguard.crypto.providers import (
    KekProvider,
    KeyFileError,
    create_master_key_file,
    read_master_key,
)
from tradeguard.crypto.service import KeyEvent, KeyManagement
from tradeguard.crypto.shares import combine_shares, split_secret
from tradeguard.crypto.tasks import (
    LOCAL,
    key_policy_from,
    platform_kek,
    reindex_class,
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
    _run(_ready(data_dir), print_status)


ClassOption = typer.Option("--class", "-c", help=CLASS_HELP, show_default=False)
PauseMs = Annotated[
    int, typer.Option(help="Pause between batches, to spare a busy database.", min=0, max=60_000)
]


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
        await count_usage(management, sessions, targets, actor=operator_party())

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
        await rewrap_with_progress(
            management,
            sessions,
            data_class,
            actor=operator_party(),
            batch_size=batch_size,
            pause_ms=pause_ms,
        )
        if retire:
            await retire_unused(
                management, sessions, [data_class], actor=operator_party(), say_none=True
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
        with batch_progress(label, total) as advance:
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
        await retire_unused(management, sessions, targets, actor=operator_party())

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
    if out.exists() or out.is_symlink():  # a dangling symlink "does not exist", yet is there
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
    settings = settings_from(data_dir)
    passphrase = platform_kek(settings).passphrase
    # Sealed the way the key file is made under TRADEGUARD_MASTER_KEY_PASSPHRASE: a bare key
    # would be refused by every command while the passphrase is set.
    try:
        create_master_key_file(out, master, passphrase)
    except OSError as exc:  # created meanwhile, a missing or read-only directory
        fail(f"cannot write {out} ({exc.strerror})", code=EXIT_FAILURE)
    sealed = " sealed under the master-key passphrase" if passphrase else ""
    console.print(f"master key with fingerprint {rebuilt} written to {out}{sealed} (mode 0600)")
    if database_missing(settings) or not (settings.keys_dir / "master.key").exists():
        console.print("not recorded in a ledger: no database with a master key here")
        return
    try:
        read_master_key(settings.keys_dir / "master.key", passphrase=passphrase)
    except KeyFileError as exc:
        # The key is written; only its record cannot be made here (sealing a bare key: the
        # passphrase is set, the key in place is not sealed yet).
        console.print(f"not recorded in a ledger: {exc.detail}")
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


@app.command("rotate-master")
def rotate_master(
    to: To = LOCAL,
    key_id: KeyId = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
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
    settings = _ready(data_dir)

    @asynccontextmanager
    async def open_keys(
        current: KekProvider, known: list[KekProvider]
    ) -> AsyncIterator[tuple[KeyManagement, Sessions]]:
        clock = SystemClock()
        engine = create_engine(settings.main_database_url)
        try:
            management = KeyManagement(
                Keyring(current, clock=clock, also=known),
                ledger=Ledger(clock=clock, ids=IdGenerator(clock)),
                policy=key_policy_from(settings),
            )
            yield management, session_factory(engine)
        finally:
            await engine.dispose()

    rotate_key_encrypting_key(
        settings,
        platform_kek(settings),
        to=to,
        key_id=key_id,
        region=region,
        endpoint_url=endpoint_url,
        database_url=settings.main_database_url,
        open_keys=open_keys,
        restart="every tradeguard process on this data directory",
    )
