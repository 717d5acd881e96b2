"""Errors of the sealed archive (rendered as RFC 9457 problems or one CLI line each).

Messages name segments, sequence numbers and dates, never an event's contents or a key.
"""

from __future__ import annotations

from tradeguard.core.errors import Conflict, InvalidInput, LedgerIntegrityError, NotFound


class SegmentInvalid(LedgerIntegrityError):
    """A segment or its manifest does not verify; the message names the segment."""

    slug = "archive-segment-invalid"
    title = "A sealed archive segment does not verify"

    def __init__(self, segment: str, reason: str) -> None:
        super().__init__(f"segment {segment}: {reason}", segment=segment)
        self.segment = segment
        self.reason = reason


class SegmentExists(Conflict):
    """A segment file of that name is already there: archive files are never replaced."""

    slug = "archive-segment-exists"
    title = "The sealed archive segment already exists"


class NothingToSeal(Conflict):
    slug = "archive-nothing-to-seal"
    title = "No closed range of the ledger is waiting to be sealed"


class RetentionNotMet(Conflict):
    """A purge reaching into events younger than the retention period (AUD-2: 7 years)."""

    slug = "archive-retention-not-met"
    title = "Audit events younger than the retention period cannot be purged"


class UnsealedEvents(Conflict):
    """A purge covering events that are not sealed in a verified segment."""

    slug = "archive-unsealed-events"
    title = "Audit events that are not sealed cannot be purged"


class NothingToPurge(Conflict):
    slug = "archive-nothing-to-purge"
    title = "No sealed segment is entirely older than the given date"


class EventPurged(NotFound):
    """The event was purged from the database after its retention; it is in the archive."""

    status = 410
    slug = "event-purged"
    title = "The event was purged from the database; it is in the sealed archive"


class NotSealed(NotFound):
    slug = "archive-not-sealed"
    title = "No sealed segment holds this event"


class ArchiveUnavailable(InvalidInput):
    """The archive directory, the keyring or the verifier keys cannot be used."""

    slug = "archive-unavailable"
    title = "The sealed archive cannot be read"


class ChainDoesNotVerify(LedgerIntegrityError):
    """The database's chain does not verify where a segment was to be sealed or checked:
    nothing is sealed over it."""

    slug = "archive-chain-does-not-verify"
    title = "The audit ledger does not verify; nothing is sealed over it"
