"""Signed tree heads and proofs of the audit ledger (AUD-2, AUD-3): sign C2SP checkpoints
over the Merkle tree, and serve inclusion and consistency proofs (RFC 9162 section 2.1).

A checkpoint is only signed after proving that the tree extends the previous checkpoint
(c2sp.org/tlog-checkpoint: a log MUST NOT sign a checkpoint inconsistent with one it signed
before), so a rewrite of the ledger's tables is refused here instead of being signed over.
The previous checkpoint is both the database's latest and the last one signed as remembered
beside the signing key (keys.SIGNED_STATE_FILE): the database alone could be rewritten with
its checkpoint rows deleted, and the signer would then sign the forged tree as a new log.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.core.errors import InvalidInput, TradeguardError
from tradeguard.db.engine import read_only, write_gate
from tradeguard.ledger import repository as ledger_repository
from tradeguard.ledger.archive import repository as archive_repository
from tradeguard.ledger.archive.errors import EventPurged
from tradeguard.ledger.chain import GENESIS_HASH, leaf_hash, stored_body
from tradeguard.ledger.tree import merkle, repository
from tradeguard.ledger.tree.errors import (
    EventNotCheckpointed,
    InconsistentTree,
    LeafMismatch,
    NoCheckpoint,
    TreeSizeOutOfRange,
    UnknownEvent,
    UnverifiedChain,
)
from tradeguard.ledger.tree.keys import (
    LogKeys,
    key_files_fingerprint,
    load_log_keys,
    load_or_create_log_keys,
    read_signed_state,
    remember_signed,
)
from tradeguard.ledger.tree.note import Checkpoint, VerifierKey, open_checkpoint, sign_note
from tradeguard.ledger.tree.store import TreeReader
from tradeguard.ledger.verification.walk import Failure, walk


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint as signed and stored: the note verbatim, and who signed it when."""

    checkpoint: Checkpoint
    note: str
    key_name: str
    key_id: str
    signed_ns: int

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """That an event is leaf `seq - 1` of the tree of `tree_size` leaves under `root`."""

    event_id: str
    seq: int
    tree_size: int
    leaf_hash: bytes
    root: bytes
    proof: list[bytes]
    event_body: bytes
    checkpoint: SignedCheckpoint | None

    @property
    def leaf_index(self) -> int:
        return self.seq - 1


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """That the tree of `second` leaves extends the tree of `first` leaves."""

    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]
    first_checkpoint: SignedCheckpoint | None
    second_checkpoint: SignedCheckpoint | None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _signed(row: Any) -> SignedCheckpoint:
    return SignedCheckpoint(
        checkpoint=Checkpoint(row.origin, int(row.tree_size), bytes(row.root_hash)),
        note=row.note,
        key_name=row.key_name,
        key_id=row.key_id,
        signed_ns=int(row.signed_ns),
    )


class LogKeySource:
    """The signing keys as on disk, re-read when a file changes (a rotation in another
    process takes effect at the next checkpoint, without a restart)."""

    def __init__(self, directory: Path, name: str) -> None:
        self._directory = directory
        self._name = name
        self._keys = load_or_create_log_keys(directory, name)
        self._fingerprint = key_files_fingerprint(directory)

    @property
    def name(self) -> str:
        return self._name

    @property
    def directory(self) -> Path:
        return self._directory

    def current(self) -> LogKeys:
        fingerprint = key_files_fingerprint(self._directory)
        if fingerprint != self._fingerprint:
            self._keys = load_log_keys(self._directory, self._name)
            self._fingerprint = fingerprint
        return self._keys


class LedgerTree:
    """The tree, its checkpoints and proofs, over one database."""

    def __init__(
        self, engine: AsyncEngine, *, keys: LogKeySource, origin: str, clock: Clock
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._origin = origin
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, engine: AsyncEngine, *, clock: Clock) -> LedgerTree:
        """The tree of the main database, signing with the key in the data directory."""
        return cls(
            engine,
            keys=LogKeySource(settings.ledger_keys_dir, settings.ledger_origin),
            origin=settings.ledger_origin,
            clock=clock,
        )

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def clock(self) -> Clock:
        return self._clock

    def keys(self) -> LogKeys:
        return self._keys.current()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads: the tree, chain and checkpoints only ever grow, so what is
        read after a size holds for that size, and no snapshot is needed. SQLite: a deferred
        BEGIN (no write lock). PostgreSQL: autocommit, which spares the BEGIN and COMMIT
        round trips on the proof path."""
        async with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn
                return
            await read_only(conn)
            async with conn.begin():
                yield conn

    async def head(self) -> tuple[int, SignedCheckpoint | None]:
        """The tree's size (every chained event) and the latest checkpoint."""
        async with self.reading() as conn:
            size = (await ledger_repository.load_state(conn)).last_seq
            row = await repository.latest_checkpoint(conn)
            return size, None if row is None else _signed(row)

    async def latest_checkpoint(self) -> SignedCheckpoint:
        async with self.reading() as conn:
            row = await repository.latest_checkpoint(conn)
        if row is None:
            raise NoCheckpoint("no checkpoint has been signed yet")
        return _signed(row)

    async def checkpoint_at(self, size: int) -> SignedCheckpoint:
        async with self.reading() as conn:
            row = await repository.checkpoint_at(conn, size)
        if row is None:
            raise NoCheckpoint(f"no checkpoint was signed at tree size {size}")
        return _signed(row)

    async def checkpoints_after(self, size: int, *, limit: int) -> list[SignedCheckpoint]:
        async with self.reading() as conn:
            return [_signed(r) for r in await repository.checkpoints_after(conn, size, limit=limit)]

    async def sign_checkpoint(self) -> tuple[SignedCheckpoint, bool]:
        """Sign the tree as it stands; (checkpoint, True) when a new one was signed.

        Nothing is signed when the latest checkpoint already has this size and was signed
        with the active key: it is returned as is.
        """
        keys = self._keys.current()
        signer = keys.active
        async with write_gate(self._engine), self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="READ COMMITTED")
            async with conn.begin():
                await repository.lock_checkpoints(conn)
                # Read under the lock: another signer may have just signed and remembered.
                remembered = read_signed_state(self._keys.directory, self._origin, keys.verifiers)
                state = await ledger_repository.load_state(conn)
                size = state.last_seq
                reader = TreeReader(conn)
                root = await _consistent_root(reader, remembered, size, REMEMBERED)
                row = await repository.latest_checkpoint(conn)
                latest = None if row is None else _signed(row)
                if (
                    latest is not None
                    and latest.size == size
                    and latest.key_id == signer.key.id_hex
                ):
                    return latest, False
                same = (
                    remembered is not None
                    and (latest is not None)
                    and ((latest.size, latest.root) == (remembered.size, remembered.root))
                )
                if latest is not None and not same:
                    root = await _consistent_root(reader, latest, size, STORED)
                covered = _covered(remembered, latest, keys.verifiers, self._origin)
                await _verify_uncovered(conn, covered, size, state.last_chain_hash)
                checkpoint = Checkpoint(self._origin, size, root)
                now = self._clock.now_ns()
                note = sign_note(checkpoint.text, signer)
                await repository.insert_checkpoint(
                    conn,
                    {
                        "tree_size": size,
                        "root_hash": root,
                        "origin": self._origin,
                        "key_name": signer.name,
                        "key_id": signer.key.id_hex,
                        "note": note,
                        "signed_ns": now,
                    },
                )
            # Only once the row is committed (a rolled-back signing is not remembered).
            remember_signed(self._keys.directory, note, checkpoint)
        return SignedCheckpoint(checkpoint, note, signer.name, signer.key.id_hex, now), True

    async def inclusion(
        self, *, event_id: str | None = None, seq: int | None = None, tree_size: int | None = None
    ) -> InclusionProof:
        """An event's inclusion proof, by event id or seq, at a tree size (default: the
        latest checkpoint's)."""
        if (event_id is None) == (seq is None):
            raise InvalidInput("name the event by its id or by its seq (one of the two)")
        async with self.reading() as conn:
            size = await repository.tree_size(conn)
            event = await repository.chained_event(conn, event_id=event_id, seq=seq)
            if event is None or event.seq > size:
                which = f"id {event_id}" if event_id is not None else f"seq {seq}"
                await _refuse_if_purged(conn, which, seq)
                raise UnknownEvent(f"no chained event has {which}")
            checkpoint_row = (
                await repository.latest_checkpoint(conn)
                if tree_size is None
                else await repository.checkpoint_at(conn, tree_size)
            )
            if tree_size is None:
                if checkpoint_row is None or checkpoint_row.tree_size < event.seq:
                    raise EventNotCheckpointed(
                        f"event seq {event.seq} is newer than the latest checkpoint; one is "
                        "signed within the checkpoint interval, or ask for one now"
                    )
                tree_size = int(checkpoint_row.tree_size)
            _within(tree_size, size)
            if tree_size < event.seq:
                raise TreeSizeOutOfRange(
                    f"event seq {event.seq} is not in the tree of size {tree_size}"
                )
            body = stored_body(event.body, seq=int(event.seq))
            if leaf_hash(body) != bytes(event.leaf_hash):
                raise LeafMismatch(
                    f"the event at seq {event.seq} does not hash to its leaf in the tree: its "
                    "body was altered after it was chained; no proof is given for it (run "
                    "`tradeguard audit verify`)"
                )
            root, proof = await TreeReader(conn).root_and_proof(
                tree_size, merkle.inclusion_ranges(event.seq - 1, tree_size)
            )
        return InclusionProof(
            event_id=event.event_id,
            seq=int(event.seq),
            tree_size=tree_size,
            leaf_hash=bytes(event.leaf_hash),
            root=root,
            proof=proof,
            event_body=body,
            checkpoint=None if checkpoint_row is None else _signed(checkpoint_row),
        )

    async def consistency(self, first: int, second: int) -> ConsistencyProof:
        """That the tree at `second` extends the tree at `first` (0 <= first <= second)."""
        if first > second:
            raise TreeSizeOutOfRange(
                f"the first tree size ({first}) must not be larger than the second ({second})"
            )
        async with self.reading() as conn:
            size = await repository.tree_size(conn)
            _within(second, size)
            reader = TreeReader(conn)
            ranges = merkle.consistency_ranges(first, second) if first else []
            roots_and_proof = await reader.range_hashes(
                [*([(0, first)] if first else []), *([(0, second)] if second else []), *ranges]
            )
            first_root = roots_and_proof.pop(0) if first else merkle.EMPTY_ROOT
            second_root = roots_and_proof.pop(0) if second else merkle.EMPTY_ROOT
            signed = await repository.checkpoints_at(conn, first, second)
        first_row, second_row = signed.get(first), signed.get(second)
        return ConsistencyProof(
            first=first,
            second=second,
            first_root=first_root,
            second_root=second_root,
            proof=roots_and_proof,
            first_checkpoint=None if first_row is None else _signed(first_row),
            second_checkpoint=None if second_row is None else _signed(second_row),
        )

    async def consistency_hashes(self, first: int, second: int) -> list[bytes]:
        """Just the proof's hashes (what a witness asks for)."""
        async with self.reading() as conn:
            return await TreeReader(conn).consistency_proof(first, second)

    async def witness_cursor(self, witness: str) -> int | None:
        async with self.reading() as conn:
            return await repository.witness_cursor(conn, witness)

    async def advance_witness_cursor(self, witness: str, size: int) -> None:
        async with write_gate(self._engine), self._engine.begin() as conn:
            await repository.advance_witness_cursor(
                conn, witness, size=size, now_ns=self._clock.now_ns()
            )


async def _refuse_if_purged(conn: AsyncConnection, which: str, seq: int | None) -> None:
    """An event purged after its retention is proven from the sealed archive, not here."""
    purged = (await archive_repository.purge_horizon(conn)).through_seq
    if not purged:
        return
    if seq is not None and seq <= purged:
        raise EventPurged(
            f"the event at seq {seq} was purged from the database after its retention; read "
            f"it and its proof from the sealed archive: `tradeguard audit archive show --seq {seq}`"
        )
    if seq is None:
        raise UnknownEvent(
            f"no chained event has {which} (events through seq {purged} were purged after "
            "their retention: `tradeguard audit archive show --seq N` reads them by position)"
        )


def _within(tree_size: int, size: int) -> None:
    if tree_size > size:
        raise TreeSizeOutOfRange(f"tree size {tree_size} is beyond the tree (size {size})")


# Chain rows read at once by the check before signing (as `audit verify` reads them).
VERIFY_CHUNK = 20_000


def _covered(
    remembered: Checkpoint | None,
    latest: SignedCheckpoint | None,
    keys: list[VerifierKey],
    origin: str,
) -> int:
    """The size up to which the chain is covered by a checkpoint signed before: the smaller
    of the one remembered beside the key and the database's latest. A database row alone
    (no remembered checkpoint: first run, upgrade) counts only if its note verifies under
    the log's keys, since anyone who can write the database can insert a row."""
    sizes = [] if remembered is None else [remembered.size]
    if latest is not None:
        if remembered is None:
            try:
                head, _ = open_checkpoint(latest.note, keys, origin=origin)
            except TradeguardError:
                return 0
            if (head.size, head.root) != (latest.size, latest.root):
                return 0
        sizes.append(latest.size)
    return min(sizes, default=0)


async def _verify_uncovered(conn: AsyncConnection, covered: int, size: int, head: bytes) -> None:
    """Refuse to sign `size` over a chain that does not verify (docs/audit.md, "Never over a
    rewritten log").

    The range above `covered` (what no signed checkpoint covers yet) is walked as `audit
    verify` walks it: every chain row present, each body hashing to its leaf, each link
    following from the one before, from the chain hash stored at `covered`, ending at the
    head the sequencer recorded. Ranges below `covered` were checked when they were signed
    and their leaves are bound by the signed roots (the consistency proof above); a body
    altered or a chain row deleted there afterwards is found by `audit verify`, not here: a
    check of the whole chain at every checkpoint would grow with the ledger (a count of
    10 million chain rows alone is about a second on PostgreSQL).
    """
    purged = (await archive_repository.purge_horizon(conn)).through_seq
    start = max(covered, purged)
    if start >= size:
        return
    previous = GENESIS_HASH
    if start > 0:
        stored = await archive_repository.chain_hash_at(conn, start)
        if stored is None:
            raise UnverifiedChain(f"seq {start} is missing from the chain; nothing is signed")
        previous = stored
    expected = start + 1
    while expected <= size:
        rows, bodies = await ledger_repository.chain_range(
            conn, expected, min(expected + VERIFY_CHUNK - 1, size)
        )
        previous, expected, stop = walk(rows, previous, expected, bodies)
        if stop is None and not rows:
            stop = (expected, Failure.MISSING_SEQUENCE)
        if stop is not None:
            seq, failure = stop
            raise UnverifiedChain(
                f"the chain does not verify at seq {seq} ({failure.value}), above the last "
                f"signed checkpoint (size {covered}): the ledger was rewritten behind the "
                "triggers; nothing is signed (run `tradeguard audit verify`)"
            )
    if previous != head:
        raise UnverifiedChain(
            f"the chain's head at seq {size} is not the one the sequencer recorded "
            f"({Failure.HEAD_MISMATCH.value}); nothing is signed"
        )


REMEMBERED = "the last checkpoint signed (remembered beside the signing key)"
STORED = "the latest checkpoint in the database"


async def _consistent_root(
    reader: TreeReader, latest: Checkpoint | SignedCheckpoint | None, size: int, which: str
) -> bytes:
    """The root at `size`, after proving the tree extends `latest` (`which` names it)."""
    if latest is None or latest.size == 0:
        return await reader.root(size)
    if latest.size > size:
        raise InconsistentTree(
            f"the tree has {size} leaves but {which} was signed at {latest.size}: "
            "chained events were removed; nothing is signed"
        )
    if latest.size == size:
        root = await reader.root(size)
        consistent = root == latest.root
    else:
        root, proof = await reader.root_and_proof(
            size, merkle.consistency_ranges(latest.size, size)
        )
        consistent = merkle.verify_consistency(latest.size, size, latest.root, root, proof)
    if not consistent:
        raise InconsistentTree(
            f"the tree at size {size} does not extend the checkpoint signed at size "
            f"{latest.size} ({which}): the ledger was rewritten; nothing is signed"
        )
    return root
