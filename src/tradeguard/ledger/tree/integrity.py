"""`audit verify`'s second half: the stored tree and the signed checkpoints, recomputed.

The chain walk (ledger/verify.py) proves each chained leaf hash is the hash of its event and
that the chain links them. This walk then streams those leaf hashes in order through a
`merkle.CompactRange` and checks, against nothing but the leaves:

- every stored subtree hash (audit_tree_node) below the verified size: a node rewritten to
  make a forged proof verify, or missing, is named by its level and index;
- every stored checkpoint of a size within the verified tree: its root equals the tree's
  root at that size, its note parses as that tree head, and its signature verifies under
  one of the log's public keys (the active and the retired ones). A checkpoint signed by a
  key the log never had, or over a different tree, is named by its size;
- nothing of a longer tree is left: a stored checkpoint, or a stored subtree, that reaches
  beyond the verified size means events were removed from the end (a rollback), however
  consistently the chain, its head and the sequencer's state were cut back;
- the last checkpoint the signer remembers outside the database (keys/ledger/signed.note,
  when the verifier runs beside the signing key and is given it): beyond the verified size
  it is a rollback; within it, its root must be the tree's root at its size. This catches
  a rewrite whose every checkpoint row was deleted with it, as a witness would.

Memory is O(log n) plus one chunk of leaves; each leaf costs about two SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tradeguard.ledger.tree import repository
from tradeguard.ledger.tree.errors import MalformedNote, NoteNotVerified
from tradeguard.ledger.tree.layout import StoredNode, stored_among
from tradeguard.ledger.tree.merkle import EMPTY_ROOT, CompactRange
from tradeguard.ledger.tree.note import Checkpoint, VerifierKey, open_checkpoint

CHUNK = 20_000


class TreeFailure(StrEnum):
    MISSING_LEAF = "missing-leaf"
    MISSING_NODE = "missing-node"
    NODE_MISMATCH = "node-mismatch"
    CHECKPOINT_ROOT = "checkpoint-root-mismatch"
    CHECKPOINT_SIGNATURE = "checkpoint-signature"
    NO_KEYS = "no-public-keys"
    ROLLBACK = "rollback"
    REMEMBERED_CHECKPOINT = "remembered-checkpoint-mismatch"
    REMEMBERED_UNREADABLE = "remembered-checkpoint-unreadable"


@dataclass(frozen=True, slots=True)
class TreeReport:
    ok: bool
    leaves: int
    nodes: int
    checkpoints: int
    failure: TreeFailure | None = None
    detail: str = ""


Progress = Callable[[int, int], None]


async def verify_tree(
    conn: AsyncConnection,
    size: int,
    *,
    keys: Sequence[VerifierKey],
    origin: str,
    progress: Progress | None = None,
    remembered: Checkpoint | None = None,
) -> TreeReport:
    """Check the stored subtrees and checkpoints of the first `size` leaves (`size`: the
    chain length just verified), that nothing stored belongs to a longer tree, and the
    checkpoint the signer remembers outside the database (`remembered`, already verified
    under the log's keys) when given."""
    if (failure := await _rollback(conn, remembered)) is not None:
        return failure
    checkpoints = list(await repository.all_checkpoints(conn, size))
    if checkpoints and not keys:
        return TreeReport(
            False,
            0,
            0,
            0,
            TreeFailure.NO_KEYS,
            "there are signed checkpoints but no public key of the log to check them with",
        )
    walk = _Walk(keys, origin, checkpoints, remembered)
    if (failure := walk.checkpoints_at(0, EMPTY_ROOT)) is not None:
        return failure
    frontier = CompactRange()
    merged: list[tuple[int, bytes]] = []
    first = 1
    while first <= size:
        last = min(first + CHUNK - 1, size)
        try:
            leaves = await repository.leaf_hashes(conn, first, last)
        except LookupError as missing:
            return walk.failed(TreeFailure.MISSING_LEAF, f"chain position {missing.args[0]}")
        completed: list[StoredNode] = []
        for leaf in leaves:
            frontier.append(leaf, merged)
            if merged:
                completed.extend(stored_among(frontier.size, merged))
                merged.clear()
            if frontier.size in (walk.next_size, walk.remembered_size):
                failure = walk.checkpoints_at(frontier.size, frontier.root())
                if failure is not None:
                    return failure
        if (failure := await walk.compare_nodes(conn, completed)) is not None:
            return failure
        walk.leaves = last
        first = last + 1
        if progress is not None:
            progress(last, size)
    return TreeReport(True, walk.leaves, walk.nodes, walk.checked)


async def _rollback(conn: AsyncConnection, remembered: Checkpoint | None) -> TreeReport | None:
    """A trace of a tree longer than the chain: events cut off the end, with the chain, its
    head and the sequencer's state cut back to match.

    Compared with the chain's length read last, not with `size`: on a live ledger the signer
    may sign, and the sequencer chain, past the verified size meanwhile (so these are read
    first and the chain's length after them), but nothing is
    stored for positions the chain never reached (a checkpoint is signed over chained
    leaves; subtrees are stored with the chain rows), and chain rows are never deleted.
    """
    largest = await repository.largest_checkpoint_size(conn)
    tops = await repository.level_tops(conn)
    head = await repository.chain_length(conn)
    beyond = [(level, top) for level, top in tops.items() if (top + 1) << level > head]
    removed = "events were removed from the end of the ledger"
    detail = None
    if largest is not None and largest > head:
        detail = (
            f"a signed checkpoint of size {largest} is stored but the chain holds {head} "
            f"events: {removed}"
        )
    elif beyond:
        level, index = beyond[0]
        detail = (
            f"stored subtree level {level} index {index} covers leaves beyond the chain's "
            f"{head} events: {removed}"
        )
    elif remembered is not None and remembered.size > head:
        detail = (
            f"the signer signed a checkpoint of size {remembered.size} (keys/ledger/"
            f"signed.note) but the chain holds {head} events: {removed}"
        )
    if detail is None:
        return None
    return TreeReport(False, 0, 0, 0, TreeFailure.ROLLBACK, detail)


class _Walk:
    def __init__(
        self,
        keys: Sequence[VerifierKey],
        origin: str,
        checkpoints: list[Any],
        remembered: Checkpoint | None = None,
    ):
        self._keys = list(keys)
        self._origin = origin
        self._pending = checkpoints
        self._remembered = remembered
        self._next = 0
        self.leaves = 0
        self.nodes = 0
        self.checked = 0

    @property
    def next_size(self) -> int | None:
        if self._next < len(self._pending):
            return int(self._pending[self._next].tree_size)
        return None

    @property
    def remembered_size(self) -> int | None:
        return None if self._remembered is None else self._remembered.size

    def failed(self, failure: TreeFailure, detail: str) -> TreeReport:
        return TreeReport(False, self.leaves, self.nodes, self.checked, failure, detail)

    def checkpoints_at(self, size: int, root: bytes) -> TreeReport | None:
        """Check every stored signature of a checkpoint at `size` (the tree's root `root`),
        and the remembered checkpoint if it is of that size."""
        if self._remembered is not None and self._remembered.size == size:
            if self._remembered.root != root:
                return self.failed(
                    TreeFailure.REMEMBERED_CHECKPOINT,
                    f"the last checkpoint the signer signed (size {size}, keys/ledger/"
                    "signed.note) has another root than the tree: the ledger was rewritten",
                )
            self._remembered = None
        while self.next_size == size:
            row = self._pending[self._next]
            self._next += 1
            where = f"checkpoint at size {size} (key {row.key_id})"
            if bytes(row.root_hash) != root:
                return self.failed(
                    TreeFailure.CHECKPOINT_ROOT, f"{where}: its root is not the tree's root"
                )
            try:
                head, _ = open_checkpoint(row.note, self._keys, origin=self._origin)
            except (MalformedNote, NoteNotVerified) as error:
                return self.failed(TreeFailure.CHECKPOINT_SIGNATURE, f"{where}: {error}")
            if head.size != size or head.root != root:
                return self.failed(
                    TreeFailure.CHECKPOINT_ROOT,
                    f"{where}: the signed note is for another tree head",
                )
            self.checked += 1
        return None

    async def compare_nodes(
        self, conn: AsyncConnection, completed: list[StoredNode]
    ) -> TreeReport | None:
        by_level: dict[int, list[StoredNode]] = {}
        for node in completed:
            by_level.setdefault(node.level, []).append(node)
        for level in sorted(by_level):
            nodes = by_level[level]
            stored = await repository.stored_nodes(conn, level, nodes[0].index, nodes[-1].index + 1)
            for node in nodes:
                found = stored.get(node.index)
                where = f"stored subtree level {node.level} index {node.index}"
                if found is None:
                    return self.failed(TreeFailure.MISSING_NODE, f"{where} is missing")
                if found != node.hash:
                    return self.failed(
                        TreeFailure.NODE_MISMATCH,
                        f"{where} does not match the leaves beneath it",
                    )
                self.nodes += 1
        return None
