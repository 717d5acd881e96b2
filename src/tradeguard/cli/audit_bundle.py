"""`tradeguard audit export` and `tradeguard audit verify --bundle`: offline audit bundles
(docs/audit-bundle.md).

Verifying a bundle reads no settings and opens no database and no network connection: the
only things trusted are the bundle's bytes as recomputed here and the public keys given with
--public-key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.text import Text

from tradeguard.cli.bootstrap import database_missing
from tradeguard.cli.common import (
    EXIT_USAGE,
    DataDirOption,
    console,
    err_console,
    fail,
    run_async,
    settings_from,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import TradeguardError
from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import current_revision
from tradeguard.ledger.bundle.export import ExportSummary, export_bundle
from tradeguard.ledger.bundle.verifier import BundleReport, verify_bundle
from tradeguard.ledger.bundle.writer import BundleTargetRefused, check_target
from tradeguard.ledger.tree.errors import MalformedNote
from tradeguard.ledger.tree.keys import (
    ACTIVE_KEY_FILE,
    RETIRED_KEY_GLOB,
    load_log_keys,
    read_verifier_keys,
)
from tradeguard.ledger.tree.note import VerifierKey

EXIT_NOT_VERIFIED = 1
MAX_SEQ = 2**63 - 1

BundleOption = typer.Option(
    "--bundle",
    file_okay=False,
    help="Verify this exported bundle directory instead of the database (offline: no "
    "database, no network). Needs --public-key.",
)
PublicKeyOption = typer.Option(
    "--public-key",
    dir_okay=False,
    help="The log's verifier keys (vkey lines, `tradeguard audit keys list`), obtained out "
    "of band. With --bundle: the only keys trusted (the bundle's own copy is not); without: "
    "the database's checkpoints are checked with these instead of the log's key directory.",
)


def register(app: typer.Typer) -> None:
    """Add `export` to `tradeguard audit` (verify --bundle is an option of `audit verify`)."""
    app.command("export")(export_command)


@contextmanager
def _progress_bar(description: str, *, shown: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not shown or not err_console.is_terminal:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _local_keys(settings: Settings) -> list[VerifierKey]:
    """The log's public keys in this data directory (active and retired); none if absent.

    They only fill the bundle's informational keys.vkeys, so a missing or unreadable key
    directory is a warning, not a reason to refuse the export.
    """
    directory = settings.ledger_keys_dir
    try:
        if (directory / ACTIVE_KEY_FILE).exists():
            return load_log_keys(directory, settings.ledger_origin).verifiers
        keys: list[VerifierKey] = []
        for path in sorted(directory.glob(RETIRED_KEY_GLOB)):
            keys.extend(read_verifier_keys(path))
    except (OSError, ValueError, TradeguardError) as error:
        err_console.print(
            Text(
                f"warning: the ledger's key files in {directory} could not be read "
                f"({type(error).__name__}); the bundle's keys.vkeys lists no key"
            )
        )
        return []
    return keys


def export_command(
    directory: Annotated[
        Path,
        typer.Argument(
            file_okay=False,
            help="Where to write the bundle: a new or empty directory (never overwritten).",
            show_default=False,
        ),
    ],
    first: Annotated[
        int | None,
        typer.Option(
            "--from",
            min=1,
            max=MAX_SEQ,
            help="The first seq to export (default: the first not purged from the database, "
            "1 if none was).",
        ),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option(
            "--to",
            min=1,
            max=MAX_SEQ,
            help="The last seq to export (default: the latest checkpoint's tree size). It must "
            "be covered by a signed checkpoint.",
        ),
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Write a self-contained bundle of the audit ledger, verifiable offline.

    The entries of the range (as stored, personal data still sealed), every checkpoint signed
    within it and the first one covering its end, the proofs that tie them together, and the
    signers' public keys. Streamed: any number of entries in constant memory. Hand it over
    with the log's public key through another channel; it is checked with `tradeguard audit
    verify --bundle DIR --public-key FILE`, or any verifier written from docs/audit-bundle.md.
    """
    settings = settings_from(data_dir)
    if database_missing(settings):
        fail(
            "no tradeguard database here",
            hint="run `tradeguard init` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    if first is not None and last is not None and first > last:
        fail(f"--from ({first}) is after --to ({last})", code=EXIT_USAGE)
    try:
        check_target(directory)
    except BundleTargetRefused as error:
        fail(error.detail, hint="name a new directory", code=EXIT_USAGE)
    keys = _local_keys(settings)

    async def run() -> ExportSummary:
        engine = create_engine(settings.main_database_url)
        try:
            if await current_revision(engine) is None:
                fail(
                    "the database has no tradeguard schema",
                    hint="run `tradeguard init`",
                    code=EXIT_USAGE,
                )
            with _progress_bar("exporting", shown=not as_json) as progress:
                return await export_bundle(
                    engine,
                    directory,
                    first_seq=first,
                    last_seq=last,
                    keys=keys,
                    exported_ns=SystemClock().now_ns(),
                    progress=progress,
                )
        finally:
            await engine.dispose()

    summary = run_async(run(), database_url=settings.main_database_url)
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "path": str(summary.path),
                    "origin": summary.origin,
                    "first_seq": summary.first_seq,
                    "last_seq": summary.last_seq,
                    "entries": summary.count,
                    "checkpoints": list(summary.checkpoints),
                    "keys": list(summary.keys),
                    "unknown_signers": list(summary.unknown_signers),
                }
            )
        )
    else:
        console.print(
            Text(
                f"exported seq {summary.first_seq}..{summary.last_seq} ({summary.count} "
                f"entries) of {summary.origin} to {summary.path}\n"
                f"checkpoints at tree sizes {', '.join(map(str, summary.checkpoints))}\n"
                f"verify offline: tradeguard audit verify --bundle {summary.path} "
                "--public-key <the log's vkeys>"
            )
        )
    for signer in summary.unknown_signers:
        err_console.print(
            Text(
                f"warning: keys.vkeys lacks the public key {signer} (not in this data "
                "directory); verifiers need it from you all the same"
            )
        )


def _trusted_keys(path: Path) -> list[VerifierKey]:
    try:
        keys = read_verifier_keys(path)
    except FileNotFoundError:
        fail(f"{path}: no such file", code=EXIT_USAGE)
    except OSError as error:
        fail(f"{path} cannot be read ({error.strerror or type(error).__name__})", code=EXIT_USAGE)
    except (MalformedNote, UnicodeDecodeError) as error:
        detail = error.detail if isinstance(error, MalformedNote) else "not UTF-8 text"
        fail(f"{path}: {detail}", code=EXIT_USAGE)
    if not keys:
        fail(f"{path} holds no verifier key", code=EXIT_USAGE)
    return keys


def verify_bundle_command(
    bundle: Path | None,
    public_key: Path | None,
    *,
    as_json: bool,
    data_dir: Path | None,
    workers: int | None,
) -> None:
    """`tradeguard audit verify --bundle DIR --public-key FILE` (called by `audit verify`)."""
    if bundle is None:
        fail("--public-key goes with --bundle DIR (a bundle to verify)", code=EXIT_USAGE)
    if public_key is None:
        fail(
            "--bundle needs --public-key FILE: the log's verifier keys, obtained out of band "
            "(the bundle's own keys.vkeys is not trusted)",
            code=EXIT_USAGE,
        )
    if data_dir is not None or workers is not None:
        fail("--data-dir and --workers are for the database, not a bundle", code=EXIT_USAGE)
    if not bundle.is_dir():
        fail(f"{bundle}: no such bundle directory", code=EXIT_USAGE)
    keys = _trusted_keys(public_key)
    with _progress_bar("verifying", shown=not as_json) as progress:
        report = verify_bundle(bundle, keys, progress=progress)
    if as_json:
        console.print_json(json.dumps(report_json(report)))
    elif report.ok:
        sizes = ", ".join(str(c.size) for c in report.checkpoints)
        signers = ", ".join(sorted({c.key for c in report.checkpoints}))
        console.print(
            Text.assemble(
                ("ok", "green"),
                f": bundle verified: seq {report.first_seq}..{report.last_seq} "
                f"({report.verified} entries) of {report.origin}; checkpoints at tree sizes "
                f"{sizes}, signed by {signers}; root at seq {report.last_seq} "
                f"{_b64(report.root)}; chain head {(report.head_hash or b'').hex()[:16]}…",
            )
        )
    else:
        where = ""
        if report.seq is not None:
            where = f"first bad entry: seq {report.seq} "
        elif report.suspects is not None:
            where = f"first bad entry within seq {report.suspects[0]}..{report.suspects[1]} "
        err_console.print(
            Text.assemble(
                ("NOT VERIFIED", "bold red"),
                f": {where}({report.failure.value if report.failure else '?'}): {report.detail}",
            )
        )
    if not report.ok:
        raise typer.Exit(EXIT_NOT_VERIFIED)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def report_json(report: BundleReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "verified": report.verified,
        "origin": report.origin,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "root_hash": _b64(report.root),
        "head_hash": None if report.head_hash is None else report.head_hash.hex(),
        "checkpoints": [
            {"tree_size": c.size, "root_hash": _b64(c.root), "key": c.key}
            for c in report.checkpoints
        ],
        "failure": report.failure.value if report.failure else None,
        "first_bad_seq": report.seq,
        "suspects": list(report.suspects) if report.suspects else None,
        "detail": report.detail,
    }
