"""Time-sortable identifiers: UUIDv7 (RFC 9562 section 5.7) drawn from the injectable clock."""

from __future__ import annotations

import secrets
import threading
import uuid

from tradeguard.core.clock import Clock

_UNIX_TS_MS_BITS = 48
_RAND_A_BITS = 12
_RAND_B_BITS = 62


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

    def new(self) -> uuid.UUID:
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
                self._counter = secrets.randbits(_RAND_A_BITS - 1)
            self._last_ms = ms
            counter = self._counter
        value = (ms & ((1 << _UNIX_TS_MS_BITS) - 1)) << 80
        value |= 0x7 << 76  # version
        value |= counter << 64
        value |= 0b10 << 62  # variant
        value |= secrets.randbits(_RAND_B_BITS)
        return uuid.UUID(int=value)

    def new_str(self) -> str:
        return str(self.new())
