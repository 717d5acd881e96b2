"""What `tradeguard keys` and `tradeguard vault` print and do alike for a key table: the
status listing, usage counts, the rewrap with its progress bar, and retirement."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.cli.common import console
from tradeguard.core.clock import ns_to_iso
from tradeguard.crypto.catalogue import index_locations_of
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.service import KeyManagement, RewrapBatch
from tradeguard.crypto.tasks import RewrapRun, rewrap_class
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party

Sessions = async_sessionmaker[AsyncSession]


async def print_status(management: KeyManagement, sessions: Sessions) -> None:
    """Every key version with its state and last usage count, then wrapped keys per KEK."""
    async with unit_of_work(sessions) as session:
        rows = await management.status(session)
        counts = await management.kek_counts(session)
    console.print(
        f"{'class':20} {'kind':6} {'ver':>4} {'state':12} {'activates':30} {'usage':>8}  kek"
    )
    for row in rows:
        usage = "-" if row.usage_count is None else str(row.usage_count)
        console.print(
            f"{row.data_class.value:20} {row.kind:6} {row.version:>4} {row.state:12} "
            f"{ns_to_iso(row.activates_ns):30} {usage:>8}  {row.kek_id or '-'}"
        )
    console.print("wrapped keys per key-encrypting key:")
    for kek, count in sorted(counts.items()):
        console.print(f"  {count:>5}  {kek}")


@contextmanager
def batch_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over `total` values (unknown if 0); yields what advances it."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=not sys.stdout.isatty(),
    ) as progress:
        task = progress.add_task(label, total=total or None)
        yield lambda amount: progress.advance(task, amount)


async def count_usage(
    management: KeyManagement, sessions: Sessions, classes: Sequence[DataClass], *, actor: Party
) -> None:
    """Count the stored values per version of each class, recorded with the count."""
    async with unit_of_work(sessions) as session:
        for data_class in classes:
            counts = await management.count_usage(session, data_class, actor=actor)
            shown = ", ".join(f"v{v}: {n}" for v, n in sorted(counts.items())) or "no values"
            console.print(f"{data_class.value:20} {shown}")
            if not index_locations_of(data_class, management.keyring.indexes):
                continue  # no blind-index column of this class to count
            indexes = await management.count_index_usage(session, data_class, actor=actor)
            if indexes:
                shown = ", ".join(f"v{v}: {n}" for v, n in sorted(indexes.items()))
                console.print(f"{data_class.value:20} index {shown}")


async def retire_unused(
    management: KeyManagement,
    sessions: Sessions,
    classes: Sequence[DataClass],
    *,
    actor: Party,
    say_none: bool = False,
) -> dict[DataClass, list[int]]:
    """Retire the older versions (data and blind-index keys) no stored value uses, in one
    transaction."""
    retired: dict[DataClass, list[int]] = {}
    index_retired: dict[DataClass, list[int]] = {}
    async with unit_of_work(sessions) as session:
        for data_class in classes:
            retired[data_class] = await management.retire_unused(session, data_class, actor=actor)
            index_retired[data_class] = await management.retire_unused_index(
                session, data_class, actor=actor
            )
    for data_class, versions in index_retired.items():
        if versions:
            console.print(
                f"{data_class.value:20} retired index " + ", ".join(f"v{v}" for v in versions)
            )
    for data_class, versions in retired.items():
        if versions:
            console.print(f"{data_class.value:20} retired " + ", ".join(f"v{v}" for v in versions))
        elif say_none:
            console.print(
                f"{data_class.value:20} no version retired (still in use, the one encrypting, "
                "or its successor is within the grace)"
            )
    return retired


async def rewrap_with_progress(
    management: KeyManagement,
    sessions: Sessions,
    data_class: DataClass,
    *,
    actor: Party,
    batch_size: int,
    pause_ms: int,
    max_batches: int | None = None,
) -> RewrapRun:
    """Re-encrypt every stored value of a class under its encrypting version, in committed
    batches, with a progress bar over the values not under it yet."""
    async with unit_of_work(sessions) as session:
        counts = await management.usage(session, data_class)
    target = management.keyring.encrypting_version(data_class)
    pending = sum(n for v, n in counts.items() if v != target)
    with batch_progress(f"rewrap {data_class.value} -> v{target}", pending) as advance:

        def on_batch(batch: RewrapBatch) -> None:
            advance(batch.rewrapped + batch.unreadable)

        run = await rewrap_class(
            management,
            sessions,
            data_class,
            actor=actor,
            batch_size=batch_size,
            pause_seconds=pause_ms / 1000,
            max_batches=max_batches,
            on_batch=on_batch,
        )
    console.print(
        f"{data_class.value}: {run.rewrapped} values re-encrypted under v{target} "
        f"in {run.batches} batches"
    )
    if run.unreadable:
        console.print(
            f"[yellow]{run.unreadable} values did not decrypt and were left as they are[/]"
        )
    return run
