"""Which Merkle subtree hashes the ledger stores, so a proof needs a few rows at any size.

A subtree (level, index) covers leaves [index * 2^level, (index + 1) * 2^level). Level 0 is
the leaves themselves (audit_chain.leaf_hash, leaf i at seq i + 1). Of the levels above, only
every STRIDE-th is stored: the hash of every complete subtree at levels 4, 8, 12, ... is a row
of audit_tree_node, written by the sequencer in the transaction that chains its leaves.
That is one row per 15 leaves, and any complete subtree is either stored or the root of at
most 2^(STRIDE - 1) = 8 consecutive nodes of the stored level below it. An inclusion or
consistency proof at ten million leaves then reads about a hundred short rows in two range
queries (the layout follows C2SP tlog-tiles, with tiles 16 wide, and partial tiles kept as
the rows they consist of).

Extending the tree by a batch of leaves only completes subtrees at the right edge: the
nodes the extension needs besides the new leaves are the ones at each stored level after
the last complete group of 16 (`pending_spans`), at most 15 per level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from tradeguard.ledger.tree.merkle import perfect_root

STRIDE = 4
GROUP = 1 << STRIDE


@dataclass(frozen=True, slots=True)
class StoredNode:
    level: int
    index: int
    hash: bytes


class Span(NamedTuple):
    """Nodes [first, end) of one stored level (level 0: leaves)."""

    level: int
    first: int
    end: int


def stored_among(size: int, merged: Sequence[tuple[int, bytes]]) -> list[StoredNode]:
    """Of the subtrees completed by the leaf that made the tree `size` leaves long (as
    merkle.CompactRange.append reports them), the ones the ledger stores."""
    return [StoredNode(level, (size >> level) - 1, h) for level, h in merged if level % STRIDE == 0]


def base_level(level: int) -> int:
    """The stored level a subtree at `level` is read from (itself when stored)."""
    return level - level % STRIDE


def base_span(level: int, index: int) -> Span:
    """The stored nodes whose root is subtree (level, index): one, or up to 8 beneath it."""
    base = base_level(level)
    width = 1 << (level - base)
    return Span(base, index * width, (index + 1) * width)


def pending_spans(size: int) -> list[Span]:
    """At each stored level, the nodes of a tree of `size` leaves after its last complete
    group of 16: what, with new leaves, makes the next stored nodes."""
    spans = []
    level, count = 0, size
    while count:
        first = count - count % GROUP
        if first < count:
            spans.append(Span(level, first, count))
        level += STRIDE
        count >>= STRIDE
    return spans


def extend(
    size: int, pending: Mapping[int, Sequence[bytes]], leaves: Sequence[bytes]
) -> list[StoredNode]:
    """The stored nodes completed by appending `leaves` to a tree of `size` leaves.

    `pending[level]` holds the nodes of `pending_spans(size)` at that level, in order.
    """
    completed: list[StoredNode] = []
    level, count = 0, size  # `count` nodes existed at `level` before the batch
    new = list(leaves)  # the batch's nodes at `level`, from index `count` on
    while new:
        prior = pending.get(level, ())
        if len(prior) != count % GROUP:
            raise ValueError(f"pending nodes at level {level} do not match the tree size")
        carry = [*prior, *new]
        parents = [
            perfect_root(carry[i : i + GROUP]) for i in range(0, len(carry) - GROUP + 1, GROUP)
        ]
        level += STRIDE
        count >>= STRIDE
        completed.extend(StoredNode(level, count + i, h) for i, h in enumerate(parents))
        new = parents
    return completed


def merged_spans(spans: Iterable[Span]) -> list[Span]:
    """The same nodes with overlapping or adjacent spans of a level joined, in order."""
    merged: list[Span] = []
    for span in sorted(spans):
        if merged and merged[-1].level == span.level and span.first <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Span(last.level, last.first, max(last.end, span.end))
        else:
            merged.append(span)
    return merged


def advance_pending(
    size: int,
    pending: Mapping[int, Sequence[bytes]],
    leaves: Sequence[bytes],
    completed: Sequence[StoredNode],
) -> dict[int, list[bytes]]:
    """The pending nodes of the tree once `leaves` (and the `completed` nodes they made) are
    appended: for building a tree in passes without reading back what was just written."""
    new_size = size + len(leaves)
    appended: dict[int, list[bytes]] = {0: list(leaves)}
    for node in completed:
        appended.setdefault(node.level, []).append(node.hash)
    result: dict[int, list[bytes]] = {}
    for span in pending_spans(new_size):
        nodes = [*pending.get(span.level, ()), *appended.get(span.level, ())]
        result[span.level] = nodes[len(nodes) - (span.end - span.first) :]
    return result
