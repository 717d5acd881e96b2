"""Rules of the sealed archive (pure): its ledger events, where segments are cut, and the
retention period (AUD-2: seven years minimum; SEC Rule 17a-4(f) audit-trail alternative)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import InvalidInput
from tradeguard.ledger.search.query import parse_instant

MIN_RETENTION_YEARS = 7
# Plaintext bytes of one segment at most: a segment is built, compressed and encrypted in
# memory, so this bounds the memory a seal (or a read) takes.
MAX_SEGMENT_PLAIN_BYTES = 256 * 1024 * 1024
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ArchiveEvent(StrEnum):
    """Ledger events of the sealed archive."""

    SEGMENT_SEALED = "audit:archive:sealed"
    EVENTS_PURGED = "audit:archive:purged"


def month_of(ns: int) -> tuple[int, int]:
    """The calendar month (UTC) of an instant in nanoseconds."""
    moment = _EPOCH + timedelta(microseconds=ns // 1000)
    return moment.year, moment.month


@dataclass(slots=True)
class SegmentCutter:
    """Where one segment ends and the next begins, fed the chain in order.

    A segment holds at most `max_events` events and MAX_SEGMENT_PLAIN_BYTES of bodies, all
    recorded in one calendar month (UTC): it ends before the first event recorded in a
    *later* month than its first event. Events are chained in commit order, so an event
    recorded a moment before midnight may be chained after one recorded just after it; such
    a straggler stays in the later month's segment (the manifest keeps the earliest and
    latest times, and retention goes by the latest).
    """

    max_events: int
    max_bytes: int = MAX_SEGMENT_PLAIN_BYTES
    count: int = 0
    size: int = 0
    month: tuple[int, int] | None = None

    def closes_before(self, occurred_ns: int, body_bytes: int) -> bool:
        """Whether the current segment closes before this event (which then begins the
        next one); the event is counted in the segment it belongs to."""
        month = month_of(occurred_ns)
        closes = self.month is not None and (
            self.count >= self.max_events
            or self.size + body_bytes > self.max_bytes
            or month > self.month
        )
        if closes or self.month is None:
            self.count, self.size, self.month = 0, 0, month
        self.count += 1
        self.size += body_bytes
        return closes

    @property
    def full(self) -> bool:
        """The current segment can take no more events: it is closed already."""
        return self.count >= self.max_events


def retention_cutoff_ns(now_ns: int, years: int) -> int:
    """The instant `years` calendar years before `now` (UTC); 29 February falls back to the
    28th. Events recorded before it are past their retention."""
    if years < MIN_RETENTION_YEARS:
        raise InvalidInput(f"the retention period is at least {MIN_RETENTION_YEARS} years")
    moment = _EPOCH + timedelta(microseconds=now_ns // 1000)
    year = moment.year - years
    try:
        earlier = moment.replace(year=year)
    except ValueError:  # 29 February in a year that has none
        earlier = moment.replace(year=year, day=28)
    elapsed = earlier - _EPOCH
    return (elapsed.days * 86_400 + elapsed.seconds) * NS_PER_SECOND + (now_ns % NS_PER_SECOND)


def parse_before(value: str) -> int:
    """`--before`: a date (YYYY-MM-DD, midnight UTC) or an RFC 3339 instant with an offset."""
    text = value.strip()
    match = _DATE.fullmatch(text)
    if match is not None:
        try:
            day = date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            raise InvalidInput("--before: that date does not exist") from None
        elapsed = datetime(day.year, day.month, day.day, tzinfo=UTC) - _EPOCH
        ns = elapsed.days * 86_400 * NS_PER_SECOND
    else:
        try:
            if text.isdigit():  # nanoseconds are for machines; a person means a date
                raise InvalidInput("a bare number")
            ns = parse_instant("before", text)
        except InvalidInput:
            raise InvalidInput(
                "--before is a date such as 2019-01-01 (midnight UTC) or an instant with an "
                "offset such as 2019-01-01T00:00:00Z"
            ) from None
    if ns <= 0:
        raise InvalidInput("--before must be after 1970-01-01")
    return ns
