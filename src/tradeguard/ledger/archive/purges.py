"""Whether the database's purge records are backed by the ledger itself (AUD-2).

A purge row (audit_archive_purge) is what lets events vanish from the database; the
triggers allow deleting events below it, so a row inserted by hand would hide a range of
events. Every purge the command made is matched by a chained `audit:archive:purged` event
naming its range and boundary hash, chained after the range, and carrying the purges before
it (`previous_purges`): the latest one is never itself purged, so it vouches for all of
them. A purge row that is not so vouched for is tampering.

Each purge event also carries the purge's authorization: a C2SP signed note by the ledger's
checkpoint signing key over the range, the boundary chain hash, the retention period and
the sealed segments' manifest hashes (`purge_statement`). Without the key, someone who can
write to the database can insert events and purge rows, but not an authorization: given the
log's public keys, a purge event without a valid one is tampering.

Time: the retention is judged by the ledger's own evidence, not the local clock alone. The
event chained just before a purge (the newest the ledger held when it purged) must be
recorded at least the retention period after the newest purged event; time may not run
backwards from that event to the purge's, nor from the purge's event to the next one
(beyond CLOCK_TOLERANCE_NS): an event dated years ahead just before a purge, or a purge
dated in the future of the events that follow it, is a clock set forward.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from tradeguard.core.clock import NS_PER_SECOND, ns_to_iso
from tradeguard.ledger.archive import repository
from tradeguard.ledger.archive.domain import (
    MIN_RETENTION_YEARS,
    ArchiveEvent,
    retention_cutoff_ns,
)
from tradeguard.ledger.tree.errors import MalformedNote, NoteNotVerified
from tradeguard.ledger.tree.note import NoteSigner, VerifierKey, open_note, sign_note

PURGE_STATEMENT: Final = "tradeguard audit purge v1"

# Events are chained in commit order, so one recorded a moment before the purge's event may
# be chained after it: this much earlier is not a clock running backwards.
CLOCK_TOLERANCE_NS = 10 * 60 * NS_PER_SECOND

EVIDENCE_RULE = (
    "the newest event the ledger held before the purge must be recorded at least the "
    "retention period after the newest event purged"
)


def evidence_supports(evidence_ns: int, newest_purged_ns: int, years: int) -> bool:
    """Whether an event recorded at `evidence_ns` shows the retention of every event
    recorded at or before `newest_purged_ns` has passed."""
    return newest_purged_ns < retention_cutoff_ns(evidence_ns, max(years, MIN_RETENTION_YEARS))


@dataclass(frozen=True, slots=True)
class PurgeProblem:
    """A purge the ledger does not support: its range and why."""

    first_seq: int
    through_seq: int
    reason: str

    @property
    def detail(self) -> str:
        return f"the purge of seq {self.first_seq}..{self.through_seq} {self.reason}"


def purge_statement(
    origin: str,
    *,
    first_seq: int,
    through_seq: int,
    boundary_chain_hash: str,
    retention_years: int,
    manifest_sha256: Sequence[str],
) -> str:
    """The text a purge's authorization signs (a signed note's text: lines, ending in a
    newline)."""
    return (
        f"{origin}\n{PURGE_STATEMENT}\n{first_seq}\n{through_seq}\n{boundary_chain_hash}\n"
        f"{retention_years}\n{','.join(manifest_sha256)}\n"
    )


def authorize_purge(statement: str, signer: NoteSigner) -> str:
    return sign_note(statement, signer)


@dataclass(frozen=True, slots=True)
class _PurgeEvent:
    seq: int
    occurred_ns: int
    first_seq: int
    through_seq: int
    boundary: str
    years: int
    previous: list[tuple[int, int, str]]
    manifests: list[str]
    authorization: str | None


def _parse(seq: int, body: bytes) -> _PurgeEvent | None:
    try:
        document = json.loads(body)
        data = document["data"]
        previous = [
            (int(p["first_seq"]), int(p["through_seq"]), str(p["boundary_chain_hash"]))
            for p in data.get("previous_purges", [])
        ]
        authorization = data.get("authorization")
        return _PurgeEvent(
            seq,
            int(document["ts"]),
            int(data["first_seq"]),
            int(data["through_seq"]),
            str(data["boundary_chain_hash"]),
            int(data.get("retention_years", MIN_RETENTION_YEARS)),
            previous,
            [str(segment["manifest_sha256"]) for segment in data.get("segments", [])],
            authorization if isinstance(authorization, str) else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _authorization_problem(
    event: _PurgeEvent, keys: Sequence[VerifierKey], origin: str
) -> PurgeProblem | None:
    """None when the event carries a purge authorization signed by one of the log's keys
    over exactly this purge."""
    where = f"(seq {event.seq})"
    if not keys:
        return PurgeProblem(
            event.first_seq,
            event.through_seq,
            f"{where} cannot be checked: there is no public key of the log to check its "
            "authorization with",
        )
    if event.authorization is None:
        return PurgeProblem(
            event.first_seq,
            event.through_seq,
            f"{where} carries no authorization signed by the log's key: the purge event was "
            "not made by a purge (tampering)",
        )
    expected = purge_statement(
        origin,
        first_seq=event.first_seq,
        through_seq=event.through_seq,
        boundary_chain_hash=event.boundary,
        retention_years=event.years,
        manifest_sha256=event.manifests,
    )
    try:
        note, _ = open_note(event.authorization, keys)
    except (MalformedNote, NoteNotVerified):
        return PurgeProblem(
            event.first_seq,
            event.through_seq,
            f"{where} carries an authorization that no key of the log signed (tampering)",
        )
    if note.text != expected:
        return PurgeProblem(
            event.first_seq,
            event.through_seq,
            f"{where} carries an authorization for another purge (tampering)",
        )
    return None


def _key(row: Any) -> tuple[int, int, str]:
    return int(row.first_seq), int(row.through_seq), bytes(row.boundary_chain_hash).hex()


async def check_purges(
    conn: AsyncConnection,
    *,
    keys: Sequence[VerifierKey] | None = None,
    origin: str = "",
) -> PurgeProblem | None:
    """The first purge row the ledger does not back (see the module), or None.

    Run it once the chain after the purge horizon has verified: the purge events read here
    are then the chain's own. With `keys` (the log's public keys; `origin` its name) every
    purge event's authorization is checked too; without, it is not (a chain-only walk)."""
    rows = list(await repository.purges(conn))
    if not rows:
        return None
    events = [
        parsed
        for seq, body in await repository.purge_events(conn, ArchiveEvent.EVENTS_PURGED)
        if (parsed := _parse(int(seq), bytes(body))) is not None
    ]
    latest = rows[-1]
    first, through, boundary = _key(latest)
    vouching = next(
        (
            e
            for e in events
            if (e.first_seq, e.through_seq, e.boundary) == (first, through, boundary)
            and e.seq > through
        ),
        None,
    )
    if vouching is None:
        return PurgeProblem(
            first,
            through,
            "has no chained `audit:archive:purged` event naming that range and boundary "
            "chain hash after it: the purge record was not made by a purge (tampering)",
        )
    earlier = [_key(row) for row in rows[:-1]]
    if vouching.previous != earlier:
        unlisted = next((k for k in earlier if k not in vouching.previous), None)
        if unlisted is not None:
            return PurgeProblem(
                unlisted[0],
                unlisted[1],
                "is not among the purges the latest `audit:archive:purged` event names: the "
                "purge record was not made by a purge (tampering)",
            )
        gone = next(k for k in vouching.previous if k not in earlier)
        return PurgeProblem(
            gone[0], gone[1], "is named by the ledger but its purge record is gone (tampering)"
        )
    for event in events:
        problem = None if keys is None else _authorization_problem(event, keys, origin)
        if problem is None:
            problem = await _check_time(conn, event)
        if problem is not None:
            return problem
    return None


async def _check_time(conn: AsyncConnection, event: _PurgeEvent) -> PurgeProblem | None:
    """A purge event's own time must be supported by the events around it."""
    later = await repository.earliest_after(conn, event.seq)
    if later is not None and int(later.occurred_ns) < event.occurred_ns - CLOCK_TOLERANCE_NS:
        return PurgeProblem(
            event.first_seq,
            event.through_seq,
            f"is recorded at {ns_to_iso(event.occurred_ns)} (seq {event.seq}) but seq "
            f"{int(later.seq)}, chained after it, at {ns_to_iso(int(later.occurred_ns))}: the "
            "purge ran on a clock set forward",
        )
    body = await repository.body_at(conn, event.seq - 1)
    newest = await repository.newest_sealed_ns(conn, event.first_seq, event.through_seq)
    evidence = recorded_ns(body)
    if evidence is not None and evidence > event.occurred_ns + CLOCK_TOLERANCE_NS:
        return PurgeProblem(
            event.first_seq,
            event.through_seq,
            f"is recorded at {ns_to_iso(event.occurred_ns)} (seq {event.seq}) but seq "
            f"{event.seq - 1}, the newest event before it, at {ns_to_iso(evidence)}: an event "
            "dated ahead was put before the purge to vouch for it",
        )
    if evidence is None or newest is None:
        return None  # the event before it was purged since; that purge was checked itself
    if not evidence_supports(evidence, newest, event.years):
        return PurgeProblem(
            event.first_seq,
            event.through_seq,
            f"is not supported by the ledger: {EVIDENCE_RULE} ({event.years} years), and "
            f"seq {event.seq - 1} is recorded at {ns_to_iso(evidence)}, the newest purged "
            f"event at {ns_to_iso(newest)}",
        )
    return None


def recorded_ns(body: bytes | None) -> int | None:
    """When an event body says it was recorded (its `ts`), if it says."""
    if body is None:
        return None
    try:
        value = json.loads(body)["ts"]
    except (ValueError, KeyError, TypeError):
        return None
    return int(value) if isinstance(value, str) and value.isdigit() else None
