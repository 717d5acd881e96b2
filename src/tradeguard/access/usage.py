"""When to record a staff member's use of a permission (IAC-4 access reviews).

The review asks "unused for N days?", so an hour of precision is plenty: each process writes
a (user, permission) pair at most once an hour, in the transaction of the check's own audit
event. Traders are never recorded, so the order path pays nothing.
"""

from __future__ import annotations

from tradeguard.core.clock import NS_PER_SECOND

USE_RESOLUTION_NS = 3600 * NS_PER_SECOND
MAX_REMEMBERED = 100_000


class PermissionUseTracker:
    """Per-process memory of the last recorded use of each (user, permission)."""

    def __init__(self, resolution_ns: int = USE_RESOLUTION_NS) -> None:
        self._resolution_ns = resolution_ns
        self._recorded: dict[tuple[str, str], int] = {}

    def due(self, user_id: str, permission: str, now_ns: int) -> bool:
        """True when this use should be written (and from now on counts as written)."""
        key = (user_id, permission)
        last = self._recorded.get(key)
        if last is not None and now_ns - last < self._resolution_ns:
            return False
        if len(self._recorded) >= MAX_REMEMBERED:
            self._recorded.clear()
        self._recorded[key] = now_ns
        return True

    def forget(self, user_id: str, permission: str) -> None:
        """The write did not commit: try again on the next use."""
        self._recorded.pop((user_id, permission), None)
