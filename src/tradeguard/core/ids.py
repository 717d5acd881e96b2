"""Time-sortable identifiers: UUIDv7 (RFC 9562 section 5.7) drawn from the injectable clock."""

from __future__ import annotations

import os
import threading
import uuid
import weakref

from tradeguard.core.clock import Clock

_UNIX_TS_MS_BITS = 48
_RAND_A_BITS = 12
_RAND_B_BITS = 62
# Random bits come from the operating system's CSPRNG, read a pool at a time: one system
# call per 512 ids instead of two per id.
_POOL_BYTES = 4096
_GENERATORS: weakref.WeakSet[IdGenerator] = weakref.WeakSet()


class IdGenerator:
    """UUIDv7 generator whose timestamp comes from the given clock.

    Within one millisecond the 12-bit rand_a field is used as a counter (RFC 9562 section
    6.2, method 1) so ids made by one generator are strictly increasing.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0
        self._pool = b""
        self._used = 0
        _GENERATORS.add(self)

    def _random(self, bits: int) -> int:
        """`bits` (at most 64) random bits from the pool (call with the lock held)."""
        if self._used + 8 > len(self._pool):
            self._pool, self._used = os.urandom(_POOL_BYTES), 0
        value = int.from_bytes(self._pool[self._used : self._used + 8], "big")
        self._used += 8
        return value >> (64 - bits)

    def _forget_pool(self) -> None:
        # A forked child must never draw the bits its parent draws.
        self._pool, self._used = b"", 0

    def new(self) -> uuid.UUID:
        return uuid.UUID(int=self._new_int())

    def new_str(self) -> str:
        # The canonical 8-4-4-4-12 form, formatted without building a UUID object first.
        text = f"{self._new_int():032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def _new_int(self) -> int:
        ms = self._clock.now_ns() // 1_000_000
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                self._counter += 1
                if self._counter >= 1 << _RAND_A_BITS:
                    # Counter exhausted: borrow the next millisecond rather than repeat.
                    ms += 1
                    self._counter = 0
            else:
                self._counter = self._random(_RAND_A_BITS - 1)
            self._last_ms = ms
            counter = self._counter
            rand_b = self._random(_RAND_B_BITS)
        value = (ms & ((1 << _UNIX_TS_MS_BITS) - 1)) << 80
        value |= 0x7 << 76  # version
        value |= counter << 64
        value |= 0b10 << 62  # variant
        return value | rand_b


def _after_fork_in_child() -> None:
    for generator in list(_GENERATORS):
        generator._forget_pool()


os.register_at_fork(after_in_child=_after_fork_in_child)
