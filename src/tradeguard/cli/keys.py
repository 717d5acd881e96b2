"""`tradeguard keys`: signing-key rotation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tradeguard.cli.common import DataDirOption, console, fail, settings_from
from tradeguard.identity.keystore import (
    KEY_WATCH_INTERVAL_SECONDS,
    load_or_create_ring,
    rotate_ring,
)

app = typer.Typer(help="Key management.", no_args_is_help=True)


@app.command("rotate-jwt")
def rotate_jwt(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Make a new access-token signing key; the old one keeps verifying tokens it signed.

    Running servers that use this data directory watch its key files: they sign with the new
    key within about a second, without a restart, and go on accepting tokens the old key
    signed until those expire.
    """
    settings = settings_from(data_dir)
    if not settings.data_dir.exists():
        fail("no data directory here", hint="run `tradeguard init` (or pass --data-dir)", code=2)
    before = load_or_create_ring(settings.jwt_keys_dir).active.kid
    ring = rotate_ring(settings.jwt_keys_dir)
    console.print(f"active key   {ring.active.kid}")
    console.print(f"retired key  {before} (still verifies; published in /.well-known/jwks.json)")
    console.print(
        f"running servers on {settings.jwt_keys_dir} sign with the new key within "
        f"about {KEY_WATCH_INTERVAL_SECONDS:g} s; no restart needed"
    )
