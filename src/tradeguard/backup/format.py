"""The encrypted backup file: a zstd stream sealed in AES-256-GCM chunks (NIST SP 800-38D)
with the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár: "Online
Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015, section 7).

    file   = header | chunk ...
    header = "TGBACKUP" (8) | format version (1) | backup id (16) | nonce prefix (7)
    chunk  = ciphertext length (4, big-endian) | AES-256-GCM ciphertext and 16-byte tag

Each backup has a fresh random 256-bit data key and a random nonce prefix. Chunk i is
sealed with the nonce `prefix | i (4 bytes) | last (1 byte: 1 on the final chunk, else 0)`
and the associated data `label | header | i (8 bytes) | last (1 byte)`. So a chunk moved to
another position, dropped, duplicated, or taken from another backup fails its tag; the
stream cut at a chunk boundary fails too, since the chunk that is now final was not sealed
as final. The chunk lengths are in clear: a reader without the key can check the framing,
and the file's SHA-256 (in the signed manifest) covers every byte.

Pure: no database, no settings, no files opened here (callers pass open handles).
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, Final, cast

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tradeguard.backup.errors import BackupRejected, RejectReason

MAGIC: Final = b"TGBACKUP"
FORMAT_VERSION: Final = 1
ID_BYTES: Final = 16
PREFIX_BYTES: Final = 7
HEADER: Final = struct.Struct(">8sB16s7s")
HEADER_BYTES: Final = HEADER.size  # 32
LENGTH: Final = struct.Struct(">I")
TAG_BYTES: Final = 16
KEY_BYTES: Final = 32
# 1 MiB of compressed bytes per chunk: large enough that the 20 bytes of framing and tag
# are lost in the noise, small enough that a reader holds little in memory.
CHUNK_BYTES: Final = 1 << 20
MAX_CHUNK_BYTES: Final = 64 << 20
MAX_CHUNKS: Final = 2**32 - 1  # the nonce's counter is 4 bytes
ZSTD_LEVEL: Final = 3
READ_BYTES: Final = 1 << 20
_AAD_LABEL: Final = b"tradeguard backup chunk v1"
_INDEX: Final = struct.Struct(">QB")

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class FileHeader:
    backup_id: bytes
    nonce_prefix: bytes

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, FORMAT_VERSION, self.backup_id, self.nonce_prefix)

    @classmethod
    def new(cls) -> FileHeader:
        return cls(secrets.token_bytes(ID_BYTES), secrets.token_bytes(PREFIX_BYTES))

    @classmethod
    def parse(cls, raw: bytes) -> FileHeader:
        if len(raw) < HEADER_BYTES or raw[: len(MAGIC)] != MAGIC:
            raise BackupRejected(RejectReason.NOT_A_BACKUP, "not a tradeguard backup file")
        _, version, backup_id, prefix = HEADER.unpack_from(raw)
        if version != FORMAT_VERSION:
            raise BackupRejected(
                RejectReason.NOT_A_BACKUP, f"backup file format {version} is not supported"
            )
        return cls(backup_id, prefix)


def chunk_nonce(header: FileHeader, index: int, last: bool) -> bytes:
    return header.nonce_prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def chunk_associated_data(header: FileHeader, index: int, last: bool) -> bytes:
    return _AAD_LABEL + header.pack() + _INDEX.pack(index, 1 if last else 0)


@dataclass(frozen=True, slots=True)
class SealedStats:
    """What the manifest records about a written backup file."""

    plaintext_bytes: int
    compressed_bytes: int
    ciphertext_bytes: int
    chunk_count: int
    ciphertext_sha256: str


class _ChunkSealer:
    """Receives the compressed stream (as zstd's output file), seals and writes full chunks.

    A chunk is written only once more bytes follow it, so the one left at the end is known
    to be the last and is sealed as such by `finish`.
    """

    def __init__(self, out: BinaryIO, key: bytes, header: FileHeader, chunk_bytes: int) -> None:
        self._out = out
        self._chunk_bytes = chunk_bytes
        self._aead = AESGCM(key)
        self._header = header
        self._pending = bytearray()
        self._hash = hashlib.sha256()
        self.index = 0
        self.compressed = 0
        self.written = 0
        self._emit(header.pack())

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self._hash.update(data)
        self.written += len(data)

    def _seal(self, plain: bytes, last: bool) -> None:
        if self.index > MAX_CHUNKS:
            raise ValueError("a backup holds at most 2^32 - 1 chunks")
        sealed = self._aead.encrypt(
            chunk_nonce(self._header, self.index, last),
            plain,
            chunk_associated_data(self._header, self.index, last),
        )
        self._emit(LENGTH.pack(len(sealed)) + sealed)
        self.index += 1

    def write(self, data: bytes) -> int:
        self._pending += data
        self.compressed += len(data)
        size = self._chunk_bytes
        while len(self._pending) > size:
            self._seal(bytes(self._pending[:size]), last=False)
            del self._pending[:size]
        return len(data)

    def finish(self) -> tuple[int, str]:
        self._seal(bytes(self._pending), last=True)
        self._pending.clear()
        return self.index, self._hash.hexdigest()


def seal_stream(
    source: BinaryIO | IO[bytes],
    out: BinaryIO,
    *,
    key: bytes,
    header: FileHeader,
    progress: Progress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> SealedStats:
    """Compress `source` (read to its end) and write it sealed to `out`, one block at a time."""
    if len(key) != KEY_BYTES:
        raise ValueError("a backup data key is 32 bytes")
    if not 1 <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError("a chunk holds 1 byte to 64 MiB")
    sealer = _ChunkSealer(out, key, header, chunk_bytes)
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    plaintext = 0
    with compressor.stream_writer(sealer, closefd=False) as writer:  # type: ignore[arg-type]
        while block := source.read(READ_BYTES):
            writer.write(block)
            plaintext += len(block)
            if progress is not None:
                progress(len(block))
        writer.flush(zstandard.FLUSH_FRAME)
    chunks, digest = sealer.finish()
    return SealedStats(plaintext, sealer.compressed, sealer.written, chunks, digest)


@dataclass(frozen=True, slots=True)
class Expected:
    """What the signed manifest says the file is."""

    backup_id: bytes
    chunk_bytes: int
    chunk_count: int
    ciphertext_bytes: int
    ciphertext_sha256: str


class ChunkReader:
    """Reads a backup file chunk by chunk against its manifest, hashing every byte.

    Without a key it checks the framing, the count, the size and the hash; with one it also
    authenticates and decrypts each chunk. Any mismatch raises BackupRejected naming it.
    """

    def __init__(
        self,
        handle: BinaryIO,
        expected: Expected,
        *,
        key: bytes | None,
        progress: Progress | None = None,
    ) -> None:
        self._handle = handle
        self._expected = expected
        self._aead = None if key is None else AESGCM(key)
        self._progress = progress
        self._hash = hashlib.sha256()
        self.read_bytes = 0

    def _read(self, size: int) -> bytes:
        data = self._handle.read(size)
        self._hash.update(data)
        self.read_bytes += len(data)
        if self._progress is not None:
            self._progress(len(data))
        return data

    def chunks(self) -> Iterator[bytes]:
        """The decrypted chunks in order (empty bytes for each chunk when there is no key)."""
        header = FileHeader.parse(self._read(HEADER_BYTES))
        if header.backup_id != self._expected.backup_id:
            raise BackupRejected(
                RejectReason.PAIR_MISMATCH,
                "the manifest belongs to another backup (backup ids differ)",
            )
        count = self._expected.chunk_count
        for index in range(count):
            last = index == count - 1
            raw_length = self._read(LENGTH.size)
            if len(raw_length) < LENGTH.size:
                raise BackupRejected(
                    RejectReason.TRUNCATED,
                    f"the file ends after {index} of {count} chunks (truncated or a chunk dropped)",
                )
            (length,) = LENGTH.unpack(raw_length)
            if not TAG_BYTES <= length <= self._expected.chunk_bytes + TAG_BYTES:
                raise BackupRejected(
                    RejectReason.MALFORMED_CHUNK, f"chunk {index} has an impossible length"
                )
            sealed = self._read(length)
            if len(sealed) < length:
                raise BackupRejected(
                    RejectReason.TRUNCATED, f"the file ends inside chunk {index} (truncated)"
                )
            if self._aead is None:
                yield b""
                continue
            try:
                yield self._aead.decrypt(
                    chunk_nonce(header, index, last),
                    sealed,
                    chunk_associated_data(header, index, last),
                )
            except InvalidTag:
                raise BackupRejected(
                    RejectReason.CHUNK_NOT_AUTHENTIC,
                    f"chunk {index} of {count} does not authenticate (altered, reordered, "
                    "from another backup, or the stream was cut)",
                ) from None
        if self._read(1):
            raise BackupRejected(
                RejectReason.TRAILING_DATA, "the file has bytes after its last chunk"
            )
        self._finish()

    def _finish(self) -> None:
        if self.read_bytes != self._expected.ciphertext_bytes:
            raise BackupRejected(
                RejectReason.SIZE_MISMATCH,
                f"the file is {self.read_bytes} bytes, the manifest says "
                f"{self._expected.ciphertext_bytes}",
            )
        if self._hash.hexdigest() != self._expected.ciphertext_sha256:
            raise BackupRejected(
                RejectReason.HASH_MISMATCH, "the file's SHA-256 differs from the manifest's"
            )


class _ChunkStream(io.RawIOBase):
    """The decrypted chunks as a readable stream (what the zstd reader pulls from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def drain(self) -> int:
        """Read every remaining chunk; how many bytes they held (unread by the consumer)."""
        left = len(self._buffer)
        self._buffer = b""
        for chunk in self._chunks:
            left += len(chunk)
        return left

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def open_stream(reader: ChunkReader, *, plaintext_bytes: int) -> Iterator[bytes]:
    """The decompressed contents, block by block, after every chunk authenticated in order.

    A block is handed out before later chunks are read (the stream is not held in memory),
    so a consumer must treat what it got as unconfirmed until the iterator ends cleanly. The
    final block is held back until every check has passed: a consumer that commits when its
    input is complete (pg_restore) never sees a complete input from a rejected file.
    """
    held: bytes | None = None
    for block in _decompressed(reader, plaintext_bytes=plaintext_bytes):
        if held is not None:
            yield held
        held = block
    if held is not None:
        yield held


def _decompressed(reader: ChunkReader, *, plaintext_bytes: int) -> Iterator[bytes]:
    decompressor = zstandard.ZstdDecompressor()
    source = _ChunkStream(reader.chunks())
    total = 0
    try:
        with decompressor.stream_reader(
            cast(IO[bytes], source), read_size=CHUNK_BYTES, closefd=False, read_across_frames=False
        ) as stream:
            while block := stream.read(READ_BYTES):
                total += len(block)
                if total > plaintext_bytes:
                    raise BackupRejected(
                        RejectReason.SIZE_MISMATCH,
                        "the contents are longer than the manifest says",
                    )
                yield block
    except zstandard.ZstdError:
        raise BackupRejected(
            RejectReason.DECOMPRESSION_FAILED, "the decrypted contents do not decompress"
        ) from None
    # The zstd frame ended: every chunk after it must still be read (and so authenticated
    # and hashed), and none may carry data.
    if source.drain():
        raise BackupRejected(
            RejectReason.DECOMPRESSION_FAILED, "data follows the end of the compressed stream"
        )
    if total != plaintext_bytes:
        raise BackupRejected(
            RejectReason.SIZE_MISMATCH,
            f"the contents are {total} bytes, the manifest says {plaintext_bytes}",
        )


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)
