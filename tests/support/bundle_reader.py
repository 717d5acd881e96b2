"""An independent audit bundle verifier, written from docs/audit-bundle.md ("Verifying a bundle,
step by step") and nothing else: it imports nothing from tradeguard (its Merkle and
checkpoint steps are tests/support/rfc9162.py, written from the RFC and C2SP texts). A bundle
our code writes is only accepted if a third party following the documentation accepts it.

`verify(directory, vkeys)` returns None when the bundle verifies, else why not.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
from pathlib import Path

from tests.support import rfc9162

CHAIN_LINE = re.compile(
    rb'\{"chain":"([A-Za-z0-9+/]{43}=)","leaf":"([A-Za-z0-9+/]{43}=)","seq":(0|[1-9][0-9]*)\}\n'
)


class Invalid(Exception):
    pass


def H(data: bytes) -> bytes:  # noqa: N802 - the document's name
    return hashlib.sha256(data).digest()


def hash64(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    value = base64.b64decode(raw, validate=True)
    if len(value) != 32 or base64.b64encode(value) != raw:
        raise Invalid("not the canonical base64 of 32 bytes")
    return value


def tree_root(subtrees: list[tuple[int, bytes]]) -> bytes:
    if not subtrees:
        return H(b"")
    r = subtrees[-1][1]
    for _, s in reversed(subtrees[:-1]):
        r = H(b"\x01" + s + r)
    return r


def verify(directory: Path, vkeys: list[str]) -> str | None:
    try:
        _verify(directory, vkeys)
    except (Invalid, ValueError, KeyError, TypeError, OSError, IndexError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _verify(directory: Path, vkeys: list[str]) -> None:  # noqa: C901, PLR0912 - one step after another, as documented
    # 1. Manifest.
    manifest = json.loads((directory / "bundle.json").read_bytes())
    if manifest["format"] != "tradeguard-audit-bundle" or manifest["version"] != 1:
        raise Invalid("format")
    if set(manifest) != {
        "format",
        "version",
        "origin",
        "first_seq",
        "last_seq",
        "checkpoints",
        "exported_at",
        "generator",
    }:
        raise Invalid("manifest members")
    first, last, sizes = manifest["first_seq"], manifest["last_seq"], manifest["checkpoints"]
    if not (isinstance(first, int) and isinstance(last, int) and 1 <= first <= last):
        raise Invalid("range")
    if not sizes or any(a >= b for a, b in itertools.pairwise(sizes)):
        raise Invalid("checkpoint sizes")
    # 2. Checkpoints, with the trusted keys only (any one key's signature suffices).
    if sorted(os.listdir(directory / "checkpoints")) != sorted(f"{s}.checkpoint" for s in sizes):
        raise Invalid("checkpoint files")
    roots = {}
    for size in sizes:
        note = (directory / "checkpoints" / f"{size}.checkpoint").read_text(encoding="utf-8")
        opened = []
        for vkey in vkeys:
            try:
                opened.append(rfc9162.verify_checkpoint(note, vkey))
            except ValueError as error:
                if "does not verify" in str(error):
                    raise Invalid(f"checkpoint {size}: a trusted signature fails") from None
        if not opened:
            raise Invalid(f"checkpoint {size}: no trusted signature")
        origin, signed_size, root = opened[0]
        if origin != manifest["origin"] or signed_size != size or len(root) != 32:
            raise Invalid(f"checkpoint {size}: origin or size")
        roots[size] = root
    if sizes[0] < first - 1 or sizes[-1] < last:
        raise Invalid("coverage")
    # 3. Prefix.
    proofs = json.loads((directory / "proofs.json").read_bytes())
    prefix = proofs["prefix"]
    if prefix["size"] != first - 1:
        raise Invalid("prefix size")
    heights = [k for k in range(63, -1, -1) if prefix["size"] >> k & 1]
    if len(prefix["subtrees"]) != len(heights):
        raise Invalid("prefix subtrees")
    tree = [(k, hash64(s)) for k, s in zip(heights, prefix["subtrees"], strict=True)]
    prev = hash64(prefix["chain_hash"])
    if prefix["size"] == 0 and prev != bytes(32):
        raise Invalid("chain start")
    if first - 1 in roots and tree_root(tree) != roots[first - 1]:
        raise Invalid("prefix root")
    beyond = [s for s in sizes if s > last]
    pairs = list(zip([last, *beyond], beyond, strict=False))
    if [(p["first"], p["second"]) for p in proofs["consistency"]] != pairs:
        raise Invalid("consistency pairs")
    # 4. Entries.
    with (
        open(directory / "entries.jsonl", "rb") as entries,
        open(directory / "chain.jsonl", "rb") as chain,
    ):
        for seq in range(first, last + 1):
            match = CHAIN_LINE.fullmatch(chain.readline())
            if match is None or int(match.group(3)) != seq:
                raise Invalid(f"seq {seq}: chain line")
            recorded_chain, leaf = hash64(match.group(1)), hash64(match.group(2))
            if H(prev + seq.to_bytes(8, "big") + leaf) != recorded_chain:
                raise Invalid(f"seq {seq}: chain link")
            line = entries.readline()
            if not line.endswith(b"\n"):
                raise Invalid(f"seq {seq}: entry line")
            if rfc9162.leaf(line[:-1]) != leaf:
                raise Invalid(f"seq {seq}: entry does not match its leaf")
            tree.append((0, leaf))
            while len(tree) > 1 and tree[-1][0] == tree[-2][0]:
                (h, right), (_, left) = tree.pop(), tree.pop()
                tree.append((h + 1, H(b"\x01" + left + right)))
            if seq in roots and tree_root(tree) != roots[seq]:
                raise Invalid(f"seq {seq}: root")
            prev = recorded_chain
        if entries.read(1) or chain.read(1):
            raise Invalid("entries after last_seq")
    # 5. Beyond the range.
    known = {**roots, last: tree_root(tree)}
    for p in proofs["consistency"]:
        path = [hash64(h) for h in p["proof"]]
        if not rfc9162.verify_consistency(
            p["first"], p["second"], known[p["first"]], known[p["second"]], path
        ):
            raise Invalid(f"consistency {p['first']} to {p['second']}")
