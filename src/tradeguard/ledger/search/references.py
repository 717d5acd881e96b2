"""What an event refers to, for the search index: the accounts and orders it names.

Account and order ids live inside an event's data, where no database index reaches them
portably (SQLite has no JSON index that PostgreSQL shares). `Ledger.append` writes the
references this module finds into `audit_event_ref` in the event's own transaction, so the
index can never hold an event that did not commit nor miss one that did. The rules are
fixed keys, not a scan of every string in the data: a free-text field that happens to hold
an id (a reason, a note) must not make an event match.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

# The column holds at most this many characters; ids in tradeguard are 36 (UUIDs).
MAX_REFERENCE_CHARS = 100
# What an id looks like: printable, no spaces or control characters (the search refuses
# any other filter value, so nothing else could ever be looked up). Request parameters
# recorded by the route guard are whatever the client sent: a NUL in one must not reach a
# text column (PostgreSQL refuses it, and the request would fail).
ID_PATTERN = re.compile(r"^[^\x00-\x20\x7f-\x9f]{1,100}$")  # 100: MAX_REFERENCE_CHARS


class ReferenceKind(StrEnum):
    ACCOUNT = "account"
    ORDER = "order"


# Keys of an event's data (top level) whose value is an id of this kind: one id, or a list.
DATA_KEYS: Mapping[str, ReferenceKind] = {
    "account_id": ReferenceKind.ACCOUNT,
    "order_id": ReferenceKind.ORDER,
    # An order replaced by a new one (trading:order:placed of the replacement).
    "replaces_order_id": ReferenceKind.ORDER,
    # A fail to deliver closed by a buy-in order (risk:fail:closed).
    "closed_by_order": ReferenceKind.ORDER,
    # Orders cancelled by a halt (trading:halt:started).
    "cancelled_orders": ReferenceKind.ORDER,
}
# A staff member's permission check records the customer-naming request parameters under
# `params` (identity/guard.py staff_context): "who at the firm looked at this account" is
# part of the account's trail.
PARAMS_KEYS: Mapping[str, ReferenceKind] = {"account_id": ReferenceKind.ACCOUNT}
# Parties of these kinds (an event's actor or subject) are references too.
PARTY_KINDS: Mapping[str, ReferenceKind] = {
    "account": ReferenceKind.ACCOUNT,
    "order": ReferenceKind.ORDER,
}

Reference = tuple[str, str]


def _ids(value: Any) -> Iterable[str]:
    items = value if isinstance(value, list | tuple) else (value,)
    for item in items:
        # A UUID is stored as its string (ledger/canonical.py); index it the same way.
        text = str(item) if isinstance(item, uuid.UUID) else item
        if isinstance(text, str) and ID_PATTERN.fullmatch(text):
            yield text


def event_references(
    *,
    actor: tuple[str, str] | None,
    subject: tuple[str, str] | None,
    data: Mapping[str, Any],
) -> list[Reference]:
    """The (kind, value) references of an event, each once, in a stable order.

    `actor` and `subject` are (kind, id) pairs; `data` is the event's data as appended (or
    as stored: the same rules serve the migration that indexes existing events).
    """
    found: dict[Reference, None] = {}
    for party in (actor, subject):
        if party is not None and party[0] in PARTY_KINDS:
            for value in _ids(party[1]):
                found[(PARTY_KINDS[party[0]].value, value)] = None
    for key, kind in DATA_KEYS.items():
        for value in _ids(data.get(key)):
            found[(kind.value, value)] = None
    params = data.get("params")
    if isinstance(params, Mapping):
        for key, kind in PARAMS_KEYS.items():
            for value in _ids(params.get(key)):
                found[(kind.value, value)] = None
    return list(found)


def document_references(document: Mapping[str, Any]) -> list[Reference]:
    """The references of a stored event document (canonical JSON, decoded)."""

    def party(value: Any) -> tuple[str, str] | None:
        if isinstance(value, Mapping) and isinstance(value.get("kind"), str):
            identifier = value.get("id")
            if isinstance(identifier, str):
                return (value["kind"], identifier)
        return None

    data = document.get("data")
    return event_references(
        actor=party(document.get("actor")),
        subject=party(document.get("subject")),
        data=data if isinstance(data, Mapping) else {},
    )
