"""The sealed archive of the audit ledger (AUD-2, ENC-3; SEC Rule 17a-4(f) audit-trail
alternative): seal closed ranges of the chain into write-once, compressed, encrypted,
signed segment files; verify them on every read; purge events from the database once they
are sealed and past their retention, recording the purge in the ledger itself.

What a purge removes and what it keeps: the event rows (and their search references) go;
their chain rows (sequence number, leaf hash, chain hash), the Merkle tree's stored
subtrees and every checkpoint stay. Those are hashes, not event data, and the tree reads
its leaves from the chain rows, so checkpoints are signed and proofs computed exactly as
before a purge. `audit verify` starts after the purged range, from the chain hash the purge
recorded at its end (which must still be the one stored there), and the purged events'
bodies are read back, and proven, from the archive.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tradeguard.config import Settings
from tradeguard.core.clock import Clock, ns_to_iso
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import read_only, session_factory, unit_of_work
from tradeguard.ledger import repository as ledger_repository
from tradeguard.ledger.archive import repository
from tradeguard.ledger.archive.domain import (
    MAX_SEGMENT_PLAIN_BYTES,
    ArchiveEvent,
    SegmentCutter,
    retention_cutoff_ns,
)
from tradeguard.ledger.archive.errors import (
    ChainDoesNotVerify,
    NothingToPurge,
    NotSealed,
    RetentionNotMet,
    SegmentExists,
    SegmentInvalid,
    UnsealedEvents,
)
from tradeguard.ledger.archive.files import (
    ListedSegment,
    ensure_directory,
    list_segments,
    read_file,
    write_once,
)
from tradeguard.ledger.archive.format import (
    MANIFEST_SUFFIX,
    SEGMENT_SUFFIX,
    ArchivedEntry,
    ChainedRange,
    Manifest,
    OpenedSegment,
    SegmentKeys,
    chain_entries,
    manifest_range_root,
    open_manifest,
    open_segment,
    seal_segment,
    segment_name,
)
from tradeguard.ledger.archive.proofs import range_proof_ranges, root_from_range
from tradeguard.ledger.archive.purges import (
    EVIDENCE_RULE,
    authorize_purge,
    check_purges,
    evidence_supports,
    purge_statement,
    recorded_ns,
)
from tradeguard.ledger.chain import GENESIS_HASH, stored_body
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.tree import merkle
from tradeguard.ledger.tree import repository as tree_repository
from tradeguard.ledger.tree.errors import InconsistentTree, MalformedNote, NoteNotVerified
from tradeguard.ledger.tree.note import MAX_NOTE_BYTES, VerifierKey, open_checkpoint
from tradeguard.ledger.tree.service import LedgerTree, SignedCheckpoint
from tradeguard.ledger.tree.store import TreeReader

READ_CHUNK = 10_000
# A segment file is its compressed entries plus a header and a tag: never more than this.
MAX_SEGMENT_FILE_BYTES = MAX_SEGMENT_PLAIN_BYTES + 1024 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True, slots=True)
class SealedSegmentSummary:
    name: str
    first_seq: int
    last_seq: int
    count: int
    file_bytes: int
    plain_bytes: int
    manifest_sha256: bytes
    adopted: bool  # files left by an interrupted seal, verified and recorded


@dataclass(frozen=True, slots=True)
class SealReport:
    checkpoint_size: int
    segments: list[SealedSegmentSummary]
    pending_events: int  # chained after the last sealed segment, in a range still open


@dataclass(frozen=True, slots=True)
class VerifiedSegment:
    """A segment that verified: its manifest, entries and the hashes they produce."""

    manifest: Manifest
    entries: list[ArchivedEntry]
    chained: ChainedRange
    manifest_sha256: bytes
    key_id: str


@dataclass(frozen=True, slots=True)
class ArchiveReport:
    ok: bool
    verified: list[Manifest]
    failure: SegmentInvalid | None
    database_checked: bool
    purged_through: int
    ignored_files: list[str]

    @property
    def events(self) -> int:
        return sum(m.count for m in self.verified)


@dataclass(frozen=True, slots=True)
class InclusionInArchive:
    tree_size: int
    root: bytes
    proof: list[bytes]
    checkpoint: SignedCheckpoint | None


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """An event read back from the archive, its segment verified on the way."""

    entry: ArchivedEntry
    segment: str
    leaf_hash: bytes
    chain_hash: bytes
    purged: bool
    inclusion: InclusionInArchive | None


@dataclass(frozen=True, slots=True)
class PurgeReport:
    first_seq: int
    through_seq: int
    events: int
    segments: list[Manifest]
    before_ns: int
    cutoff_ns: int
    event_id: str


@dataclass(slots=True)
class _Pending:
    """The entries of the segment being collected, and their time range."""

    entries: list[ArchivedEntry]
    min_ns: int = 0
    max_ns: int = 0

    def add(self, entry: ArchivedEntry, occurred_ns: int) -> None:
        if not self.entries:
            self.min_ns = self.max_ns = occurred_ns
        self.min_ns = min(self.min_ns, occurred_ns)
        self.max_ns = max(self.max_ns, occurred_ns)
        self.entries.append(entry)


class LedgerArchive:
    """The sealed archive of one ledger: its directory, keys and database."""

    def __init__(
        self,
        tree: LedgerTree,
        *,
        directory: Path,
        keys: SegmentKeys,
        segment_events: int,
        retention_years: int,
    ) -> None:
        self._tree = tree
        self._directory = directory
        self._keys = keys
        self._segment_events = segment_events
        self._retention_years = retention_years
        self._ledger = Ledger(clock=tree.clock, ids=IdGenerator(tree.clock))

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: AsyncEngine, *, clock: Clock, keys: SegmentKeys
    ) -> LedgerArchive:
        return cls(
            LedgerTree.from_settings(settings, engine, clock=clock),
            directory=settings.ledger_archive_path,
            keys=keys,
            segment_events=settings.ledger_archive_segment_events,
            retention_years=settings.ledger_retention_years,
        )

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def engine(self) -> AsyncEngine:
        return self._tree.engine

    @property
    def retention_years(self) -> int:
        return self._retention_years

    def verifiers(self) -> list[VerifierKey]:
        """The ledger's own public keys (active and retired)."""
        return self._tree.keys().verifiers

    # --- sealing ---------------------------------------------------------------------

    async def seal(self, *, actor: Party) -> SealReport:
        """Seal every closed range chained and covered by a checkpoint, oldest first.

        Committed events are chained and a checkpoint signed first (if the tree grew), so
        "covered" means everything chained now. A range is closed once it holds
        `segment_events` events, or an event recorded in a later calendar month (UTC) was
        chained after it; the open range at the end waits for a later seal.
        """
        engine = self.engine
        await LedgerSequencer(engine, clock=self._tree.clock).drain()
        checkpoint, _ = await self._tree.sign_checkpoint()
        ensure_directory(self._directory)
        async with engine.connect() as conn:
            await read_only(conn)
            last = await repository.last_segment(conn)
        previous = GENESIS_HASH if last is None else bytes(last.last_chain_hash)
        seq = 1 if last is None else int(last.last_seq) + 1
        cutter = SegmentCutter(self._segment_events)
        pending = _Pending([])
        sealed: list[SealedSegmentSummary] = []
        link = previous
        while seq <= checkpoint.size:
            through = min(seq + READ_CHUNK - 1, checkpoint.size)
            async with engine.connect() as conn:
                await read_only(conn)
                rows = await repository.chained_events(conn, seq, through)
            if not rows or int(rows[0].seq) != seq:
                raise ChainDoesNotVerify(f"event seq {seq} is missing from the ledger")
            for row in rows:
                if int(row.seq) != seq:
                    raise ChainDoesNotVerify(f"event seq {seq} is missing from the ledger")
                body = stored_body(row.body, seq=seq)
                entry = ArchivedEntry(seq, row.event_id, body)
                prior, link = link, _check_link(row, entry, link)
                if cutter.closes_before(int(row.occurred_ns), len(body)) and pending.entries:
                    sealed.append(await self._seal_one(pending, previous, checkpoint, actor))
                    previous = prior
                    pending = _Pending([])
                pending.add(entry, int(row.occurred_ns))
                if cutter.full:
                    sealed.append(await self._seal_one(pending, previous, checkpoint, actor))
                    previous = link
                    pending = _Pending([])
                seq += 1
        return SealReport(checkpoint.size, sealed, len(pending.entries))

    async def _seal_one(
        self, pending: _Pending, previous: bytes, checkpoint: SignedCheckpoint, actor: Party
    ) -> SealedSegmentSummary:
        entries = pending.entries
        first, last = entries[0].seq, entries[-1].seq
        chained = chain_entries(entries, previous)
        proof = await self._range_proof(first, last, checkpoint, chained.leaves)
        name = segment_name(first, last)
        segment_path, manifest_path = self._paths(name)
        adopted = segment_path.exists() or manifest_path.exists()
        if adopted:
            manifest, note = await self._adopt(name, entries, previous)
        else:
            sealed = seal_segment(entries, origin=self._tree.origin, keys=self._keys)
            manifest = Manifest(
                origin=self._tree.origin,
                first_seq=first,
                last_seq=last,
                count=len(entries),
                previous_chain_hash=previous,
                first_chain_hash=chained.first_chain_hash,
                last_chain_hash=chained.last_chain_hash,
                range_root=manifest_range_root(chained.leaves),
                checkpoint_size=checkpoint.size,
                checkpoint_root=checkpoint.root,
                checkpoint_note=checkpoint.note,
                range_proof=tuple(proof),
                min_occurred_ns=pending.min_ns,
                max_occurred_ns=pending.max_ns,
                file_sha256=sealed.sha256,
                file_bytes=len(sealed.blob),
                compressed_bytes=sealed.compressed_bytes,
                plain_bytes=sealed.plain_bytes,
                created_ns=self._tree.clock.now_ns(),
            )
            note = manifest.signed(self._tree.keys().active).encode()
            # The segment first: a manifest always names a segment that is complete.
            write_once(segment_path, sealed.blob)
            write_once(manifest_path, note)
        manifest_sha256 = hashlib.sha256(note).digest()
        await self._record(manifest, manifest_sha256, actor=actor, adopted=adopted)
        return SealedSegmentSummary(
            name,
            first,
            last,
            manifest.count,
            manifest.file_bytes,
            manifest.plain_bytes,
            manifest_sha256,
            adopted,
        )

    async def _range_proof(
        self, first: int, last: int, checkpoint: SignedCheckpoint, leaves: list[bytes]
    ) -> list[bytes]:
        """The hashes that put the segment's leaves in the checkpoint's tree, checked."""
        ranges = range_proof_ranges(first - 1, last, checkpoint.size)
        async with self._tree.reading() as conn:
            proof = await TreeReader(conn).range_hashes(ranges) if ranges else []
        if root_from_range(first - 1, last, checkpoint.size, leaves, proof) != checkpoint.root:
            raise InconsistentTree(
                f"the tree's stored hashes do not give the root signed at size "
                f"{checkpoint.size} with events {first}..{last}; nothing is sealed"
            )
        return proof

    async def _adopt(
        self, name: str, entries: list[ArchivedEntry], previous: bytes
    ) -> tuple[Manifest, bytes]:
        """Files an interrupted seal left for this range: verified against the ledger and
        recorded, never replaced. A segment without its manifest gets one if it holds
        exactly these entries."""
        segment_path, manifest_path = self._paths(name)
        first, last = entries[0].seq, entries[-1].seq
        listed = ListedSegment(
            name,
            first,
            last,
            segment_path if segment_path.exists() else None,
            manifest_path if manifest_path.exists() else None,
        )
        if listed.segment is not None and listed.manifest is None:
            raise SegmentExists(
                f"{name}{SEGMENT_SUFFIX} is in the archive without its manifest (an "
                "interrupted seal?): check it with `tradeguard audit archive verify`, move it "
                "aside, and seal again; archive files are never replaced"
            )
        try:
            verified = self.check_files(listed, verifiers=self.verifiers(), previous=previous)
        except SegmentInvalid as error:
            raise SegmentExists(
                f"{name} is already in the archive and does not verify ({error.reason}); "
                "archive files are never replaced: investigate it"
            ) from None
        if [(e.seq, e.event_id, e.body) for e in verified.entries] != [
            (e.seq, e.event_id, e.body) for e in entries
        ]:
            raise SegmentExists(
                f"{name} is already in the archive and holds other entries than the ledger; "
                "archive files are never replaced: investigate it"
            )
        assert listed.manifest is not None  # noqa: S101 - checked by check_files
        return verified.manifest, listed.manifest.read_bytes()

    async def _record(
        self, manifest: Manifest, manifest_sha256: bytes, *, actor: Party, adopted: bool
    ) -> None:
        async with unit_of_work(session_factory(self.engine)) as session:
            conn = await session.connection()
            await repository.insert_segment(
                conn,
                {
                    "first_seq": manifest.first_seq,
                    "last_seq": manifest.last_seq,
                    "event_count": manifest.count,
                    "name": manifest.name,
                    "previous_chain_hash": manifest.previous_chain_hash,
                    "last_chain_hash": manifest.last_chain_hash,
                    "range_root": manifest.range_root,
                    "checkpoint_size": manifest.checkpoint_size,
                    "min_occurred_ns": manifest.min_occurred_ns,
                    "max_occurred_ns": manifest.max_occurred_ns,
                    "file_sha256": manifest.file_sha256,
                    "file_bytes": manifest.file_bytes,
                    "plain_bytes": manifest.plain_bytes,
                    "manifest_sha256": manifest_sha256,
                    "key_id": self._tree.keys().active.key.id_hex,
                    "sealed_ns": self._tree.clock.now_ns(),
                },
            )
            await self._ledger.append(
                session,
                LedgerEvent(
                    type=ArchiveEvent.SEGMENT_SEALED,
                    actor=actor,
                    subject=Party("archive_segment", manifest.name),
                    data={
                        "first_seq": manifest.first_seq,
                        "last_seq": manifest.last_seq,
                        "events": manifest.count,
                        "manifest_sha256": manifest_sha256.hex(),
                        "file_sha256": manifest.file_sha256.hex(),
                        "last_chain_hash": manifest.last_chain_hash.hex(),
                        "checkpoint_size": manifest.checkpoint_size,
                        "adopted": adopted,
                    },
                ),
            )

    def _paths(self, name: str) -> tuple[Path, Path]:
        return (
            self._directory / f"{name}{SEGMENT_SUFFIX}",
            self._directory / f"{name}{MANIFEST_SUFFIX}",
        )

    # --- verifying and reading -------------------------------------------------------

    def check_files(
        self, listed: ListedSegment, *, verifiers: Sequence[VerifierKey], previous: bytes | None
    ) -> VerifiedSegment:
        """Verify one segment from its files alone: the manifest's signature, the file's
        hash and size, decryption and decompression, every entry's leaf and chain hash from
        `previous` (the chain hash before it, when known), the range's own root, and that
        its leaves are in the signed checkpoint the manifest names."""
        return check_segment_files(
            listed,
            keys=self._keys,
            verifiers=verifiers,
            origin=self._tree.origin,
            previous=previous,
        )

    async def verify(
        self, directory: Path | None = None, *, verifiers: Sequence[VerifierKey] | None = None
    ) -> ArchiveReport:
        """Verify every segment in the directory and against the database (see
        `verify_directory`)."""
        async with self.engine.connect() as conn:
            await read_only(conn)
            return await verify_directory(
                directory or self._directory,
                keys=self._keys,
                verifiers=list(verifiers) if verifiers is not None else self.verifiers(),
                origin=self._tree.origin,
                conn=conn,
            )

    async def read_event(self, seq: int, *, prove: bool = True) -> ArchivedEvent:
        """An event read back from its segment, which is verified first (and against the
        database: its chain hashes, the chain hash before it, the body if still stored);
        with its inclusion proof in the latest checkpoint's tree."""
        async with self.engine.connect() as conn:
            await read_only(conn)
            row = await repository.segment_holding(conn, seq)
            if row is None:
                raise NotSealed(f"no sealed segment holds seq {seq}")
            first = int(row.first_seq)
            previous = (
                GENESIS_HASH if first == 1 else await repository.chain_hash_at(conn, first - 1)
            )
            horizon = await repository.purge_horizon(conn)
            segment_path, manifest_path = self._paths(row.name)
            listed = ListedSegment(
                row.name,
                first,
                int(row.last_seq),
                segment_path if segment_path.exists() else None,
                manifest_path if manifest_path.exists() else None,
            )
            checked = self.check_files(listed, verifiers=self.verifiers(), previous=previous)
            await _check_against_database(conn, checked, row, horizon.through_seq)
        index = seq - first
        entry = checked.entries[index]
        inclusion = None
        if prove:
            inclusion = await self._inclusion(seq, checked.chained.leaves[index])
        return ArchivedEvent(
            entry,
            row.name,
            checked.chained.leaves[index],
            checked.chained.chain_hashes[index],
            seq <= horizon.through_seq,
            inclusion,
        )

    async def _inclusion(self, seq: int, leaf: bytes) -> InclusionInArchive | None:
        """The inclusion proof of leaf seq-1 in the latest checkpoint's tree (from the
        stored hashes, which a purge keeps), checked before it is returned."""
        async with self._tree.reading() as conn:
            row = await tree_repository.latest_checkpoint(conn)
            if row is None or int(row.tree_size) < seq:
                return None
            size = int(row.tree_size)
            root, proof = await TreeReader(conn).root_and_proof(
                size, merkle.inclusion_ranges(seq - 1, size)
            )
        checkpoint = await self._tree.checkpoint_at(size)
        if root != checkpoint.root or not merkle.verify_inclusion(seq - 1, size, leaf, proof, root):
            raise InconsistentTree(f"the stored tree does not prove seq {seq} in its checkpoint")
        return InclusionInArchive(size, root, proof, checkpoint)

    # --- purging ---------------------------------------------------------------------

    async def purge(self, *, before_ns: int, actor: Party) -> PurgeReport:
        """Delete from the database the events of every sealed segment, from the oldest
        on, whose events were all recorded before `before_ns`; refuse (changing nothing)
        when `before_ns` is within the retention period, when events recorded before it are
        not sealed, when nothing qualifies, or when a segment does not verify.

        The purge is one transaction with its ledger event `audit:archive:purged`, which
        names the range, the new boundary's chain hash and each segment's manifest hash;
        afterwards it is chained and a checkpoint is signed over it.
        """
        clock = self._tree.clock
        now = clock.now_ns()
        cutoff = retention_cutoff_ns(now, self._retention_years)
        if before_ns > cutoff:
            raise RetentionNotMet(
                f"events are kept {self._retention_years} years: only events recorded before "
                f"{ns_to_iso(cutoff)} may be purged, and --before is {ns_to_iso(before_ns)}; "
                "nothing was purged"
            )
        await LedgerSequencer(self.engine, clock=clock).drain()
        async with self.engine.connect() as conn:
            await read_only(conn)
            horizon = await repository.purge_horizon(conn)
            candidates = await repository.segments_after(conn, horizon.through_seq)
            chosen = _purgeable(candidates, horizon.through_seq, before_ns)
            sealed_through = int(candidates[-1].last_seq) if candidates else horizon.through_seq
            unsealed = await repository.oldest_unsealed(conn, sealed_through, before_ns)
            if unsealed is not None:
                raise UnsealedEvents(
                    f"event seq {unsealed.seq}, recorded {ns_to_iso(int(unsealed.occurred_ns))},"
                    " is older than --before but not sealed: run `tradeguard audit seal` "
                    "first; nothing was purged"
                )
            if not chosen:
                raise NothingToPurge(
                    f"no sealed segment after seq {horizon.through_seq} holds only events "
                    f"recorded before {ns_to_iso(before_ns)}; nothing was purged"
                )
            # The ledger's own evidence must agree with the clock (docs/audit.md).
            newest = max(int(row.max_occurred_ns) for row in chosen)
            top = (await ledger_repository.load_state(conn)).last_seq
            evidence = recorded_ns(await repository.body_at(conn, top))
            if evidence is None or not evidence_supports(evidence, newest, self._retention_years):
                raise RetentionNotMet(
                    f"the clock says {ns_to_iso(now)} but the ledger does not agree: "
                    f"{EVIDENCE_RULE} ({self._retention_years} years), and the newest event "
                    f"chained (seq {top}) is recorded at "
                    f"{'an unknown time' if evidence is None else ns_to_iso(evidence)}, the "
                    f"newest event to purge at {ns_to_iso(newest)}; nothing was purged"
                )
            earlier = [
                {
                    "first_seq": int(row.first_seq),
                    "through_seq": int(row.through_seq),
                    "boundary_chain_hash": bytes(row.boundary_chain_hash).hex(),
                }
                for row in await repository.purges(conn)
            ]
            previous = (
                GENESIS_HASH
                if horizon.through_seq == 0
                else await repository.chain_hash_at(conn, horizon.through_seq)
            )
            # Every segment must verify, files and database alike, before anything goes.
            checked = []
            for row in chosen:
                segment_path, manifest_path = self._paths(row.name)
                listed = ListedSegment(
                    row.name,
                    int(row.first_seq),
                    int(row.last_seq),
                    segment_path if segment_path.exists() else None,
                    manifest_path if manifest_path.exists() else None,
                )
                verified = self.check_files(listed, verifiers=self.verifiers(), previous=previous)
                await _check_against_database(conn, verified, row, horizon.through_seq)
                checked.append(verified)
                previous = verified.manifest.last_chain_hash
        first, through = horizon.through_seq + 1, int(chosen[-1].last_seq)
        async with unit_of_work(session_factory(self.engine)) as session:
            conn = await session.connection()
            if await repository.purge_horizon(conn) != horizon:
                raise NothingToPurge("another purge ran meanwhile; nothing was purged here")
            expected = sum(v.manifest.count for v in checked)
            await repository.insert_purge(
                conn,
                {
                    "first_seq": first,
                    "through_seq": through,
                    "boundary_chain_hash": checked[-1].manifest.last_chain_hash,
                    "event_count": expected,
                    "before_ns": before_ns,
                    "purged_ns": now,
                },
            )
            deleted = await repository.delete_events(conn, first, through)
            if deleted != expected:
                raise ChainDoesNotVerify(
                    f"{deleted} events were found at seq {first}..{through}, not {expected}; "
                    "nothing was purged"
                )
            boundary_hex = checked[-1].manifest.last_chain_hash.hex()
            # Signed by the checkpoint key, which the database never holds: a purge event
            # typed in by hand has none (ledger/archive/purges.py).
            authorization = authorize_purge(
                purge_statement(
                    self._tree.origin,
                    first_seq=first,
                    through_seq=through,
                    boundary_chain_hash=boundary_hex,
                    retention_years=self._retention_years,
                    manifest_sha256=[v.manifest_sha256.hex() for v in checked],
                ),
                self._tree.keys().active,
            )
            appended = await self._ledger.append(
                session,
                LedgerEvent(
                    type=ArchiveEvent.EVENTS_PURGED,
                    actor=actor,
                    subject=Party("archive_range", f"{first}-{through}"),
                    data={
                        "first_seq": first,
                        "through_seq": through,
                        "events": deleted,
                        "before": ns_to_iso(before_ns),
                        "retention_years": self._retention_years,
                        "retention_cutoff": ns_to_iso(cutoff),
                        "boundary_chain_hash": boundary_hex,
                        # Vouches for every purge record before it (ledger/archive/purges.py).
                        "previous_purges": earlier,
                        "segments": [
                            {
                                "name": v.manifest.name,
                                "first_seq": v.manifest.first_seq,
                                "last_seq": v.manifest.last_seq,
                                "manifest_sha256": v.manifest_sha256.hex(),
                                "file_sha256": v.manifest.file_sha256.hex(),
                            }
                            for v in checked
                        ],
                        "authorization": authorization,
                    },
                ),
            )
        # The purge's record is chained and signed over at once.
        await LedgerSequencer(self.engine, clock=clock).drain()
        await self._tree.sign_checkpoint()
        return PurgeReport(
            first,
            through,
            deleted,
            [v.manifest for v in checked],
            before_ns,
            cutoff,
            appended.event_id,
        )

    async def listing(self) -> tuple[list[Any], int]:
        """The sealed segments as recorded, and the purge horizon."""
        async with self.engine.connect() as conn:
            await read_only(conn)
            return list(await repository.segments(conn)), (
                await repository.purge_horizon(conn)
            ).through_seq


async def verify_directory(
    directory: Path,
    *,
    keys: SegmentKeys,
    verifiers: Sequence[VerifierKey],
    origin: str,
    conn: AsyncConnection | None,
) -> ArchiveReport:
    """Verify every segment in the directory, joined up in chain order from the genesis;
    with a database connection also against it: the same segments recorded, the same chain
    hashes stored, the same bodies for events not purged. Stops at the first failure."""
    listed, others = list_segments(directory)
    recorded: dict[int, Any] = {}
    purged = 0
    if conn is not None:
        recorded = {int(r.first_seq): r for r in await repository.segments(conn)}
        purged = (await repository.purge_horizon(conn)).through_seq
    verified: list[Manifest] = []
    previous = GENESIS_HASH
    expected_first = 1
    try:
        for segment in listed:
            if segment.first_seq != expected_first:
                missing = recorded.get(expected_first)
                if missing is not None:
                    raise SegmentInvalid(missing.name, "missing from the archive")
                raise SegmentInvalid(
                    segment.name,
                    "does not follow the segment before it (no segment starts at "
                    f"seq {expected_first})",
                )
            checked = check_segment_files(
                segment, keys=keys, verifiers=verifiers, origin=origin, previous=previous
            )
            if conn is not None:
                await _check_against_database(
                    conn, checked, recorded.get(segment.first_seq), purged
                )
            verified.append(checked.manifest)
            previous = checked.manifest.last_chain_hash
            expected_first = checked.manifest.last_seq + 1
        for first, row in sorted(recorded.items()):
            if first >= expected_first:
                raise SegmentInvalid(row.name, "recorded as sealed but missing from the archive")
        problem = None if conn is None else await check_purges(conn, keys=verifiers, origin=origin)
        if problem is not None:
            at_end = [r for r in recorded.values() if int(r.last_seq) == problem.through_seq]
            name = at_end[0].name if at_end else f"{problem.first_seq}-{problem.through_seq}"
            raise SegmentInvalid(name, problem.detail)
    except SegmentInvalid as failure:
        return ArchiveReport(False, verified, failure, conn is not None, purged, others)
    return ArchiveReport(True, verified, None, conn is not None, purged, others)


def _check_link(row: Any, entry: ArchivedEntry, previous: bytes) -> bytes:
    """The stored leaf and chain hash of a row must follow from its body: a ledger that
    does not verify is never sealed."""
    chained = chain_entries([entry], previous)
    if chained.leaves[0] != bytes(row.leaf_hash) or chained.last_chain_hash != bytes(
        row.chain_hash
    ):
        raise ChainDoesNotVerify(
            f"the ledger does not verify at seq {entry.seq}: run `tradeguard audit verify`; "
            "nothing from there on is sealed"
        )
    return chained.last_chain_hash


def _purgeable(candidates: Sequence[Any], after_seq: int, before_ns: int) -> list[Any]:
    """The sealed segments, contiguous from after_seq + 1, whose events all precede
    before_ns."""
    chosen = []
    expected = after_seq + 1
    for row in candidates:
        if int(row.first_seq) != expected or int(row.max_occurred_ns) >= before_ns:
            break
        chosen.append(row)
        expected = int(row.last_seq) + 1
    return chosen


def check_segment_files(
    listed: ListedSegment,
    *,
    keys: SegmentKeys,
    verifiers: Sequence[VerifierKey],
    origin: str,
    previous: bytes | None,
) -> VerifiedSegment:
    """See LedgerArchive.check_files; no database involved."""
    name = listed.name
    if listed.manifest is None:
        raise SegmentInvalid(name, "its manifest is missing")
    if listed.segment is None:
        raise SegmentInvalid(name, "its segment file is missing")
    raw_note = read_file(listed.manifest, limit=MAX_NOTE_BYTES)
    try:
        note = raw_note.decode("utf-8")
    except UnicodeDecodeError:
        raise SegmentInvalid(name, "its manifest is not a signed note") from None
    manifest, key = open_manifest(note, verifiers, segment=name)
    if manifest.name != name:
        raise SegmentInvalid(
            name, f"its manifest is that of segment {manifest.name} (renamed or swapped)"
        )
    if manifest.origin != origin:
        raise SegmentInvalid(name, "its manifest is for another log")
    blob = read_file(listed.segment, limit=MAX_SEGMENT_FILE_BYTES)
    if len(blob) != manifest.file_bytes or hashlib.sha256(blob).digest() != manifest.file_sha256:
        raise SegmentInvalid(
            name, "its file is not the one its manifest signed (altered, truncated or swapped)"
        )
    opened = open_segment(
        blob,
        keys=keys,
        origin=origin,
        first_seq=manifest.first_seq,
        last_seq=manifest.last_seq,
        max_plain_bytes=manifest.plain_bytes,
    )
    if (opened.plain_bytes, opened.compressed_bytes) != (
        manifest.plain_bytes,
        manifest.compressed_bytes,
    ):
        raise SegmentInvalid(name, "its content is not the size its manifest records")
    if previous is not None and previous != manifest.previous_chain_hash:
        raise SegmentInvalid(name, "it does not continue the chain of the segment before it")
    chained = chain_entries(opened.entries, manifest.previous_chain_hash)
    _check_content(manifest, opened, chained, verifiers)
    return VerifiedSegment(
        manifest, opened.entries, chained, hashlib.sha256(raw_note).digest(), key.id_hex
    )


def _check_content(
    manifest: Manifest,
    opened: OpenedSegment,
    chained: ChainedRange,
    verifiers: Sequence[VerifierKey],
) -> None:
    """The entries give the hashes, times and tree the (signed) manifest names."""
    name = manifest.name
    if (chained.first_chain_hash, chained.last_chain_hash) != (
        manifest.first_chain_hash,
        manifest.last_chain_hash,
    ):
        raise SegmentInvalid(name, "its entries do not give the chain hashes it names")
    if manifest_range_root(chained.leaves) != manifest.range_root:
        raise SegmentInvalid(name, "its entries do not give the range root it names")
    times = [t for t in (_occurred_ns(entry) for entry in opened.entries) if t is not None]
    if len(times) != manifest.count or (min(times), max(times)) != (
        manifest.min_occurred_ns,
        manifest.max_occurred_ns,
    ):
        raise SegmentInvalid(name, "its entries were not recorded when its manifest says")
    try:
        checkpoint, _ = open_checkpoint(manifest.checkpoint_note, verifiers, origin=manifest.origin)
    except (MalformedNote, NoteNotVerified) as error:
        raise SegmentInvalid(name, f"its checkpoint does not verify ({error.detail})") from None
    if (checkpoint.size, checkpoint.root) != (manifest.checkpoint_size, manifest.checkpoint_root):
        raise SegmentInvalid(name, "its checkpoint is not the one its manifest names")
    covered = root_from_range(
        manifest.first_seq - 1,
        manifest.last_seq,
        checkpoint.size,
        chained.leaves,
        manifest.range_proof,
    )
    if covered != checkpoint.root:
        raise SegmentInvalid(name, "its entries are not in the tree of the signed checkpoint")


def _occurred_ns(entry: ArchivedEntry) -> int | None:
    try:
        document = json.loads(entry.body)
        value = document["ts"] if isinstance(document, dict) else None
    except (ValueError, KeyError):
        return None
    return int(value) if isinstance(value, str) and value.isdigit() else None


async def _check_against_database(
    conn: AsyncConnection, checked: VerifiedSegment, row: Any | None, purged_through: int
) -> None:
    """The segment is the one the database recorded, its hashes are the chain's, and every
    event still stored is byte for byte the archived entry."""
    manifest = checked.manifest
    name = manifest.name
    if row is None:
        raise SegmentInvalid(name, "not recorded in the database as sealed")
    if (
        int(row.last_seq),
        bytes(row.manifest_sha256),
        bytes(row.file_sha256),
        bytes(row.last_chain_hash),
    ) != (
        manifest.last_seq,
        checked.manifest_sha256,
        manifest.file_sha256,
        manifest.last_chain_hash,
    ):
        raise SegmentInvalid(name, "it does not match the database's record of it")
    chain = await repository.chain_rows(conn, manifest.first_seq, manifest.last_seq)
    if len(chain) != manifest.count:
        raise SegmentInvalid(name, "the database's chain lacks some of its positions")
    for stored, leaf, link in zip(
        chain, checked.chained.leaves, checked.chained.chain_hashes, strict=True
    ):
        if bytes(stored.leaf_hash) != leaf or bytes(stored.chain_hash) != link:
            raise SegmentInvalid(
                name, f"its entry at seq {stored.seq} differs from the ledger's chain"
            )
    if manifest.last_seq <= purged_through:
        return  # purged: the chain rows above are what the database keeps of them
    events = await repository.chained_events(conn, manifest.first_seq, manifest.last_seq)
    if len(events) != manifest.count:
        raise SegmentInvalid(name, "some of its events are missing from the database")
    for event, entry in zip(events, checked.entries, strict=True):
        body = stored_body(event.body, seq=entry.seq)
        if body != entry.body or event.event_id != entry.event_id:
            raise SegmentInvalid(
                name, f"its entry at seq {entry.seq} differs from the event in the database"
            )
