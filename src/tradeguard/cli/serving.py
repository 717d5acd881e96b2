"""`tradeguard serve`: prepare the data dir, optionally seed the demo, then serve over TLS."""

from __future__ import annotations

import asyncio

from tradeguard.cli.bootstrap import initialize
from tradeguard.cli.common import console, fail
from tradeguard.cli.demo import DemoCredential, seed_demo
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import TradeguardError
from tradeguard.web.server import serve


async def _prepare(settings: Settings, *, demo: bool) -> list[DemoCredential]:
    clock = SystemClock()
    await initialize(settings, clock=clock)
    return await seed_demo(settings, clock=clock) if demo else []


def _show_credentials(credentials: list[DemoCredential]) -> None:
    # Plain lines, never a table: a narrow terminal must not truncate a password.
    console.print("[bold]Demo users[/] (passwords are shown this once; save them now):")
    width = max(len(c.username) for c in credentials)
    for cred in credentials:
        console.print(
            f"  {cred.username:<{width}}  {cred.role.value:<10}  {cred.email}  "
            f"password: {cred.password}",
            markup=False,
        )


def serve_platform(settings: Settings, *, demo: bool) -> None:
    try:
        credentials = asyncio.run(_prepare(settings, demo=demo))
    except TradeguardError as exc:
        fail(exc.detail)
    if credentials:
        _show_credentials(credentials)
    elif demo:
        console.print("demo workspace already seeded; its passwords were shown when it was made")
    console.print(
        f"tradeguard serving on [bold]https://{settings.host}:{settings.port}[/] "
        "(TLS only; Ctrl+C stops)"
    )
    try:
        serve(settings)
    except TradeguardError as exc:
        fail(exc.detail)
