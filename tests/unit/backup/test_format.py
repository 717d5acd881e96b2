"""The backup file format on its own: sealed streams open to what went in, and any change
to the file (a flipped byte, a dropped, swapped or spliced chunk, a cut, extra bytes) is
refused with a reason, with the key and without it."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeguard.backup.errors import BackupRefused, BackupRejected, RejectReason
from tradeguard.backup.format import (
    HEADER_BYTES,
    LENGTH,
    ChunkReader,
    Expected,
    FileHeader,
    SealedStats,
    new_data_key,
    open_stream,
    seal_stream,
)
from tradeguard.backup.postgres import (
    ServerInfo,
    ToolVersion,
    check_dump_versions,
    check_restore_versions,
)

CHUNK = 64


def sealed(plain: bytes, chunk: int = CHUNK) -> tuple[bytes, bytes, FileHeader, SealedStats]:
    key, header, out = new_data_key(), FileHeader.new(), io.BytesIO()
    stats = seal_stream(io.BytesIO(plain), out, key=key, header=header, chunk_bytes=chunk)
    return out.getvalue(), key, header, stats


def expected(header: FileHeader, stats: SealedStats, chunk: int = CHUNK) -> Expected:
    return Expected(
        header.backup_id, chunk, stats.chunk_count, stats.ciphertext_bytes, stats.ciphertext_sha256
    )


def opened(blob: bytes, key: bytes | None, exp: Expected, size: int) -> bytes:
    reader = ChunkReader(io.BytesIO(blob), exp, key=key)
    if key is None:
        return b"".join(reader.chunks())
    return b"".join(open_stream(reader, plaintext_bytes=size))


def chunk_offsets(blob: bytes) -> list[tuple[int, int]]:
    """(start, end) of every chunk record (length prefix included)."""
    spans, at = [], HEADER_BYTES
    while at < len(blob):
        (length,) = LENGTH.unpack_from(blob, at)
        spans.append((at, at + LENGTH.size + length))
        at += LENGTH.size + length
    return spans


class TestRoundTrip:
    @settings(max_examples=40, deadline=None)
    @given(plain=st.binary(max_size=2000), chunk=st.integers(min_value=1, max_value=300))
    def test_any_contents_open_to_what_went_in(self, plain: bytes, chunk: int) -> None:
        blob, key, header, stats = sealed(plain, chunk)
        exp = expected(header, stats, chunk)
        assert opened(blob, key, exp, len(plain)) == plain
        assert opened(blob, None, exp, len(plain)) == b""  # keyless: structure only
        assert stats.plaintext_bytes == len(plain)
        assert stats.ciphertext_bytes == len(blob)

    def test_an_empty_database_still_has_one_final_chunk(self) -> None:
        _, _, _, stats = sealed(b"")
        assert stats.chunk_count == 1

    def test_the_file_holds_no_cleartext(self) -> None:
        secret = b"078-05-1120 alice@example.com " * 200
        blob, *_ = sealed(secret)
        assert b"078-05-1120" not in blob
        assert b"alice@example.com" not in blob


def incompressible(n: int) -> bytes:
    return os.urandom(n)


class TestTampering:
    PLAIN = incompressible(1000)

    def setup_method(self) -> None:
        self.blob, self.key, self.header, self.stats = sealed(self.PLAIN)
        self.exp = expected(self.header, self.stats)
        self.spans = chunk_offsets(self.blob)
        assert len(self.spans) == self.stats.chunk_count > 5

    def refused(self, blob: bytes, *, key: bytes | None) -> RejectReason:
        with pytest.raises(BackupRejected) as caught:
            opened(blob, key, self.exp, len(self.PLAIN))
        return caught.value.reason

    @settings(max_examples=60, deadline=None)
    @given(data=st.data())
    def test_any_flipped_bit_is_refused_with_and_without_the_key(self, data: st.DataObject) -> None:
        position = data.draw(st.integers(min_value=0, max_value=len(self.blob) - 1))
        bit = data.draw(st.integers(min_value=0, max_value=7))
        blob = bytearray(self.blob)
        blob[position] ^= 1 << bit
        self.refused(bytes(blob), key=self.key)
        self.refused(bytes(blob), key=None)

    def test_a_dropped_chunk_is_refused(self) -> None:
        start, end = self.spans[2]
        blob = self.blob[:start] + self.blob[end:]
        assert self.refused(blob, key=self.key) is RejectReason.CHUNK_NOT_AUTHENTIC
        assert self.refused(blob, key=None) in {
            RejectReason.TRUNCATED,
            RejectReason.MALFORMED_CHUNK,
        }

    def test_swapped_chunks_are_refused(self) -> None:
        (a0, a1), (b0, b1) = self.spans[1], self.spans[2]
        blob = self.blob[:a0] + self.blob[b0:b1] + self.blob[a0:a1] + self.blob[b1:]
        assert self.refused(blob, key=self.key) is RejectReason.CHUNK_NOT_AUTHENTIC
        assert self.refused(blob, key=None) is RejectReason.HASH_MISMATCH

    def test_a_stream_cut_at_a_chunk_boundary_is_refused_even_with_a_matching_manifest(
        self,
    ) -> None:
        start, _ = self.spans[-1]
        blob = self.blob[:start]
        assert self.refused(blob, key=self.key) is RejectReason.TRUNCATED
        # A manifest rewritten to match the cut file still fails: the chunk that is now last
        # was not sealed as the last one.
        cut = Expected(
            self.header.backup_id, CHUNK, self.stats.chunk_count - 1, len(blob), "0" * 64
        )
        with pytest.raises(BackupRejected) as caught:
            b"".join(
                open_stream(ChunkReader(io.BytesIO(blob), cut, key=self.key), plaintext_bytes=0)
            )
        assert caught.value.reason is RejectReason.CHUNK_NOT_AUTHENTIC

    def test_a_chunk_spliced_from_another_backup_is_refused(self) -> None:
        other, *_ = sealed(self.PLAIN)
        start, end = self.spans[3]
        blob = self.blob[:start] + other[start:end] + self.blob[end:]
        assert len(blob) == len(self.blob)
        assert self.refused(blob, key=self.key) is RejectReason.CHUNK_NOT_AUTHENTIC
        assert self.refused(blob, key=None) is RejectReason.HASH_MISMATCH

    def test_bytes_after_the_last_chunk_are_refused(self) -> None:
        assert self.refused(self.blob + b"\x00", key=self.key) is RejectReason.TRAILING_DATA

    def test_another_key_opens_nothing(self) -> None:
        assert self.refused(self.blob, key=new_data_key()) is RejectReason.CHUNK_NOT_AUTHENTIC

    def test_a_file_that_is_not_a_backup_is_named_so(self) -> None:
        assert self.refused(b"SQLite format 3\x00" * 4, key=None) is RejectReason.NOT_A_BACKUP


class TestPostgresVersions:
    def test_a_server_newer_than_pg_dump_is_refused_plainly(self) -> None:
        with pytest.raises(BackupRefused, match=r"server is version 16\.2 but pg_dump is 15\.20"):
            check_dump_versions(ServerInfo(16, "16.2", None, True), ToolVersion(15, "15.20"))
        check_dump_versions(ServerInfo(14, "14.9", None, True), ToolVersion(15, "15.20"))

    def test_a_restore_into_an_older_server_or_with_an_older_pg_restore_is_refused(self) -> None:
        with pytest.raises(BackupRefused, match=r"target runs 14\.9, which is older"):
            check_restore_versions(
                source_server=15,
                dumped_with=15,
                target=ServerInfo(14, "14.9", None, True),
                restore_tool=ToolVersion(15, "15.20"),
            )
        with pytest.raises(BackupRefused, match=r"written by pg_dump 16 but pg_restore is 15\.20"):
            check_restore_versions(
                source_server=15,
                dumped_with=16,
                target=ServerInfo(16, "16.1", None, True),
                restore_tool=ToolVersion(15, "15.20"),
            )
