"""Background-loop pacing with a graceful stop (a pass is never cut off mid-query)."""

from __future__ import annotations

import asyncio
import contextlib


async def pause(stop: asyncio.Event | None, seconds: float) -> bool:
    """Sleep up to `seconds`, waking early when `stop` is set; True when the loop should end."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()
