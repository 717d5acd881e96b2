"""The expiry reminder worker: emails owners 7 days and 1 day before a key expires."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tradeguard.apikeys.container import ApiKeyServices
from tradeguard.db.engine import unit_of_work

COMPONENT = "apikeys-reminders"
logger = logging.getLogger("tradeguard.apikeys")


async def run_reminders_once(services: ApiKeyServices) -> int:
    async with unit_of_work(services.keys.sessions) as session:
        return await services.keys.send_reminders(session)


async def reminder_loop(services: ApiKeyServices, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_reminders_once(services)
        except Exception as exc:  # the next pass tries again
            logger.warning("API key reminders failed (%s)", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=services.reminder_seconds)
