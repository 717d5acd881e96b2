"""Audit search filters, instants and page cursors (pure: parsing and validation only).

A search names any combination of: an event type (exact, or a prefix ending in a colon such
as `trading:order:`), an actor id, a subject id, an account id, an order id, and a time range
`[from, to)`: `from` inclusive, `to` exclusive, so consecutive windows never share an event.
Instants are nanoseconds since the Unix epoch or ISO-8601 / RFC 3339 with an explicit offset
(a time without one would mean different instants on different machines).

Results are in chain order (the sequence number), newest or oldest first. A cursor is opaque
to clients; it carries the position of the last result and a digest of the filters and the
order, so a cursor is refused when sent with a different search instead of silently paging
through another result set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import InvalidInput
from tradeguard.core.events import is_valid_event_type
from tradeguard.ledger.search.references import ID_PATTERN, MAX_REFERENCE_CHARS

DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_ID_CHARS = MAX_REFERENCE_CHARS
MAX_CURSOR_CHARS = 200
MAX_INSTANT_CHARS = 40
MAX_NS = 2**63 - 1
CURSOR_VERSION = 1

# One or two `source:subject` segments and the closing colon: `trading:`, `trading:order:`.
TYPE_PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]*:(?:[a-z][a-z0-9_]*:)?$")
NS_PATTERN = re.compile(r"^\d{1,19}$")
ISO_PATTERN = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"([Zz]|[+-]\d{2}:\d{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SearchInputError(InvalidInput):
    """A search filter, cursor or limit the ledger search refuses; names the parameter."""

    slug = "invalid-audit-search"
    title = "The audit search is not valid"

    def __init__(self, parameter: str, detail: str) -> None:
        # The value itself is never echoed: it is whatever the caller typed.
        super().__init__(
            f"{parameter}: {detail}", errors=[{"loc": ["query", parameter], "msg": detail}]
        )
        self.parameter = parameter


class SortOrder(StrEnum):
    NEWEST = "newest"
    OLDEST = "oldest"


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What to search for; every field given must match (AND). None: any."""

    event_type: str | None = None
    type_prefix: str | None = None
    actor_id: str | None = None
    subject_id: str | None = None
    account_id: str | None = None
    order_id: str | None = None
    from_ns: int | None = None
    to_ns: int | None = None

    def described(self) -> dict[str, Any]:
        """The filters given, as recorded in the search's own audit event."""
        described: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            # Nanoseconds beyond 2^53 travel as strings in ledger JSON (RFC 8785 3.2.2.3).
            described[name] = str(value) if name.endswith("_ns") else value
        return described

    def digest(self, sort: SortOrder) -> str:
        document = json.dumps([self.described(), sort.value], sort_keys=True)
        return hashlib.sha256(document.encode()).hexdigest()[:16]

    def type_range(self) -> tuple[str, str] | None:
        """[low, high) bounds of the types under the prefix: `:` + 1 is `;`, and type names
        use only [a-z0-9_:], so every type under the prefix sorts inside (byte order)."""
        if self.type_prefix is None:
            return None
        return self.type_prefix, self.type_prefix[:-1] + ";"


def parse_type(value: str) -> tuple[str | None, str | None]:
    """(exact type, None) or (None, prefix); refuse any other shape."""
    if is_valid_event_type(value):
        return value, None
    if TYPE_PREFIX_PATTERN.fullmatch(value):
        return None, value
    raise SearchInputError(
        "type",
        "give an event type shaped source:subject:action (trading:order:placed) or a prefix "
        "ending in a colon (trading: or trading:order:)",
    )


def parse_id(parameter: str, value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise SearchInputError(
            parameter, f"give an id of 1 to {MAX_ID_CHARS} characters without spaces"
        )
    return value


def parse_instant(parameter: str, value: str) -> int:
    """Nanoseconds since the epoch from digits or from ISO-8601 with an offset (Z, +01:00)."""
    text = value
    if NS_PATTERN.fullmatch(text):
        ns = int(text)
        if ns > MAX_NS:
            raise SearchInputError(parameter, "nanoseconds since the epoch must be below 2^63")
        return ns
    match = ISO_PATTERN.fullmatch(text) if len(text) <= MAX_INSTANT_CHARS else None
    if match is None:
        raise SearchInputError(
            parameter,
            "give nanoseconds since the epoch, or ISO-8601 with an offset such as "
            "2026-01-02T09:30:00Z or 2026-01-02T09:30:00.000000001-05:00",
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        zone = UTC if offset in {"Z", "z"} else timezone(_offset(offset))
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=zone
        )
    except ValueError:
        raise SearchInputError(parameter, "that date or time does not exist") from None
    elapsed = moment - _EPOCH
    ns = (elapsed.days * 86_400 + elapsed.seconds) * NS_PER_SECOND
    ns += int((fraction or "").ljust(9, "0"))
    if not 0 <= ns <= MAX_NS:
        raise SearchInputError(parameter, "the instant must be between 1970 and 2262")
    return ns


def _offset(text: str) -> timedelta:
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(text)
    return sign * timedelta(hours=hours, minutes=minutes)


def build_filter(
    *,
    event_type: str | None = None,
    actor_id: str | None = None,
    subject_id: str | None = None,
    account_id: str | None = None,
    order_id: str | None = None,
    from_: str | None = None,
    to: str | None = None,
) -> EventFilter:
    """Validate raw filter values (from the API or the CLI) into an EventFilter."""
    exact, prefix = parse_type(event_type) if event_type is not None else (None, None)
    from_ns = parse_instant("from", from_) if from_ is not None else None
    to_ns = parse_instant("to", to) if to is not None else None
    if from_ns is not None and to_ns is not None and from_ns > to_ns:
        raise SearchInputError("from", "from must not be after to (the range is [from, to))")
    return EventFilter(
        event_type=exact,
        type_prefix=prefix,
        actor_id=parse_id("actor_id", actor_id) if actor_id is not None else None,
        subject_id=parse_id("subject_id", subject_id) if subject_id is not None else None,
        account_id=parse_id("account_id", account_id) if account_id is not None else None,
        order_id=parse_id("order_id", order_id) if order_id is not None else None,
        from_ns=from_ns,
        to_ns=to_ns,
    )


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise SearchInputError("limit", f"give a page size from 1 to {MAX_PAGE}")
    return limit


@dataclass(frozen=True, slots=True)
class Position:
    """An event's place in chain order: its sequence number and its ordering key.

    The sequencer chains events in (txid, pk) order on PostgreSQL and pk order on SQLite
    (ledger/sequencer.py), so that key sorts exactly as the sequence number does, and the
    search walks indexes on it instead of sorting by seq (txid is None on SQLite).
    """

    seq: int
    txid: int | None
    pk: int


def encode_cursor(position: Position, *, digest: str) -> str:
    document = {
        "v": CURSOR_VERSION,
        "d": digest,
        "s": position.seq,
        "k": [position.txid, position.pk],
    }
    raw = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_cursor() -> SearchInputError:
    return SearchInputError("cursor", "give the next_cursor of a previous page of this search")


def decode_cursor(cursor: str, *, digest: str) -> Position:
    """The position a cursor continues after; refused if malformed or from another search."""
    if not 0 < len(cursor) <= MAX_CURSOR_CHARS:
        raise _bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError):
        raise _bad_cursor() from None
    if not isinstance(document, dict) or set(document) != {"v", "d", "s", "k"}:
        raise _bad_cursor()
    key = document["k"]
    if (
        document["v"] != CURSOR_VERSION
        or not isinstance(key, list)
        or len(key) != 2  # (txid, pk)
        or not _count(document["s"])
        or not _count(key[1])
        or not (key[0] is None or _count(key[0]))
    ):
        raise _bad_cursor()
    if document["d"] != digest:
        raise SearchInputError(
            "cursor", "this cursor belongs to a search with other filters or another order"
        )
    return Position(seq=document["s"], txid=key[0], pk=key[1])


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NS
