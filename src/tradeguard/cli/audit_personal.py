"""`tradeguard audit forget`: crypto-shred one subject's personal data in the audit ledger.

The subject's data keys are destroyed and a ledger event records who did it and why; every
event keeps its bytes and its place in the chain, so `tradeguard audit verify` still passes,
and the subject's personal fields read as erased from then on. There is no undo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tradeguard.cli.bootstrap import database_missing
from tradeguard.cli.common import (
    EXIT_USAGE,
    DataDirOption,
    console,
    fail,
    operator_party,
    run_async,
    settings_from,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.errors import InvalidInput
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.ledger.personal.forget import Forgotten, forget_subject
from tradeguard.ledger.personal.repository import purge_old_versions
from tradeguard.ledger.personal.subjects import forget_reason, parse_subject
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger


async def _forget(settings: Settings, subject: Party, reason: str) -> Forgotten:
    engine = create_engine(settings.main_database_url)
    try:
        clock = SystemClock()
        # Forgetting writes no personal data, so this ledger needs no keyring.
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        async with unit_of_work(session_factory(engine)) as session:
            forgotten = await forget_subject(
                session,
                ledger=ledger,
                subject=subject,
                actor=operator_party(),
                reason=reason,
                now_ns=clock.now_ns(),
            )
        await purge_old_versions(engine)
        await LedgerSequencer(engine, clock=clock).drain()
        return forgotten
    finally:
        await engine.dispose()


def forget_command(
    subject: Annotated[
        str,
        typer.Argument(
            help="Whose personal data: user:<id>, visitors:<YYYY-MM>, or a bare user id.",
            show_default=False,
        ),
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="Why (e.g. the erasure request's reference). Recorded in the ledger for "
            "good: write no personal data here.",
            show_default=False,
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Destroy a subject's data keys: their personal data in the audit ledger is erased for
    good (the ledger's copy only: operational tables and server logs keep their own, under
    their own retention)."""
    settings = settings_from(data_dir)
    if database_missing(settings):
        fail(
            "no tradeguard database here",
            hint="run `tradeguard init` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    try:
        party = parse_subject(subject)
        why = forget_reason(reason)
    except InvalidInput as exc:
        fail(exc.detail, code=EXIT_USAGE)
    name = f"{party.kind}:{party.id}"
    if not yes and not typer.confirm(
        f"Destroy the data keys of {name}? Their personal data in the audit ledger becomes "
        "unreadable for good (the ledger's copy only: sessions, devices and server logs keep "
        "theirs).",
        err=True,
    ):
        fail("nothing was forgotten", code=EXIT_USAGE)
    forgotten = run_async(_forget(settings, party, why), database_url=settings.main_database_url)
    if as_json:
        print(
            json.dumps(
                {
                    "subject": forgotten.subject,
                    "destroyed_keys": list(forgotten.destroyed_keys),
                    "event_id": forgotten.event_id,
                },
                indent=2,
            )
        )
        return
    keys = len(forgotten.destroyed_keys)
    console.print(
        f"[green]forgotten[/]: {forgotten.subject}; {keys} data key{'' if keys == 1 else 's'} "
        f"destroyed; recorded as ledger event {forgotten.event_id}"
    )
