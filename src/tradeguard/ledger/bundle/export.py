"""Export a range of the audit ledger as an offline bundle (docs/audit-bundle.md).

Everything is read as stored, nothing is recomputed or repaired: an export of an altered
ledger is a bundle that fails verification, naming what was altered. The ledger's tables only
grow, so the range read here is fixed once it is chained, and a live ledger can be exported
while it takes appends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import tradeguard
from tradeguard.core.clock import ns_to_iso
from tradeguard.core.errors import InvalidInput, LedgerIntegrityError
from tradeguard.db.engine import read_only
from tradeguard.ledger import repository as ledger_repository
from tradeguard.ledger.archive import repository as archive_repository
from tradeguard.ledger.archive.errors import EventPurged
from tradeguard.ledger.bundle import format as fmt
from tradeguard.ledger.bundle.writer import BundleWriter, check_target
from tradeguard.ledger.chain import GENESIS_HASH, stored_body
from tradeguard.ledger.tree import merkle
from tradeguard.ledger.tree import repository as tree_repository
from tradeguard.ledger.tree.errors import EventNotCheckpointed, NoCheckpoint, TreeSizeOutOfRange
from tradeguard.ledger.tree.note import VerifierKey, parse_checkpoint, parse_note
from tradeguard.ledger.tree.store import TreeReader

CHUNK = 20_000
CHECKPOINT_PAGE = 1000

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ExportSummary:
    path: Path
    origin: str
    first_seq: int
    last_seq: int
    checkpoints: tuple[int, ...]
    keys: tuple[str, ...]
    # Signers of an exported checkpoint whose public key was not given (not in keys.vkeys).
    unknown_signers: tuple[str, ...]

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1


async def export_bundle(
    engine: AsyncEngine,
    target: Path,
    *,
    first_seq: int | None = None,
    last_seq: int | None = None,
    keys: Sequence[VerifierKey] = (),
    exported_ns: int,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write seq `first_seq`..`last_seq` (default: the first event not purged, 1 if none
    was, to the latest checkpoint's size) with
    every checkpoint signed in that range and the first one covering its end, the proofs
    that tie them together, and those of `keys` that signed them."""
    check_target(target)
    async with engine.connect() as conn:
        await read_only(conn)
        first, last = await _range(conn, first_seq, last_seq)
        notes = await _checkpoints(conn, first, last)
        sizes = sorted(notes)
        reader = TreeReader(conn)
        subtrees, anchor = await _prefix(conn, reader, first - 1)
        steps = []
        for before, after in fmt.consistency_chain(last, sizes):
            proof = await reader.consistency_proof(before, after)
            steps.append(fmt.ConsistencyStep(before, after, tuple(proof)))
        origin = parse_checkpoint(parse_note(notes[sizes[-1]]).text).origin
        signers = {
            (s.name, s.key_id) for note in notes.values() for s in parse_note(note).signatures
        }
        chosen = [key for key in keys if (key.name, key.id) in signers]
        unknown = signers - {(key.name, key.id) for key in chosen}
        with BundleWriter(target, first_seq=first) as writer:
            await _stream_entries(conn, writer, first, last, progress)
            writer.commit(
                manifest=fmt.Manifest(
                    origin=origin,
                    first_seq=first,
                    last_seq=last,
                    checkpoints=tuple(sizes),
                    exported_at=ns_to_iso(exported_ns),
                    generator=f"tradeguard {tradeguard.__version__}",
                ),
                proofs=fmt.Proofs(
                    prefix_size=first - 1,
                    prefix_subtrees=tuple(subtrees),
                    prefix_chain_hash=anchor,
                    consistency=tuple(steps),
                ),
                checkpoints=notes,
                keys=chosen,
            )
    return ExportSummary(
        path=target,
        origin=origin,
        first_seq=first,
        last_seq=last,
        checkpoints=tuple(sizes),
        keys=tuple(key.vkey for key in chosen),
        unknown_signers=tuple(sorted(f"{name}+{key_id.hex()}" for name, key_id in unknown)),
    )


async def _range(
    conn: AsyncConnection, first_seq: int | None, last_seq: int | None
) -> tuple[int, int]:
    latest = await tree_repository.latest_checkpoint(conn)
    if latest is None:
        raise NoCheckpoint(
            "no checkpoint has been signed yet: sign one (`tradeguard audit checkpoint`)"
        )
    signed = int(latest.tree_size)
    # After a purge the database holds the events after its range only (docs/audit.md
    # "Sealed archive"); the chain rows, and so the bundle's prefix, are kept.
    purged = (await archive_repository.purge_horizon(conn)).through_seq
    first = purged + 1 if first_seq is None else first_seq
    last = signed if last_seq is None else last_seq
    if first < 1 or last < 1:
        raise InvalidInput("seq numbers start at 1")
    if last_seq is None and signed == 0:
        raise NoCheckpoint("the latest checkpoint is of the empty tree: there is nothing to export")
    if first <= purged:
        raise EventPurged(
            f"seq 1..{purged} were purged from the database after sealing: export from seq "
            f"{purged + 1} on (the default), and read a purged event, with its proof, from the "
            f"archive with `tradeguard audit archive show --seq {first}`"
        )
    if first > last:
        raise TreeSizeOutOfRange(f"the first seq ({first}) is after the last ({last})")
    if last > signed:
        raise EventNotCheckpointed(
            f"seq {last} is newer than the latest checkpoint (tree size {signed}); sign one "
            "first (`tradeguard audit checkpoint`)"
        )
    return first, last


async def _checkpoints(conn: AsyncConnection, first: int, last: int) -> dict[int, str]:
    """The notes of every checkpoint from size first - 1 to last, and of the first one at or
    beyond last (the latest signature at each size)."""
    found: dict[int, str] = {}
    after = first - 2  # sizes above it: first - 1 and on
    while True:
        rows = await tree_repository.checkpoints_after(conn, after, limit=CHECKPOINT_PAGE)
        for row in rows:
            size = int(row.tree_size)
            found[size] = str(row.note)
            if size >= last:
                return found
        if len(rows) < CHECKPOINT_PAGE:
            # _range saw a checkpoint at or beyond `last`; checkpoints are never deleted.
            raise LedgerIntegrityError(f"no checkpoint covers seq {last} any more")
        after = int(rows[-1].tree_size)


async def _prefix(
    conn: AsyncConnection, reader: TreeReader, size: int
) -> tuple[list[bytes], bytes]:
    """The complete subtrees of the first `size` leaves and the chain hash of seq `size`."""
    if size == 0:
        return [], GENESIS_HASH
    spans = [
        (index << level, (index + 1) << level) for level, index in merkle.complete_subtrees(0, size)
    ]
    subtrees = await reader.range_hashes(spans)
    # The chain row alone: it outlives its event when that was purged.
    anchor = await archive_repository.chain_hash_at(conn, size)
    if anchor is None:
        raise LedgerIntegrityError(f"seq {size} is missing from the ledger's chain")
    return subtrees, anchor


async def _stream_entries(
    conn: AsyncConnection, writer: BundleWriter, first: int, last: int, progress: Progress | None
) -> None:
    total = last - first + 1
    for low in range(first, last + 1, CHUNK):
        high = min(low + CHUNK - 1, last)
        rows, bodies = await ledger_repository.chain_range(conn, low, high)
        for seq, leaf, chain, ref in rows:
            body = ref if bodies is None else bodies.get(ref)
            if body is None and bodies is not None:
                raise LedgerIntegrityError(f"the event of seq {seq} is missing from the ledger")
            # SQLite reads a body that is not a BLOB as NULL (verification/reads.py): refused
            # by stored_body as not stored as bytes.
            writer.add_entry(int(seq), stored_body(body, seq=int(seq)), bytes(leaf), bytes(chain))
        if writer.written != high - first + 1:
            missing = first + writer.written
            raise LedgerIntegrityError(f"seq {missing} is missing from the ledger's chain")
        if progress is not None:
            progress(writer.written, total)
