"""`tradeguard serve`: bind the port, prepare the data dir, optionally seed the demo, serve."""

from __future__ import annotations

from uvicorn.config import STARTUP_FAILURE

from tradeguard.cli.bootstrap import initialize
from tradeguard.cli.common import console, fail, fail_on_error, run_async
from tradeguard.cli.demo import DemoCredential, seed_demo
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import TradeguardError
from tradeguard.identity.authenticator_metadata import default_metadata_file, read_catalogue
from tradeguard.web.server import bind_listeners, serve


async def _prepare(settings: Settings, *, demo: bool) -> list[DemoCredential]:
    # A staff authenticator catalogue that cannot be read stops the start in one line.
    read_catalogue(settings.webauthn_staff_metadata_file or default_metadata_file())
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


def _listen_address(settings: Settings) -> str:
    if settings.host in {"0.0.0.0", "::", ""}:  # noqa: S104 - naming the wildcard, not binding
        # A wildcard is no address to open: name one that works, and say what it means.
        return f"https://localhost:{settings.port} (all addresses)"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"https://{host}:{settings.port}"


def serve_platform(settings: Settings, *, demo: bool) -> None:
    # The port first: when it is taken, nothing is migrated, seeded or printed, and the one
    # line says so (instead of a "serving on" line followed by a failure).
    try:
        sockets = bind_listeners(settings.host, settings.port)
    except TradeguardError as exc:
        fail_on_error(exc)
    try:
        credentials = run_async(
            _prepare(settings, demo=demo), database_url=settings.main_database_url
        )
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if credentials:
        _show_credentials(credentials)
    elif demo:
        console.print(
            "demo workspace already seeded; its passwords were shown when it was made "
            "(forgot them? reset one through `tradeguard dev mailbox`, or stop the server, "
            f"delete {settings.data_dir} and run it again for a fresh demo)"
        )

    def announce() -> None:
        console.print(
            f"tradeguard serving on [bold]{_listen_address(settings)}[/] "
            f"(public origin {settings.public_origin}; TLS only; Ctrl+C stops)"
        )

    try:
        serve(settings, sockets=sockets, on_started=announce)
    except TradeguardError as exc:
        fail_on_error(exc)
    except SystemExit as exc:
        # uvicorn exits with STARTUP_FAILURE when the app's start-up fails; the reason is in
        # the log lines above, so the last line only says that it did not start.
        if exc.code == STARTUP_FAILURE:
            fail("the platform did not start; the reason is logged above")
        raise
