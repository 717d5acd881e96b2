"""`tradeguard audit`: verify the audit ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from tradeguard.cli import audit_archive, audit_bundle, audit_personal, audit_search, audit_tree
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
from tradeguard.db.engine import create_engine, read_only
from tradeguard.db.migrate import current_revision
from tradeguard.ledger.tree.errors import MalformedNote, SignerStateUnreadable
from tradeguard.ledger.tree.integrity import TreeFailure, TreeReport, verify_tree
from tradeguard.ledger.tree.keys import (
    ACTIVE_KEY_FILE,
    load_log_keys,
    read_signed_state,
    read_verifier_keys,
)
from tradeguard.ledger.tree.note import Checkpoint, VerifierKey
from tradeguard.ledger.verify import VerifyReport, verify_chain

app = typer.Typer(help="Audit ledger tools.", no_args_is_help=True)
app.command("forget")(audit_personal.forget_command)
# checkpoint, prove, keys, monitor: the Merkle tree's signed heads and proofs (docs/audit.md).
audit_tree.register(app)
audit_search.register(app)  # search, export-events (docs/audit.md "Search")
audit_archive.register(app)  # seal, purge, archive (docs/audit.md "Sealed archive")
# export, and verify --bundle: offline bundles (docs/audit-bundle.md).
audit_bundle.register(app)


async def _verify(
    url: str,
    *,
    show_progress: bool,
    workers: int | None,
    tree_keys: list[VerifierKey] | None,
    origin: str,
    remembered: Checkpoint | None = None,
) -> tuple[VerifyReport, TreeReport | None] | None:
    engine = create_engine(url)
    try:
        if await current_revision(engine) is None:
            return None
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=not show_progress,
        ) as bar:
            task = bar.add_task("verifying the chain", total=None)
            report = await verify_chain(
                engine,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                workers=workers,
                purge_keys=tree_keys,
                origin=origin,
            )
            if not report.ok or tree_keys is None:
                return report, None
            bar.update(task, description="verifying the tree", completed=0)
            async with engine.connect() as conn:
                await read_only(conn)
                tree = await verify_tree(
                    conn,
                    report.last_seq,
                    keys=tree_keys,
                    origin=origin,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                    remembered=remembered,
                )
            return report, tree
    finally:
        await engine.dispose()


def _log_keys(settings: Settings, public_key: Path | None) -> list[VerifierKey]:
    """The keys checkpoints are checked with: a file given, or the log's own key directory
    (its active and retired public keys)."""
    if public_key is not None:
        try:
            return read_verifier_keys(public_key)
        except (OSError, UnicodeDecodeError, ValueError, MalformedNote):
            err_console.print(f"[bold red]error:[/] {public_key} is not a file of public keys")
            err_console.print(
                "[dim]hint:[/] one vkey per line, as `tradeguard audit keys list` prints them"
            )
            raise typer.Exit(2) from None
    if not (settings.ledger_keys_dir / ACTIVE_KEY_FILE).exists():
        return []
    return load_log_keys(settings.ledger_keys_dir, settings.ledger_origin).verifiers


def _remembered(
    settings: Settings, keys: list[VerifierKey] | None
) -> tuple[Checkpoint | None, str | None]:
    """The last checkpoint the signer signed, kept beside its key (keys/ledger/signed.note)
    and not in the database: a rollback or rewrite that deleted the checkpoint rows too is
    still seen against it. (None, None) where there is no such file (another host, a new
    log); (None, why) where it does not verify under the keys."""
    if not keys:
        return None, None
    try:
        return read_signed_state(settings.ledger_keys_dir, settings.ledger_origin, keys), None
    except SignerStateUnreadable as error:
        return None, error.detail


@app.command("verify")
def verify_command(
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes verifying ranges at once (default: one per core, at most "
            "4, for 100,000 events or more; 1 verifies in this process).",
        ),
    ] = None,
    chain_only: Annotated[
        bool,
        typer.Option(
            "--chain-only",
            help="Walk the hash chain only; skip recomputing the stored subtrees and "
            "checking the signed checkpoints.",
        ),
    ] = False,
    bundle: Annotated[Path | None, audit_bundle.BundleOption] = None,
    public_key: Annotated[Path | None, audit_bundle.PublicKeyOption] = None,
) -> None:
    """Walk the hash chain from the first event, then recompute the Merkle tree's stored
    subtrees and check every signed checkpoint; exit 1 naming the first thing that does not
    hold (a sequence number, a subtree, a checkpoint).

    With --bundle DIR --public-key FILE: verify an exported bundle offline instead.
    """
    if bundle is not None:
        if chain_only:
            fail("--chain-only is for the database, not a bundle", code=EXIT_USAGE)
        audit_bundle.verify_bundle_command(
            bundle, public_key, as_json=as_json, data_dir=data_dir, workers=workers
        )
        return
    settings = settings_from(data_dir)
    keys = None if chain_only else _log_keys(settings, public_key)
    remembered, unreadable = _remembered(settings, keys)
    result = None
    if not database_missing(settings):
        result = run_async(
            _verify(
                settings.main_database_url,
                show_progress=not as_json,
                workers=workers,
                tree_keys=keys,
                origin=settings.ledger_origin,
                remembered=remembered,
            ),
            database_url=settings.main_database_url,
        )
    if result is None:
        err_console.print("[bold red]error:[/] no tradeguard database here")
        err_console.print("[dim]hint:[/] run `tradeguard init` (or pass --data-dir)")
        raise typer.Exit(2)
    report, tree = result
    if unreadable is not None and report.ok and tree is not None and tree.ok:
        tree = TreeReport(
            False,
            tree.leaves,
            tree.nodes,
            tree.checkpoints,
            TreeFailure.REMEMBERED_UNREADABLE,
            unreadable.replace("; nothing is signed", ""),
        )
    ok = report.ok and (tree is None or tree.ok)
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "ok": ok,
                    "verified": report.verified,
                    "head_hash": report.head_hash,
                    "unsequenced": report.unsequenced,
                    "first_bad_seq": report.first_bad_seq,
                    "failure": report.failure.value if report.failure else None,
                    "detail": report.detail,
                    "unchained_event_pk": report.unchained_event_pk,
                    "purged_through": report.purged_through,
                    "tree": None
                    if tree is None
                    else {
                        "ok": tree.ok,
                        "leaves": tree.leaves,
                        "stored_subtrees": tree.nodes,
                        "checkpoints": tree.checkpoints,
                        "failure": tree.failure.value if tree.failure else None,
                        "detail": tree.detail,
                    },
                }
            )
        )
    elif not report.ok:
        err_console.print(
            f"[bold red]TAMPERED[/]: first bad sequence {report.first_bad_seq} "
            f"({report.failure.value if report.failure else ''}): {report.detail}"
        )
    elif tree is not None and not tree.ok:
        err_console.print(
            f"[bold red]TAMPERED[/]: the chain holds ({report.verified} events) but the tree "
            f"does not ({tree.failure.value if tree.failure else ''}): {tree.detail}"
        )
    else:
        tree_line = (
            ""
            if tree is None
            else f"; {tree.nodes} stored subtrees and {tree.checkpoints} signed checkpoints match"
        )
        console.print(
            f"[green]ok[/]: {report.verified} events verified; head {report.head_hash[:16]}…"
            + tree_line
            + (f"; {report.unsequenced} awaiting sequencing" if report.unsequenced else "")
            + (
                f"; events through seq {report.purged_through} were purged after sealing "
                "(the walk starts from the boundary the purge recorded)"
                if report.purged_through
                else ""
            )
        )
    if not ok:
        raise typer.Exit(1)
