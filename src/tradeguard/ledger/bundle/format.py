"""The audit bundle's files, version 1 (docs/audit-bundle.md); pure: no I/O.

A bundle is a directory:

    bundle.json                 the manifest: format, version, origin, range, checkpoint sizes
    entries.jsonl               one ledger entry per line: its exact bytes (RFC 8785 JSON)
    chain.jsonl                 one line per entry: its seq, leaf hash and chain hash as recorded
    proofs.json                 the tree and chain before the range, consistency proofs after it
    checkpoints/<size>.checkpoint   C2SP signed notes (tlog-checkpoint), verbatim
    keys.vkeys                  the signers' verifier keys (informational: never trusted)

Every line format here is strict: a reader rejects anything that is not byte for byte what
the writer produces, so that no changed byte can go unnoticed or be blamed on the wrong entry.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from tradeguard.ledger.tree.merkle import HASH_SIZE

FORMAT: Final = "tradeguard-audit-bundle"
VERSION: Final = 1

MANIFEST: Final = "bundle.json"
ENTRIES: Final = "entries.jsonl"
CHAIN: Final = "chain.jsonl"
PROOFS: Final = "proofs.json"
CHECKPOINTS: Final = "checkpoints"
CHECKPOINT_SUFFIX: Final = ".checkpoint"
KEYS: Final = "keys.vkeys"

# Far above any ledger event; a bound on what a reader holds in memory for one line.
MAX_ENTRY_BYTES: Final = 16 * 1024 * 1024
MAX_JSON_BYTES: Final = 16 * 1024 * 1024
MAX_SEQ: Final = 2**63 - 1
NEWLINE: Final = b"\n"

_B64_HASH = rb"[A-Za-z0-9+/]{43}="
CHAIN_LINE = re.compile(
    rb'\{"chain":"('
    + _B64_HASH
    + rb')","leaf":"('
    + _B64_HASH
    + rb')","seq":(0|[1-9][0-9]{0,18})\}'
)
CHAIN_LINE_BYTES: Final = 140  # a chain line is 118 bytes and its seq's digits (at most 19)
_CHECKPOINT_NAME = re.compile(r"(0|[1-9][0-9]{0,18})" + re.escape(CHECKPOINT_SUFFIX))


class FormatError(ValueError):
    """Content that is not in the bundle format; the message says what is wrong, in words
    that quote no bytes of it."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_from_b64(text: str | bytes) -> bytes:
    """A 32-byte hash from its canonical standard base64 (the form b64() writes)."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    try:
        digest = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError("a hash is not standard base64") from None
    # Base64 of 32 bytes leaves two bits of its last character unused: a decoder ignores
    # them, so only the one canonical spelling is accepted (no changed byte goes unseen).
    if len(digest) != HASH_SIZE or base64.b64encode(digest) != raw:
        raise FormatError("a hash is not the canonical base64 of 32 bytes")
    return digest


def chain_line(seq: int, leaf: bytes, chain: bytes) -> bytes:
    """One line of chain.jsonl: the RFC 8785 form of {"chain", "leaf", "seq"}, and a newline."""
    return b'{"chain":"%s","leaf":"%s","seq":%d}\n' % (
        base64.b64encode(chain),
        base64.b64encode(leaf),
        seq,
    )


class ChainRecord(NamedTuple):
    seq: int
    leaf: bytes
    chain: bytes


# Base64 of 32 bytes leaves two bits of its 43rd character unused: only the characters whose
# value is a multiple of four spell them as zero (the canonical form).
_CANONICAL_LAST = frozenset(b"AEIMQUYcgkosw048")


def parse_chain_line(line: bytes) -> ChainRecord:
    """A chain.jsonl line without its newline, exactly as chain_line() writes it."""
    # Verification reads one per entry: the regex has checked the alphabet and the padding,
    # so the hashes are decoded with binascii directly (hash_from_b64's checks, inlined).
    match = CHAIN_LINE.fullmatch(line)
    if match is None:
        raise FormatError('not a chain record {"chain":"<base64>","leaf":"<base64>","seq":<n>}')
    chain, leaf, seq = match.groups()
    if chain[42] not in _CANONICAL_LAST or leaf[42] not in _CANONICAL_LAST:
        raise FormatError("a hash is not the canonical base64 of 32 bytes")
    number = int(seq)
    if number > MAX_SEQ:
        raise FormatError("the seq is beyond 2^63 - 1")
    return ChainRecord(number, binascii.a2b_base64(leaf), binascii.a2b_base64(chain))


def checkpoint_file_name(size: int) -> str:
    return f"{size}{CHECKPOINT_SUFFIX}"


def checkpoint_size_of(name: str) -> int | None:
    """The tree size a checkpoint file is named for, or None when the name is not one."""
    match = _CHECKPOINT_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class Manifest:
    """bundle.json: what the bundle claims to hold (checked against the files, never trusted)."""

    origin: str
    first_seq: int
    last_seq: int
    checkpoints: tuple[int, ...]
    exported_at: str
    generator: str

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "origin": self.origin,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoints": list(self.checkpoints),
            "exported_at": self.exported_at,
            "generator": self.generator,
        }


@dataclass(frozen=True, slots=True)
class ConsistencyStep:
    """A consistency proof from the tree of `first` leaves to the tree of `second`."""

    first: int
    second: int
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Proofs:
    """proofs.json: the tree and the chain just before the first entry, and the consistency
    proofs from the last entry to each checkpoint beyond it."""

    prefix_size: int
    prefix_subtrees: tuple[bytes, ...]
    prefix_chain_hash: bytes
    consistency: tuple[ConsistencyStep, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "prefix": {
                "size": self.prefix_size,
                "subtrees": [b64(h) for h in self.prefix_subtrees],
                "chain_hash": b64(self.prefix_chain_hash),
            },
            "consistency": [
                {"first": s.first, "second": s.second, "proof": [b64(h) for h in s.proof]}
                for s in self.consistency
            ],
        }


def dump_json(document: Mapping[str, Any]) -> bytes:
    """How the writer lays out bundle.json and proofs.json: indented, UTF-8, a final newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


class _DuplicateMember(Exception):
    pass


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A parser keeps the last of two equal names, another the first: refuse both readings.
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _DuplicateMember
    return document


def _load_object(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_JSON_BYTES:
        raise FormatError(f"{what} is larger than {MAX_JSON_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_members)
    except _DuplicateMember:
        raise FormatError(f"{what} names a member twice") from None
    except (UnicodeDecodeError, RecursionError, ValueError):
        raise FormatError(f"{what} is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise FormatError(f"{what} is not a JSON object")
    return document


def _members(document: Mapping[str, Any], names: set[str], what: str) -> None:
    missing, unknown = names - set(document), set(document) - names
    if missing:
        raise FormatError(f"{what} lacks {', '.join(sorted(missing))}")
    if unknown:
        # Named by count only: a member name is content of the file, possibly anything.
        raise FormatError(f"{what} has {len(unknown)} member(s) this version does not define")


def _integer(value: object, what: str, *, low: int = 0) -> int:
    # bool is an int in Python, and not a number in JSON.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_SEQ:
        raise FormatError(f"{what} is not an integer from {low} to 2^63 - 1")
    return value


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{what} is not a string")
    return value


def _hashes(value: object, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise FormatError(f"{what} is not a list of hashes")
    try:
        return tuple(hash_from_b64(_string(h, what)) for h in value)
    except FormatError as error:
        raise FormatError(f"{what}: {error}") from None


class UnsupportedBundle(FormatError):
    """bundle.json names another format or a version this reader does not know."""


def parse_manifest(data: bytes) -> Manifest:
    document = _load_object(data, MANIFEST)
    if document.get("format") != FORMAT:
        raise UnsupportedBundle(f"{MANIFEST} does not name the format {FORMAT!r}")
    version = document.get("version")
    if type(version) is not int or version != VERSION:  # 1.0 and true are not 1
        shown = version if isinstance(version, int) and not isinstance(version, bool) else "?"
        raise UnsupportedBundle(
            f"bundle format version {shown} is not supported (this verifier reads {VERSION})"
        )
    _members(
        document,
        {
            "format",
            "version",
            "origin",
            "first_seq",
            "last_seq",
            "checkpoints",
            "exported_at",
            "generator",
        },
        MANIFEST,
    )
    first = _integer(document["first_seq"], "first_seq", low=1)
    last = _integer(document["last_seq"], "last_seq", low=1)
    if last < first:
        raise FormatError(f"{MANIFEST}: last_seq is below first_seq")
    sizes = document["checkpoints"]
    if not isinstance(sizes, list) or not sizes:
        raise FormatError(f"{MANIFEST}: checkpoints is not a non-empty list of tree sizes")
    checkpoints = tuple(_integer(s, "a checkpoint size") for s in sizes)
    if any(a >= b for a, b in itertools.pairwise(checkpoints)):
        raise FormatError(f"{MANIFEST}: checkpoint sizes are not in increasing order")
    return Manifest(
        origin=_string(document["origin"], "origin"),
        first_seq=first,
        last_seq=last,
        checkpoints=checkpoints,
        exported_at=_string(document["exported_at"], "exported_at"),
        generator=_string(document["generator"], "generator"),
    )


def parse_proofs(data: bytes) -> Proofs:
    document = _load_object(data, PROOFS)
    _members(document, {"prefix", "consistency"}, PROOFS)
    prefix = document["prefix"]
    if not isinstance(prefix, dict):
        raise FormatError(f"{PROOFS}: prefix is not an object")
    _members(prefix, {"size", "subtrees", "chain_hash"}, f"{PROOFS} prefix")
    try:
        chain_hash = hash_from_b64(_string(prefix["chain_hash"], "prefix chain_hash"))
    except FormatError as error:
        raise FormatError(f"{PROOFS} prefix chain_hash: {error}") from None
    steps = document["consistency"]
    if not isinstance(steps, list):
        raise FormatError(f"{PROOFS}: consistency is not a list")
    consistency = []
    for step in steps:
        if not isinstance(step, dict):
            raise FormatError(f"{PROOFS}: a consistency proof is not an object")
        _members(step, {"first", "second", "proof"}, f"{PROOFS} consistency proof")
        consistency.append(
            ConsistencyStep(
                _integer(step["first"], "a consistency proof's first size"),
                _integer(step["second"], "a consistency proof's second size"),
                _hashes(step["proof"], f"{PROOFS} consistency proof"),
            )
        )
    return Proofs(
        prefix_size=_integer(prefix["size"], "prefix size"),
        prefix_subtrees=_hashes(prefix["subtrees"], f"{PROOFS} prefix subtrees"),
        prefix_chain_hash=chain_hash,
        consistency=tuple(consistency),
    )


def consistency_chain(last_seq: int, sizes: Sequence[int]) -> list[tuple[int, int]]:
    """The consistency proofs a bundle needs: from the last entry to the first checkpoint
    beyond it, and from each checkpoint beyond it to the next."""
    beyond = [s for s in sizes if s > last_seq]
    return list(zip([last_seq, *beyond], beyond, strict=False))
