"""The sealed archive's file formats (pure: bytes in, bytes out; no I/O).

A sealed range of the ledger is two files named for its chain positions,
`audit-<first seq>-<last seq>.segment` and `.manifest` (19-digit zero-padded decimals).

**Segment file** (all integers big-endian):

    magic "TGAUDSG1" | uint32 header length | header | nonce (12 bytes) | ciphertext || tag

The header is the RFC 8785 canonical JSON of {"cipher": "A256GCM", "compression": "zstd",
"count", "first_seq", "format", "last_seq", "origin", "wrapped_key"}. The ciphertext is
AES-256-GCM under a fresh random data key per segment, with magic, length and header as
associated data: a segment renamed, or its header edited to claim another range or log,
does not decrypt. The data key is stored wrapped by the keyring (purpose
`ledger-archive-segment`) with the canonical JSON of {"first_seq", "format", "last_seq",
"origin"} as the wrap's authenticated context, so a wrapped key copied into another
segment does not unwrap either. The plaintext is the zstd frame (content size recorded) of
the entries, each

    uint64 seq | uint16 event id length | event id (ASCII) | uint32 body length | body

with `body` the event's canonical JSON exactly as stored and hashed: its RFC 6962 leaf hash
is SHA-256(0x00 || body) and the chain continues from the previous segment's last hash.

**Manifest**: a C2SP signed note (c2sp.org/signed-note) signed with the ledger's checkpoint
key, whose text is the line `tradeguard audit archive segment v1`, then one line of
canonical JSON (the fields of `Manifest`; hashes in standard base64, nanoseconds as decimal
strings), then a newline. The first line has spaces, so a manifest can never be read as a
checkpoint (whose first line is the origin) nor a checkpoint as a manifest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tradeguard.core.errors import TradeguardError
from tradeguard.ledger.archive.domain import MAX_SEGMENT_PLAIN_BYTES
from tradeguard.ledger.archive.errors import ArchiveUnavailable, SegmentInvalid
from tradeguard.ledger.canonical import canonical_bytes
from tradeguard.ledger.chain import chain_hash, leaf_hash
from tradeguard.ledger.tree import merkle
from tradeguard.ledger.tree.errors import MalformedNote, NoteNotVerified
from tradeguard.ledger.tree.note import NoteSigner, VerifierKey, open_note, sign_note

FORMAT = "tradeguard-audit-segment/1"
MAGIC = b"TGAUDSG1"
MANIFEST_HEADER = "tradeguard audit archive segment v1"
CIPHER = "A256GCM"
COMPRESSION = "zstd"
KEY_PURPOSE = "ledger-archive-segment"
SEGMENT_SUFFIX = ".segment"
MANIFEST_SUFFIX = ".manifest"
NAME_PATTERN = re.compile(r"audit-(\d{19})-(\d{19})")
MAX_SEQ = 2**63 - 1
MAX_HEADER_BYTES = 64 * 1024
ZSTD_LEVEL = 3
_NONCE_BYTES = 12
_TAG_BYTES = 16
_ENTRY_HEAD = struct.Struct(">QH")
_BODY_LENGTH = struct.Struct(">I")
_HEADER_LENGTH = struct.Struct(">I")


class SegmentKeys(Protocol):
    """Wraps and unwraps a segment's data key (the keyring, or a KMS after it).

    `unwrap` raises a TradeguardError when the wrapped key does not authenticate.
    """

    def wrap(self, data_key: bytes, *, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes: ...


def segment_name(first_seq: int, last_seq: int) -> str:
    return f"audit-{first_seq:019d}-{last_seq:019d}"


def parse_name(name: str) -> tuple[int, int] | None:
    """(first_seq, last_seq) of a segment's base name, or None if it is not one."""
    match = NAME_PATTERN.fullmatch(name)
    if match is None:
        return None
    first, last = int(match[1]), int(match[2])
    return (first, last) if 1 <= first <= last <= MAX_SEQ else None


@dataclass(frozen=True, slots=True)
class ArchivedEntry:
    """One event as archived: its chain position, its id and its stored bytes."""

    seq: int
    event_id: str
    body: bytes


def encode_entries(entries: Iterable[ArchivedEntry]) -> bytes:
    parts = []
    for entry in entries:
        event_id = entry.event_id.encode("ascii")
        parts += [
            _ENTRY_HEAD.pack(entry.seq, len(event_id)),
            event_id,
            _BODY_LENGTH.pack(len(entry.body)),
            entry.body,
        ]
    return b"".join(parts)


def decode_entries(data: bytes, segment: str) -> list[ArchivedEntry]:
    entries = []
    view, offset, end = memoryview(data), 0, len(data)
    try:
        while offset < end:
            seq, id_length = _ENTRY_HEAD.unpack_from(view, offset)
            offset += _ENTRY_HEAD.size
            event_id = bytes(view[offset : offset + id_length]).decode("ascii")
            offset += id_length
            (body_length,) = _BODY_LENGTH.unpack_from(view, offset)
            offset += _BODY_LENGTH.size
            if offset + body_length > end or len(event_id) != id_length:
                raise ValueError("truncated")
            entries.append(ArchivedEntry(seq, event_id, bytes(view[offset : offset + body_length])))
            offset += body_length
    except (struct.error, ValueError, UnicodeDecodeError):
        raise SegmentInvalid(segment, "its entries are malformed") from None
    return entries


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """What a segment file says about itself (authenticated as the ciphertext's AAD)."""

    origin: str
    first_seq: int
    last_seq: int
    count: int
    wrapped_key: bytes

    @property
    def name(self) -> str:
        return segment_name(self.first_seq, self.last_seq)

    def encoded(self) -> bytes:
        return canonical_bytes(
            {
                "cipher": CIPHER,
                "compression": COMPRESSION,
                "count": self.count,
                "first_seq": self.first_seq,
                "format": FORMAT,
                "last_seq": self.last_seq,
                "origin": self.origin,
                "wrapped_key": _b64(self.wrapped_key),
            }
        )


def key_context(origin: str, first_seq: int, last_seq: int) -> bytes:
    """The wrapped data key's authenticated context: the log and the range it seals."""
    return canonical_bytes(
        {"first_seq": first_seq, "format": FORMAT, "last_seq": last_seq, "origin": origin}
    )


@dataclass(frozen=True, slots=True)
class SealedSegment:
    """A segment file's bytes and its sizes before and after compression."""

    blob: bytes
    plain_bytes: int
    compressed_bytes: int

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.blob).digest()


def seal_segment(
    entries: Sequence[ArchivedEntry], *, origin: str, keys: SegmentKeys
) -> SealedSegment:
    """Compress and encrypt consecutive entries into a segment file."""
    if not entries:
        raise ValueError("a segment holds at least one entry")
    first, last = entries[0].seq, entries[-1].seq
    if last - first + 1 != len(entries):
        raise ValueError("a segment holds consecutive chain positions")
    plain = encode_entries(entries)
    if len(plain) > MAX_SEGMENT_PLAIN_BYTES:
        raise ValueError("a segment holds at most MAX_SEGMENT_PLAIN_BYTES")
    compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(plain)
    data_key = AESGCM.generate_key(bit_length=256)
    header = SegmentHeader(
        origin,
        first,
        last,
        len(entries),
        keys.wrap(data_key, context=key_context(origin, first, last)),
    ).encoded()
    prefix = MAGIC + _HEADER_LENGTH.pack(len(header)) + header
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, compressed, prefix)
    return SealedSegment(prefix + nonce + ciphertext, len(plain), len(compressed))


def read_header(blob: bytes, segment: str) -> tuple[SegmentHeader, int]:
    """The header of a segment file and where its nonce starts."""
    head = len(MAGIC) + _HEADER_LENGTH.size
    if len(blob) < head or blob[: len(MAGIC)] != MAGIC:
        raise SegmentInvalid(segment, "not a tradeguard archive segment (bad magic)")
    (length,) = _HEADER_LENGTH.unpack_from(blob, len(MAGIC))
    if length > MAX_HEADER_BYTES or len(blob) < head + length + _NONCE_BYTES + _TAG_BYTES:
        raise SegmentInvalid(segment, "the file is truncated")
    raw = blob[head : head + length]
    try:
        fields = json.loads(raw)
        header = SegmentHeader(
            origin=_text(fields["origin"]),
            first_seq=_count(fields["first_seq"]),
            last_seq=_count(fields["last_seq"]),
            count=_count(fields["count"]),
            wrapped_key=_unb64(fields["wrapped_key"]),
        )
        known = (fields["format"], fields["cipher"], fields["compression"])
    except (ValueError, KeyError, TypeError):
        raise SegmentInvalid(segment, "its header is malformed") from None
    if known != (FORMAT, CIPHER, COMPRESSION) or header.encoded() != raw:
        raise SegmentInvalid(segment, "its header is not in the expected format")
    return header, head + length


@dataclass(frozen=True, slots=True)
class OpenedSegment:
    """A segment file's entries, and its sizes before and after compression."""

    entries: list[ArchivedEntry]
    plain_bytes: int
    compressed_bytes: int


def open_segment(
    blob: bytes,
    *,
    keys: SegmentKeys,
    origin: str,
    first_seq: int,
    last_seq: int,
    max_plain_bytes: int = MAX_SEGMENT_PLAIN_BYTES,
) -> OpenedSegment:
    """Decrypt, decompress and decode a segment file that must hold the chain positions
    first..last of the log `origin`; `max_plain_bytes` bounds what it may decompress to."""
    name = segment_name(first_seq, last_seq)
    header, at = read_header(blob, name)
    if (header.origin, header.first_seq, header.last_seq, header.count) != (
        origin,
        first_seq,
        last_seq,
        last_seq - first_seq + 1,
    ):
        raise SegmentInvalid(name, "its header names another range or log")
    try:
        data_key = keys.unwrap(header.wrapped_key, context=key_context(origin, first_seq, last_seq))
        nonce, sealed = blob[at : at + _NONCE_BYTES], blob[at + _NONCE_BYTES :]
        compressed = AESGCM(data_key).decrypt(nonce, sealed, blob[:at])
    except ArchiveUnavailable:
        raise  # no key source at all: not the segment's fault
    except (TradeguardError, InvalidTag, ValueError):
        raise SegmentInvalid(
            name, "it does not decrypt (altered, or sealed under another key)"
        ) from None
    limit = min(max_plain_bytes, MAX_SEGMENT_PLAIN_BYTES)
    try:
        # Bounded output: a frame's declared size is honoured by the decompressor, so a
        # crafted one is refused before anything is allocated.
        if zstandard.frame_content_size(compressed) > limit:
            raise SegmentInvalid(name, "it decompresses to more than a segment may hold")
        plain = zstandard.ZstdDecompressor().decompress(compressed, max_output_size=limit)
    except zstandard.ZstdError:
        raise SegmentInvalid(name, "it does not decompress") from None
    entries = decode_entries(plain, name)
    expected = range(first_seq, last_seq + 1)
    if len(entries) != len(expected) or any(
        entry.seq != seq for entry, seq in zip(entries, expected, strict=True)
    ):
        raise SegmentInvalid(name, "its entries are not the consecutive range it names")
    return OpenedSegment(entries, len(plain), len(compressed))


@dataclass(frozen=True, slots=True)
class ChainedRange:
    """The hashes a run of entries produces, continuing the chain from `previous`."""

    leaves: list[bytes]
    first_chain_hash: bytes
    last_chain_hash: bytes
    chain_hashes: list[bytes] = field(repr=False)


def chain_entries(entries: Sequence[ArchivedEntry], previous: bytes) -> ChainedRange:
    """Recompute leaf and chain hashes (ledger/chain.py) of consecutive entries."""
    leaves, links = [], []
    for entry in entries:
        leaf = leaf_hash(entry.body)
        previous = chain_hash(previous, entry.seq, leaf)
        leaves.append(leaf)
        links.append(previous)
    return ChainedRange(leaves, links[0], links[-1], links)


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a segment's signed manifest states. Times are nanoseconds since the epoch."""

    origin: str
    first_seq: int
    last_seq: int
    count: int
    previous_chain_hash: bytes
    first_chain_hash: bytes
    last_chain_hash: bytes
    range_root: bytes
    checkpoint_size: int
    checkpoint_root: bytes
    checkpoint_note: str
    range_proof: tuple[bytes, ...]
    min_occurred_ns: int
    max_occurred_ns: int
    file_sha256: bytes
    file_bytes: int
    compressed_bytes: int
    plain_bytes: int
    created_ns: int

    @property
    def name(self) -> str:
        return segment_name(self.first_seq, self.last_seq)

    def document(self) -> dict[str, Any]:
        raw = asdict(self)
        document: dict[str, Any] = {"format": FORMAT, "cipher": CIPHER, "compression": COMPRESSION}
        for key, value in raw.items():
            if isinstance(value, bytes):
                document[key] = _b64(value)
            elif key == "range_proof":
                document[key] = [_b64(v) for v in value]
            elif key.endswith("_ns"):
                document[key] = str(value)  # beyond 2^53 (RFC 8785 3.2.2.3)
            else:
                document[key] = value
        return document

    @property
    def text(self) -> str:
        return f"{MANIFEST_HEADER}\n{canonical_bytes(self.document()).decode()}\n"

    def signed(self, signer: NoteSigner) -> str:
        return sign_note(self.text, signer)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("base64 text expected")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not base64") from None


def _hash(value: Any) -> bytes:
    digest = _unb64(value)
    if len(digest) != merkle.HASH_SIZE:
        raise ValueError("a hash is 32 bytes")
    return digest


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
        raise ValueError("a count is a non-negative integer")
    return value


def _ns(value: Any) -> int:
    if not isinstance(value, str) or not value.isdigit() or len(value) > 19:
        raise ValueError("nanoseconds are a decimal string")
    return int(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("text expected")
    return value


def _hashes(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise TypeError("a list expected")
    return tuple(_hash(item) for item in value)


_MANIFEST_FIELDS: dict[str, Callable[[Any], Any]] = {
    "origin": _text,
    "first_seq": _count,
    "last_seq": _count,
    "count": _count,
    "previous_chain_hash": _hash,
    "first_chain_hash": _hash,
    "last_chain_hash": _hash,
    "range_root": _hash,
    "checkpoint_size": _count,
    "checkpoint_root": _hash,
    "checkpoint_note": _text,
    "range_proof": _hashes,
    "min_occurred_ns": _ns,
    "max_occurred_ns": _ns,
    "file_sha256": _hash,
    "file_bytes": _count,
    "compressed_bytes": _count,
    "plain_bytes": _count,
    "created_ns": _ns,
}


def parse_manifest_text(text: str) -> Manifest:
    """The manifest of a note's text (its signature checked by the caller)."""
    lines = text.split("\n")
    if len(lines) != 3 or lines[0] != MANIFEST_HEADER or lines[2] != "":
        raise MalformedNote("not a tradeguard archive segment manifest")
    try:
        document = json.loads(lines[1])
        if not isinstance(document, dict):
            raise TypeError
        if (document.get("format"), document.get("cipher"), document.get("compression")) != (
            FORMAT,
            CIPHER,
            COMPRESSION,
        ):
            raise ValueError("format")
        if set(document) != {*_MANIFEST_FIELDS, "format", "cipher", "compression"}:
            raise ValueError("fields")
        manifest = Manifest(**{k: parse(document[k]) for k, parse in _MANIFEST_FIELDS.items()})
    except (ValueError, TypeError, KeyError, MalformedNote):
        raise MalformedNote("the manifest's fields are malformed") from None
    if manifest.text != text:
        raise MalformedNote("the manifest is not in canonical form")
    if not (
        1 <= manifest.first_seq <= manifest.last_seq <= manifest.checkpoint_size
        and manifest.count == manifest.last_seq - manifest.first_seq + 1
    ):
        raise MalformedNote("the manifest's range is inconsistent")
    return manifest


def open_manifest(
    note: str, keys: Iterable[VerifierKey], *, segment: str
) -> tuple[Manifest, VerifierKey]:
    """Verify a manifest's signature with trusted keys and read it."""
    try:
        parsed, verified = open_note(note, keys)
        manifest = parse_manifest_text(parsed.text)
    except (MalformedNote, NoteNotVerified) as error:
        raise SegmentInvalid(segment, f"its manifest does not verify ({error.detail})") from None
    return manifest, verified[0]


def manifest_range_root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 9162 root of the segment's own leaves (a tree of just this range)."""
    return merkle.root(leaves)
