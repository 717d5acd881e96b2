"""Search results and their export formats (pure): JSON objects and RFC 4180 CSV.

CSV cells that a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a
carriage return: OWASP "CSV injection") get a leading apostrophe, so an actor id such as
`=HYPERLINK(...)` opens as text. The `document` column is the event exactly as stored (its
canonical JSON), so a reader can recompute its RFC 6962 leaf hash, H(0x00 || document).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tradeguard.core.clock import ns_to_iso
from tradeguard.ledger.chain import stored_document

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "seq",
    "event_id",
    "type",
    "occurred_ns",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "subject_kind",
    "subject_id",
    "request_id",
    "document",
)


@dataclass(frozen=True, slots=True)
class FoundEvent:
    """A chained event as the search returns it."""

    seq: int
    event_id: str
    type: str
    occurred_ns: int
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        return stored_document(self.body, seq=self.seq)

    def as_json(self) -> dict[str, Any]:
        document = self.document
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "type": self.type,
            # Nanoseconds exceed 2^53: a string, as in the document itself.
            "occurred_ns": str(self.occurred_ns),
            "occurred_at": ns_to_iso(self.occurred_ns),
            "actor": _party(document.get("actor")),
            "subject": _party(document.get("subject")),
            "request_id": document.get("request_id"),
            "document": document,
        }


@dataclass(frozen=True, slots=True)
class EventPage:
    items: list[FoundEvent]
    next_cursor: str | None


def _party(value: Any) -> dict[str, str] | None:
    if isinstance(value, Mapping):
        return {"kind": str(value.get("kind", "")), "id": str(value.get("id", ""))}
    return None


def neutralize(cell: str) -> str:
    """A cell a spreadsheet shows as text, never evaluates."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([neutralize(c) for c in cells])
    return buffer.getvalue()


def csv_header() -> str:
    return _csv_line(list(CSV_COLUMNS))


def csv_row(event: FoundEvent) -> str:
    item = event.as_json()
    actor, subject = item["actor"] or {}, item["subject"] or {}
    return _csv_line(
        [
            str(event.seq),
            event.event_id,
            event.type,
            str(event.occurred_ns),
            item["occurred_at"],
            actor.get("kind", ""),
            actor.get("id", ""),
            subject.get("kind", ""),
            subject.get("id", ""),
            item["request_id"] or "",
            event.body.decode("utf-8"),
        ]
    )


def json_item(event: FoundEvent) -> str:
    """One element of the JSON export's array."""
    return json.dumps(event.as_json(), ensure_ascii=False, separators=(",", ":"))
