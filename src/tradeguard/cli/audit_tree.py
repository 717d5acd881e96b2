"""`tradeguard audit checkpoint | prove | keys | monitor`: the audit ledger's signed tree
heads, inclusion and consistency proofs, signing keys, and the checkpoint monitor."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tradeguard.cli.bootstrap import database_missing, existing_settings
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
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.errors import ConfigurationError, TradeguardError
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import current_revision
from tradeguard.ledger.chain import leaf_hash
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.tree.errors import MalformedNote
from tradeguard.ledger.tree.keys import load_or_create_log_keys, read_verifier_keys, rotate_log_key
from tradeguard.ledger.tree.merkle import verify_consistency, verify_inclusion
from tradeguard.ledger.tree.monitor import (
    Alarm,
    ApiSource,
    CheckpointSource,
    DirectorySource,
    Fetch,
    MonitorResult,
    MonitorState,
    ProofSource,
    ProofUnavailable,
    alarm_event,
    check_database,
    check_source,
    database_proofs,
)
from tradeguard.ledger.tree.note import VerifierKey
from tradeguard.ledger.tree.service import LedgerTree, SignedCheckpoint, b64
from tradeguard.ledger.tree.witness import DirectoryWitness, publish_pending, witness_from_setting

T = TypeVar("T")
EXIT_ALARM = 1
MAX_SIZE = 2**63 - 1
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

prove_app = typer.Typer(help="Inclusion and consistency proofs (RFC 9162).", no_args_is_help=True)
keys_app = typer.Typer(help="The checkpoint signing key: list, rotate.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
SizeArgument = typer.Argument(min=0, max=MAX_SIZE, help="A tree size (number of leaves).")


def register(app: typer.Typer) -> None:
    """Add these commands to `tradeguard audit`."""
    app.command("checkpoint")(checkpoint_command)
    app.add_typer(prove_app, name="prove")
    app.add_typer(keys_app, name="keys")
    app.command("monitor")(monitor_command)


def _with_tree(settings: Settings, work: Callable[[LedgerTree], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            if await current_revision(engine) is None:
                fail("the database has no tradeguard schema", hint="run `tradeguard init`", code=2)
            return await work(LedgerTree.from_settings(settings, engine, clock=SystemClock()))
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _checkpoint_json(checkpoint: SignedCheckpoint) -> dict[str, Any]:
    return {
        "origin": checkpoint.checkpoint.origin,
        "tree_size": checkpoint.size,
        "root_hash": b64(checkpoint.root),
        "key_name": checkpoint.key_name,
        "key_id": checkpoint.key_id,
        "signed_at": ns_to_iso(checkpoint.signed_ns),
        "note": checkpoint.note,
    }


def checkpoint_command(
    data_dir: Annotated[Path | None, DataDirOption] = None,
    size: Annotated[
        int | None,
        typer.Option(
            "--size", min=0, max=MAX_SIZE, help="Show the checkpoint signed at this size."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Sign a checkpoint of the tree now and print it (--size N: the one signed at N).

    Every committed event is chained first; the checkpoint is published to the configured
    witness (TRADEGUARD_LEDGER_WITNESS). The note is printed verbatim, ready to be saved.
    """
    settings = existing_settings(data_dir)

    async def work(tree: LedgerTree) -> tuple[SignedCheckpoint, bool, str | None]:
        if size is not None:
            return await tree.checkpoint_at(size), False, None
        await LedgerSequencer(tree.engine).drain()
        checkpoint, created = await tree.sign_checkpoint()
        witness = witness_from_setting(
            settings.ledger_witness, timeout_seconds=settings.ledger_witness_timeout_seconds
        )
        try:
            if witness is not None:
                await publish_pending(tree, witness)
        except TradeguardError as error:
            # Signed and stored all the same: say so, then fail on the publication.
            return checkpoint, created, error.detail
        return checkpoint, created, None

    checkpoint, created, unpublished = _with_tree(settings, work)
    if as_json:
        console.print_json(json.dumps({**_checkpoint_json(checkpoint), "created": created}))
    else:
        if size is None:
            state = "signed" if created else "unchanged since the latest checkpoint"
            err_console.print(f"tree size {checkpoint.size}: {state}")
        # The note verbatim (no markup), so it can be saved and verified as is.
        console.out(checkpoint.note, end="", highlight=False)
    if unpublished is not None:
        fail(
            f"the checkpoint was signed but not published to the witness: {unpublished}",
            hint="the server's checkpointer publishes it once the witness is back",
        )


@prove_app.command("inclusion")
def prove_inclusion(
    event_id: Annotated[
        str | None, typer.Option("--event-id", help="The event's id (a UUID).")
    ] = None,
    seq: Annotated[
        int | None, typer.Option("--seq", min=1, max=MAX_SIZE, help="The event's chain position.")
    ] = None,
    tree_size: Annotated[
        int | None,
        typer.Option(
            "--tree-size", min=1, max=MAX_SIZE, help="Default: the latest checkpoint's size."
        ),
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: JsonOption = False,
) -> None:
    """An event's inclusion proof: the hashes from its leaf up to the root."""
    if (event_id is None) == (seq is None):
        fail("name the event with --event-id or --seq (one of them)", code=EXIT_USAGE)
    if event_id is not None and not _UUID.fullmatch(event_id):
        fail("--event-id is a UUID like 0190c5a0-7b1e-7c3d-9a2b-1c2d3e4f5a6b", code=EXIT_USAGE)
    settings = existing_settings(data_dir)
    proof = _with_tree(
        settings, lambda tree: tree.inclusion(event_id=event_id, seq=seq, tree_size=tree_size)
    )
    # Checked here as a third party would, so what is printed is known to verify: the body
    # hashes to the leaf (the service refuses one that does not), the leaf is in the tree.
    verified = leaf_hash(proof.event_body) == proof.leaf_hash and verify_inclusion(
        proof.leaf_index, proof.tree_size, proof.leaf_hash, proof.proof, proof.root
    )
    document = {
        "event_id": proof.event_id,
        "seq": proof.seq,
        "leaf_index": proof.leaf_index,
        "tree_size": proof.tree_size,
        "leaf_hash": b64(proof.leaf_hash),
        "root_hash": b64(proof.root),
        "proof": [b64(h) for h in proof.proof],
        "event_body": b64(proof.event_body),
        "checkpoint": proof.checkpoint.note if proof.checkpoint else None,
        "verified": verified,
    }
    if as_json:
        console.print_json(json.dumps(document))
    else:
        console.print(
            f"event {proof.event_id} (seq {proof.seq}) is leaf {proof.leaf_index} of the tree "
            f"of {proof.tree_size}; root {b64(proof.root)}"
        )
        for digest in proof.proof:
            console.print(f"  {b64(digest)}")
        console.print("verified" if verified else "[bold red]NOT VERIFIED[/]")
    if not verified:
        raise typer.Exit(1)


@prove_app.command("consistency")
def prove_consistency(
    first: Annotated[int, SizeArgument],
    second: Annotated[int, SizeArgument],
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: JsonOption = False,
) -> None:
    """A consistency proof: the tree of SECOND leaves extends the tree of FIRST leaves."""
    settings = existing_settings(data_dir)
    proof = _with_tree(settings, lambda tree: tree.consistency(first, second))
    verified = verify_consistency(
        proof.first, proof.second, proof.first_root, proof.second_root, proof.proof
    )
    document = {
        "first": proof.first,
        "second": proof.second,
        "first_root": b64(proof.first_root),
        "second_root": b64(proof.second_root),
        "proof": [b64(h) for h in proof.proof],
        "verified": verified,
    }
    if as_json:
        console.print_json(json.dumps(document))
    else:
        console.print(
            f"tree {proof.second} ({b64(proof.second_root)}) extends tree {proof.first} "
            f"({b64(proof.first_root)})"
        )
        for digest in proof.proof:
            console.print(f"  {b64(digest)}")
        console.print("verified" if verified else "[bold red]NOT VERIFIED[/]")
    if not verified:
        raise typer.Exit(1)


@keys_app.command("list")
def list_keys(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Print the public keys as vkey lines, the active one first.

    Give them to whoever verifies checkpoints: `tradeguard audit keys list > ledger.vkeys`.
    """
    settings = settings_from(data_dir)
    if not settings.data_dir.exists():
        fail("no data directory here", hint="run `tradeguard init` (or pass --data-dir)", code=2)
    keys = load_or_create_log_keys(settings.ledger_keys_dir, settings.ledger_origin)
    console.out(keys.published(), end="", highlight=False)


@keys_app.command("rotate")
def rotate_keys(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Make a new checkpoint signing key; the old public key stays listed.

    Checkpoints the old key signed keep verifying with its public key. Running servers sign
    with the new key from their next checkpoint, without a restart.
    """
    settings = settings_from(data_dir)
    if not settings.data_dir.exists():
        fail("no data directory here", hint="run `tradeguard init` (or pass --data-dir)", code=2)
    keys, retired = rotate_log_key(settings.ledger_keys_dir, settings.ledger_origin)
    console.print(f"active key   {keys.active.key.vkey}")
    console.print(f"retired key  {retired.vkey} (still verifies the checkpoints it signed)")
    console.print("publish both: `tradeguard audit keys list`")


def monitor_command(
    public_key: Annotated[
        Path,
        typer.Option(
            "--public-key",
            exists=True,
            dir_okay=False,
            help="The log's verifier keys (vkey lines), obtained out of band.",
        ),
    ],
    witness_dir: Annotated[
        Path | None,
        typer.Option("--witness-dir", file_okay=False, help="A witness directory to read."),
    ] = None,
    api: Annotated[
        str | None, typer.Option("--api", help="The API's base URL, e.g. https://host:8443.")
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option("--state", dir_okay=False, help="Default: <data dir>/audit-monitor.json."),
    ] = None,
    token_env: Annotated[
        str,
        typer.Option(help="Environment variable holding a compliance:audit access token."),
    ] = "TRADEGUARD_MONITOR_TOKEN",  # noqa: S107 - the variable's name, not a secret
    cafile: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="CA bundle for --api.")
    ] = None,
    data_dir: Annotated[Path | None, DataDirOption] = None,
    as_json: JsonOption = False,
) -> None:
    """Check new checkpoints against the last one seen; exit 1 on a fork or rollback.

    Same size: the same root. Larger: a consistency proof, verified here. With the local
    database (no --api), its own tree must also have the last accepted root. Exit 1 names the
    alarm (fork, rollback, inconsistent, bad_signature) and records it in the ledger when
    the database is reachable; exit 0 when all is consistent. Reads a witness directory
    (--witness-dir, default the configured one; proofs from --api, else the local database)
    or the API (--api).
    """
    settings = settings_from(data_dir)
    keys = _trusted_keys(public_key)
    if witness_dir is None and api is None:
        configured = _configured_witness_dir(settings)
        if configured is None:
            fail(
                "nothing to monitor",
                hint="pass --witness-dir DIR or --api URL (or set TRADEGUARD_LEDGER_WITNESS)",
                code=EXIT_USAGE,
            )
        witness_dir = configured
    fetch = _api_fetch(api, os.environ.get(token_env), cafile) if api else None
    state_path = state_file or settings.data_dir / "audit-monitor.json"
    reachable = not database_missing(settings)
    if witness_dir is not None and fetch is None and not reachable:
        fail(
            "a witness directory needs consistency proofs from --api or the local database",
            hint="pass --api URL or --data-dir",
            code=EXIT_USAGE,
        )

    async def run() -> tuple[MonitorResult, bool]:
        state = MonitorState.load(state_path, keys)
        engine = create_engine(settings.main_database_url) if reachable else None
        try:
            tree = (
                LedgerTree.from_settings(settings, engine, clock=SystemClock())
                if engine is not None
                else None
            )
            source = _source(witness_dir, api, fetch, tree)
            result = await check_source(state, source, keys)
            if tree is not None and api is None and result.state is not None:
                # Proofs come from this database: it must hold the witnessed tree itself.
                mismatch = await check_database(result.state, tree)
                if mismatch is not None:
                    result = MonitorResult(state, [*result.alarms, mismatch], [])
            recorded = False
            if result.alarms and engine is not None:
                recorded = await _record_alarms(engine, result.alarms, source.name)
            # Only past checkpoints that verified: after an alarm the state stays where the
            # log was last consistent, so the next run alarms again.
            if result.state is not None and result.state != state:
                result.state.save(state_path)
            return result, recorded
        finally:
            if engine is not None:
                await engine.dispose()

    result, recorded = run_async(
        run(), database_url=settings.main_database_url if reachable else None
    )
    _report(result, recorded=recorded, as_json=as_json)
    if result.alarms:
        raise typer.Exit(EXIT_ALARM)


def _trusted_keys(path: Path) -> list[VerifierKey]:
    try:
        keys = read_verifier_keys(path)
    except (MalformedNote, UnicodeDecodeError) as error:
        detail = error.detail if isinstance(error, MalformedNote) else "not UTF-8 text"
        fail(f"{path}: {detail}", code=EXIT_USAGE)
    if not keys:
        fail(f"{path} holds no verifier key", code=EXIT_USAGE)
    return keys


def _source(
    witness_dir: Path | None, api: str | None, fetch: Fetch | None, tree: LedgerTree | None
) -> CheckpointSource:
    """A witness directory (proofs from the API, else the database) or the API itself."""
    if witness_dir is None:
        if api is None or fetch is None:
            raise ConfigurationError("name a witness directory or the API")
        return ApiSource(api, fetch)
    proofs: ProofSource
    if api is not None and fetch is not None:
        proofs = ApiSource(api, fetch).consistency_proof
    elif tree is not None:
        proofs = database_proofs(tree)
    else:
        raise ConfigurationError("a witness directory needs proofs from the API or the database")
    return DirectorySource(witness_dir, proofs)


def _configured_witness_dir(settings: Settings) -> Path | None:
    try:
        witness = witness_from_setting(settings.ledger_witness)
    except ConfigurationError:
        return None
    return witness.directory if isinstance(witness, DirectoryWitness) else None


async def _record_alarms(engine: Any, alarms: list[Alarm], source: str) -> bool:
    """Append each alarm to the ledger; False when the database cannot take them."""
    clock = SystemClock()
    ledger = Ledger(clock=clock, ids=IdGenerator(clock))
    try:
        async with unit_of_work(session_factory(engine)) as session:
            for alarm in alarms:
                await ledger.append(session, alarm_event(alarm, source=source))
    except Exception as error:
        err_console.print(f"the alarm could not be recorded in the ledger ({type(error).__name__})")
        return False
    return True


def _report(result: MonitorResult, *, recorded: bool, as_json: bool) -> None:
    state = result.state
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "ok": not result.alarms,
                    "alarms": [a.as_json() for a in result.alarms],
                    "accepted": [c.size for c in result.accepted],
                    "size": state.size if state else None,
                    "root": base64.b64encode(state.root).decode() if state else None,
                    "recorded_in_ledger": recorded,
                }
            )
        )
        return
    for alarm in result.alarms:
        err_console.print(
            f"[bold red]ALARM {alarm.kind.value}[/] ({alarm.where}): {alarm.detail}",
            markup=True,
        )
    if result.alarms:
        where = "recorded in the audit ledger" if recorded else "not recorded (no database)"
        err_console.print(f"{len(result.alarms)} alarm(s); {where}")
        return
    if state is None:
        console.print("no checkpoint found yet")
        return
    accepted = ", ".join(str(c.size) for c in result.accepted) or "none new"
    console.print(
        f"[green]ok[/]: consistent up to tree size {state.size} "
        f"(root {base64.b64encode(state.root).decode()}); accepted: {accepted}"
    )


def _api_fetch(base_url: str, token: str | None, cafile: Path | None) -> Fetch:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme != "https" or not parts.hostname:
        fail("--api is an https:// URL", code=EXIT_USAGE)
    if not token:
        fail("the API needs an access token", hint="set TRADEGUARD_MONITOR_TOKEN", code=EXIT_USAGE)
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)

    def get(path: str, params: dict[str, str]) -> tuple[int, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(  # noqa: S310 - https only, checked above
            base_url.rstrip("/") + path + query,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                try:
                    return error.code, json.loads(error.read(64 * 1024))
                except ValueError:
                    return error.code, {}
        except (OSError, ValueError) as error:
            raise ProofUnavailable(
                f"the API at {parts.hostname} could not be read ({type(error).__name__})"
            ) from None

    async def fetch(path: str, params: dict[str, str]) -> tuple[int, Any]:
        return await asyncio.to_thread(get, path, params)

    return fetch
