"""`tradeguard audit seal | purge | archive list | verify | show`: the audit ledger's sealed
archive (AUD-2, ENC-3; docs/audit.md "Sealed archive").

`seal` writes closed ranges of the chain as write-once, compressed, encrypted, signed
segment files; `archive verify` checks them (and against the database); `archive show`
reads an event back, its segment verified first; `purge` deletes from the database the
events that are sealed and past the retention period, and records that in the ledger.

The commands take the time from the clock given as the Typer context object when there is
one (tests pass a FrozenClock), else the system clock.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar, cast

import typer

from tradeguard.cli.bootstrap import database_missing
from tradeguard.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    DataDirOption,
    console,
    err_console,
    fail,
    operator_party,
    run_async,
    settings_from,
)
from tradeguard.config import Settings
from tradeguard.core.clock import Clock, SystemClock, ns_to_iso
from tradeguard.core.errors import InvalidInput
from tradeguard.crypto.keyring import LocalKeyring
from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import current_revision
from tradeguard.ledger.archive.domain import parse_before
from tradeguard.ledger.archive.errors import ArchiveUnavailable
from tradeguard.ledger.archive.format import SegmentKeys
from tradeguard.ledger.archive.keys import KeyringSegmentKeys
from tradeguard.ledger.archive.service import ArchiveReport, LedgerArchive, verify_directory
from tradeguard.ledger.tree.errors import MalformedNote
from tradeguard.ledger.tree.keys import ACTIVE_KEY_FILE, load_log_keys, read_verifier_keys
from tradeguard.ledger.tree.note import VerifierKey

T = TypeVar("T")
MAX_SEQ = 2**63 - 1
archive_app = typer.Typer(
    help="The sealed archive of the audit ledger: list, verify, show.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def register(app: typer.Typer) -> None:
    """Add these commands to `tradeguard audit`."""
    app.command("seal")(seal_command)
    app.command("purge")(purge_command)
    app.add_typer(archive_app, name="archive")


def _clock(ctx: typer.Context) -> Clock:
    given = ctx.find_root().obj
    return cast(Clock, given) if hasattr(given, "now_ns") else SystemClock()


def _settings(data_dir: Path | None) -> Settings:
    settings = settings_from(data_dir)
    if database_missing(settings):
        fail(
            "no tradeguard database here",
            hint="run `tradeguard init` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    return settings


class _NoKeyring:
    """Stands in for a keyring that is not there: reading a segment then fails saying so
    (a command with no segment to read, such as a refused purge, is unaffected)."""

    def __init__(self, path: Path) -> None:
        self._message = (
            f"no keyring at {path}: the archive's segments cannot be decrypted (restore the "
            "keyring that sealed them)"
        )

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes:
        raise ArchiveUnavailable(self._message)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        raise ArchiveUnavailable(self._message)


def _keyring(settings: Settings, *, create: bool) -> SegmentKeys:
    """The keyring: created by `seal` on first use like the server does, never by a reader
    (a new key would not open what the lost one sealed)."""
    path = settings.keys_dir / "master.key"
    if not create and not path.exists():
        return _NoKeyring(path)
    return KeyringSegmentKeys(LocalKeyring.load_or_create(path))


def _run(
    settings: Settings,
    clock: Clock,
    work: Callable[[LedgerArchive], Awaitable[T]],
    *,
    create_keyring: bool = False,
) -> T:
    """`work(archive)` against the main database."""
    keys = _keyring(settings, create=create_keyring)

    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            if await current_revision(engine) is None:
                fail(
                    "the database has no tradeguard schema",
                    hint="run `tradeguard init`",
                    code=EXIT_USAGE,
                )
            return await work(LedgerArchive.from_settings(settings, engine, clock=clock, keys=keys))
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def seal_command(
    ctx: typer.Context,
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: JsonOption = False,
) -> None:
    """Seal every closed range of the ledger into the archive directory.

    Committed events are chained and a checkpoint signed first. A range is closed once it
    holds TRADEGUARD_LEDGER_ARCHIVE_SEGMENT_EVENTS events (100,000) or the next event was
    recorded in a later calendar month (UTC). Each range becomes a compressed, encrypted
    segment file and a signed manifest, written once (never replaced) to
    TRADEGUARD_LEDGER_ARCHIVE_DIR (default <data dir>/archive/ledger); each is recorded in the
    ledger. Run it daily or monthly; a range still open waits for a later run.
    """
    settings = _settings(data_dir)
    clock = _clock(ctx)
    report = _run(
        settings, clock, lambda archive: archive.seal(actor=operator_party()), create_keyring=True
    )
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "directory": str(settings.ledger_archive_path),
                    "checkpoint_size": report.checkpoint_size,
                    "pending_events": report.pending_events,
                    "segments": [
                        {
                            "name": s.name,
                            "first_seq": s.first_seq,
                            "last_seq": s.last_seq,
                            "events": s.count,
                            "file_bytes": s.file_bytes,
                            "plain_bytes": s.plain_bytes,
                            "manifest_sha256": s.manifest_sha256.hex(),
                            "adopted": s.adopted,
                        }
                        for s in report.segments
                    ],
                }
            )
        )
        return
    for segment in report.segments:
        how = "recorded (left by an interrupted seal, verified)" if segment.adopted else "sealed"
        console.print(
            f"{how}: {segment.name} (seq {segment.first_seq}..{segment.last_seq}, "
            f"{segment.count} events, {segment.file_bytes} bytes from {segment.plain_bytes})"
        )
    console.print(
        f"{len(report.segments)} segment(s) sealed in {settings.ledger_archive_path}; "
        f"{report.pending_events} event(s) in the open range wait for a later seal"
    )


def purge_command(
    ctx: typer.Context,
    before: Annotated[
        str,
        typer.Option(
            "--before",
            help="Purge sealed events recorded before this date (YYYY-MM-DD, midnight UTC) "
            "or instant (2019-01-01T00:00:00Z). Must be at least the retention period "
            "(7 years) ago.",
            show_default=False,
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: JsonOption = False,
) -> None:
    """Delete from the database the events sealed in the archive and past their retention.

    Only whole sealed segments go, oldest first, each verified (files and database) before
    anything is deleted; events younger than the retention period (7 years,
    TRADEGUARD_LEDGER_RETENTION_YEARS, never less), or not sealed, are never purged: the
    command refuses and changes nothing. The chain's hashes, the Merkle tree and the
    checkpoints are kept, so `tradeguard audit verify` and proofs still work; the purge is
    recorded as a ledger event naming the range and the segments' manifests.
    """
    try:
        before_ns = parse_before(before)
    except InvalidInput as error:
        fail(error.detail, code=EXIT_USAGE)
    settings = _settings(data_dir)
    clock = _clock(ctx)
    if not yes and not typer.confirm(
        f"Delete the sealed audit events recorded before {ns_to_iso(before_ns)} from the "
        "database? They stay in the archive only.",
        err=True,
    ):
        fail("nothing was purged", code=EXIT_USAGE)
    report = _run(
        settings, clock, lambda archive: archive.purge(before_ns=before_ns, actor=operator_party())
    )
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "first_seq": report.first_seq,
                    "through_seq": report.through_seq,
                    "events": report.events,
                    "before": ns_to_iso(report.before_ns),
                    "retention_cutoff": ns_to_iso(report.cutoff_ns),
                    "segments": [m.name for m in report.segments],
                    "event_id": report.event_id,
                }
            )
        )
        return
    console.print(
        f"[green]purged[/]: {report.events} events (seq {report.first_seq}.."
        f"{report.through_seq}) from {len(report.segments)} sealed segment(s); recorded as "
        f"ledger event {report.event_id}"
    )


@archive_app.command("list")
def list_command(
    ctx: typer.Context,
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: JsonOption = False,
) -> None:
    """List the sealed segments as the database records them (and which were purged)."""
    settings = _settings(data_dir)
    rows, purged = _run(settings, _clock(ctx), lambda archive: archive.listing())
    items = [
        {
            "name": row.name,
            "first_seq": int(row.first_seq),
            "last_seq": int(row.last_seq),
            "events": int(row.event_count),
            "recorded_from": ns_to_iso(int(row.min_occurred_ns)),
            "recorded_to": ns_to_iso(int(row.max_occurred_ns)),
            "file_bytes": int(row.file_bytes),
            "sealed_at": ns_to_iso(int(row.sealed_ns)),
            "manifest_sha256": bytes(row.manifest_sha256).hex(),
            "purged": int(row.last_seq) <= purged,
        }
        for row in rows
    ]
    if as_json:
        console.print_json(json.dumps({"purged_through": purged, "segments": items}))
        return
    if not items:
        console.print("no sealed segments yet (`tradeguard audit seal`)")
        return
    for item in items:
        state = "purged from the database" if item["purged"] else "also in the database"
        console.print(
            f"{item['name']}  seq {item['first_seq']}..{item['last_seq']}  "
            f"{item['events']} events  {item['recorded_from'][:10]}..{item['recorded_to'][:10]}"
            f"  {item['file_bytes']} bytes  {state}"
        )


@archive_app.command("verify")
def verify_command(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(
            file_okay=False,
            help="The archive directory (default: TRADEGUARD_LEDGER_ARCHIVE_DIR).",
            show_default=False,
        ),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            exists=True,
            dir_okay=False,
            help="Trust these verifier keys (vkey lines) instead of the data directory's.",
        ),
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify every segment: signature, file hash, decryption, every entry's chain hash
    from the segment before, the signed checkpoint; and against the database when there is
    one. Exit 1 naming the first segment that fails."""
    settings = settings_from(data_dir)
    target = directory or settings.ledger_archive_path
    if not target.is_dir():
        fail(f"{target} is not an archive directory", code=EXIT_USAGE)
    verifiers = _verifiers(settings, public_key)
    keys = _keyring(settings, create=False)
    if database_missing(settings):
        report = run_async(
            verify_directory(
                target, keys=keys, verifiers=verifiers, origin=settings.ledger_origin, conn=None
            )
        )
    else:
        report = _run(
            settings, _clock(ctx), lambda archive: archive.verify(target, verifiers=verifiers)
        )
    _print_verification(report, target, as_json=as_json)
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


def _verifiers(settings: Settings, public_key: Path | None) -> list[VerifierKey]:
    try:
        if public_key is not None:
            keys = read_verifier_keys(public_key)
        elif (settings.ledger_keys_dir / ACTIVE_KEY_FILE).exists():
            keys = load_log_keys(settings.ledger_keys_dir, settings.ledger_origin).verifiers
        else:
            fail(
                "no ledger keys here to verify signatures with",
                hint="pass --public-key FILE (from `tradeguard audit keys list`)",
                code=EXIT_USAGE,
            )
    except (MalformedNote, UnicodeDecodeError):
        fail(f"{public_key}: not a file of verifier keys", code=EXIT_USAGE)
    if not keys:
        fail(f"{public_key} holds no verifier key", code=EXIT_USAGE)
    return keys


def _print_verification(report: ArchiveReport, target: Path, *, as_json: bool) -> None:
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "ok": report.ok,
                    "directory": str(target),
                    "segments_verified": [m.name for m in report.verified],
                    "events_verified": report.events,
                    "failed_segment": report.failure.segment if report.failure else None,
                    "detail": report.failure.detail if report.failure else None,
                    "database_checked": report.database_checked,
                    "purged_through": report.purged_through,
                    "other_files": report.ignored_files,
                }
            )
        )
        return
    if report.failure is not None:
        err_console.print(f"[bold red]ARCHIVE DOES NOT VERIFY[/]: {report.failure.detail}")
        if report.verified:
            err_console.print(f"the {len(report.verified)} segment(s) before it verified")
        return
    where = "and against the database" if report.database_checked else "(files only)"
    console.print(
        f"[green]ok[/]: {len(report.verified)} segment(s), {report.events} events verified {where}"
    )
    if report.ignored_files:
        console.print(f"other files in the directory (not checked): {len(report.ignored_files)}")


@archive_app.command("show")
def show_command(
    ctx: typer.Context,
    seq: Annotated[
        int, typer.Option("--seq", min=1, max=MAX_SEQ, help="The event's chain position.")
    ],
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: JsonOption = False,
) -> None:
    """Read an event back from the archive (its segment verified first) with its inclusion
    proof in the latest checkpoint: how purged events are read and proven."""
    settings = _settings(data_dir)
    found = _run(settings, _clock(ctx), lambda archive: archive.read_event(seq))
    inclusion = found.inclusion
    document = {
        "seq": found.entry.seq,
        "event_id": found.entry.event_id,
        "segment": found.segment,
        "purged_from_database": found.purged,
        "leaf_hash": _b64(found.leaf_hash),
        "chain_hash": _b64(found.chain_hash),
        "event_body": _b64(found.entry.body),
        "tree_size": inclusion.tree_size if inclusion else None,
        "root_hash": _b64(inclusion.root) if inclusion else None,
        "proof": [_b64(h) for h in inclusion.proof] if inclusion else None,
        "checkpoint": inclusion.checkpoint.note if inclusion and inclusion.checkpoint else None,
    }
    if as_json:
        console.print_json(json.dumps(document))
        return
    state = "purged from the database" if found.purged else "also in the database"
    console.print(
        f"event {found.entry.event_id} (seq {found.entry.seq}) from segment {found.segment}, "
        f"verified; {state}"
    )
    console.out(found.entry.body.decode("utf-8", "replace"), highlight=False)
    if inclusion is not None:
        console.print(
            f"leaf {seq - 1} of the tree of {inclusion.tree_size}; root {_b64(inclusion.root)}"
        )
        for digest in inclusion.proof:
            console.print(f"  {_b64(digest)}")
        console.print("verified")
