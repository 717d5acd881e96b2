"""The rotation of a key table's key-encrypting key (PCI DSS 3.6/3.7), shared by `tradeguard
keys rotate-master` (the platform's keys) and `tradeguard vault rotate-master` (the card
vault's): the options, the checks made before anything changes, the new local master key
made once (a rerun takes the same file), the re-wrap with a progress bar, and the new key
file put in place when no key is left under the old one.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.cli.common import EXIT_USAGE, console, fail, operator_party, run_async
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.errors import ConfigurationError, TradeguardError
from tradeguard.crypto.providers import (
    KekProvider,
    LocalFileKek,
    create_master_key_file,
    read_master_key,
)
from tradeguard.crypto.service import KeyManagement
from tradeguard.crypto.tasks import (
    AWS_KMS,
    LOCAL,
    KekSetup,
    connect_kms,
    kek_provider_from,
    kms_settings_from,
    retired_local_keks,
    retired_master_key_paths,
    rotate_master_key,
    unwrap_only_providers_from,
)

Sessions = async_sessionmaker[AsyncSession]
# Opens the key service on a key table with `current` wrapping and the others unwrapping.
OpenKeys = Callable[
    [KekProvider, list[KekProvider]], AbstractAsyncContextManager[tuple[KeyManagement, Sessions]]
]

ToOption = typer.Option(
    "--to",
    help="Where the new key-encrypting key is: local (a new master key file) "
    "or aws-kms (the KMS key of --key-id).",
)
KeyIdOption = typer.Option(
    help="With --to aws-kms: the KMS key's ARN, id or alias/ name (default: the configured one)."
)
RegionOption = typer.Option(
    help="With --to aws-kms: the AWS region (default TRADEGUARD_AWS_KMS_REGION)."
)
EndpointOption = typer.Option(
    help="With --to aws-kms: a KMS endpoint (VPC endpoint; default "
    "TRADEGUARD_AWS_KMS_ENDPOINT_URL)."
)
To = Annotated[str, ToOption]
KeyId = Annotated[str | None, KeyIdOption]
Region = Annotated[str | None, RegionOption]
EndpointUrl = Annotated[str | None, EndpointOption]


def _copy_owner_only(source: Path, target: Path) -> None:
    """A byte-for-byte copy of a key file, mode 0600, never over an existing file."""
    data = source.read_bytes()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _new_local_target(kek: KekSetup, current: KekProvider) -> LocalFileKek:
    """The new master key (<key file>.next), made once: a rerun takes the same one. The
    current file is first copied to a dated backup (0600)."""
    pending = kek.pending_master_key
    if pending.exists():
        return LocalFileKek(read_master_key(pending, passphrase=kek.passphrase))
    fingerprint = current.kek_id.removeprefix("local:")
    if not any(p.name.endswith("-" + fingerprint) for p in retired_master_key_paths(kek)):
        stamp = ns_to_iso(SystemClock().now_ns())[:19].replace("-", "").replace(":", "")
        backup = kek.master_key.with_name(f"{kek.master_key.name}.retired-{stamp}-{fingerprint}")
        _copy_owner_only(kek.master_key, backup)
    create_master_key_file(pending, secrets.token_bytes(32), kek.passphrase)
    return LocalFileKek(read_master_key(pending, passphrase=kek.passphrase))


def rotate_key_encrypting_key(
    settings: Settings,
    kek: KekSetup,
    *,
    to: str,
    key_id: str | None,
    region: str | None,
    endpoint_url: str | None,
    database_url: str,
    open_keys: OpenKeys,
    restart: str,
) -> None:
    """Check the options and the KEKs (refused: nothing made, nothing changed), re-wrap
    every key of the table, and put a new local master key in place once none is left
    under the old one."""
    target_kind = to.strip().lower()
    if target_kind not in (LOCAL, AWS_KMS):
        fail(f"--to {to!r} is not known: use {LOCAL} or {AWS_KMS}", code=EXIT_USAGE)
    if target_kind == LOCAL and (key_id or region or endpoint_url):
        fail("--key-id, --region and --endpoint-url go with --to aws-kms", code=EXIT_USAGE)
    try:
        current = kek_provider_from(settings, create=False, kek=kek)
        kms_target: KekProvider | None = None
        if target_kind == AWS_KMS:
            kms = kms_settings_from(
                settings, key_id=key_id, region=region, endpoint_url=endpoint_url, kek=kek
            )
            kms_target = connect_kms(kms)
        elif current.legacy is None:
            fail(
                "the current key-encrypting key is a KMS key: moving back to a local master "
                "key file is not supported",
                code=EXIT_USAGE,
            )
        also = [*unwrap_only_providers_from(settings, current, kek=kek), *retired_local_keks(kek)]
    except TradeguardError as exc:
        fail(exc.detail, code=EXIT_USAGE if isinstance(exc, ConfigurationError) else 1)

    async def main() -> KekProvider:
        known = also if kms_target is None else [*also, kms_target]
        async with open_keys(current, known) as (management, sessions):
            keyring = management.keyring
            async with sessions() as session:
                await keyring.refresh(session)
                # Refused before anything is made (no new key file, no row, no event).
                await management.check_no_legacy_values(session)
            # The new local key only now: made once, a rerun takes the same file.
            target = kms_target or _new_local_target(kek, current)
            keyring.add_provider(target)
            async with sessions() as session:
                await keyring.refresh(session)
            await _rewrap_keys(management, sessions, target, kek)
            return target

    target = run_async(main(), database_url=database_url)
    if target_kind == LOCAL:
        pending = kek.pending_master_key
        if pending.exists():
            pending.replace(kek.master_key)
            console.print(
                f"new master key in place at {kek.master_key}; the old one is kept as "
                f"{kek.master_key}.retired-*: it opens backups made before now (keep it, or "
                "its shares, as long as those backups)"
            )
        console.print(f"restart {restart} now")
    else:
        console.print(
            f"every key is now wrapped under {target.kek_id}: set {kek.provider_setting}=aws-kms "
            f"and {kek.kms_key_setting}, and restart {restart}; keep {kek.master_key} (or its "
            "shares) as long as the backups made before now"
        )


async def _rewrap_keys(
    management: KeyManagement, sessions: Sessions, target: KekProvider, kek: KekSetup
) -> None:
    with Progress(
        TextColumn(f"re-wrap keys under {target.kek_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=not sys.stdout.isatty(),
    ) as progress:
        task = progress.add_task("rotate-master", total=None)

        def started(total: int) -> None:
            progress.update(task, total=total)

        def advanced(_: str) -> None:
            progress.advance(task)

        run = await rotate_master_key(
            management,
            sessions,
            target,
            actor=operator_party(),
            on_start=started,
            on_key=advanced,
        )
    console.print(f"{run.rewrapped} of {run.pending} keys re-wrapped under {target.kek_id}")
    if not run.finished:
        left = ", ".join(f"{n} under {kek_id}" for kek_id, n in sorted(run.remaining.items()))
        fail(
            f"keys made while this ran are still under the old key-encrypting key ({left})",
            hint=f"run `{kek.rotate_command}` again with the same options",
        )
