"""Where encrypted values are stored: the columns a rewrap walks and a usage count reads.

Each location is one column of one table, with a single-column primary key to walk in order
and the record id its ciphertexts are bound to (their associated data). Tables are named,
not imported: the keyring sits below the domains that own them. `tests/unit/crypto` checks
every entry against the tables the migrations create, so a renamed column fails a test.

A new encrypted column (crypto/columns.py) adds its entry here; until it does, its data is
invisible to rewrap and usage counts, and so its old key versions would never retire.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tradeguard.crypto.classes import DataClass
from tradeguard.ledger.personal.sealing import wrap_context

RecordId = Callable[[Any], bytes]


def _text_key(column: str) -> RecordId:
    return lambda row: str(row[column]).encode()


def _binary_key(column: str) -> RecordId:
    return lambda row: bytes(row[column])


def _subject_key_context(row: Mapping[str, Any]) -> bytes:
    return wrap_context(row["subject"], row["key_id"])


@dataclass(frozen=True, slots=True)
class Location:
    data_class: DataClass
    table: str
    column: str
    key_column: str
    record_id: RecordId = field(compare=False)
    key_is_binary: bool = False
    # Other columns the record id is made of.
    extra_columns: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


LOCATIONS: tuple[Location, ...] = (
    Location(DataClass.TOTP_SECRET, "mfa_factors", "secret_enc", "id", _text_key("id")),
    Location(DataClass.FACTOR_DESTINATION, "mfa_factors", "destination_enc", "id", _text_key("id")),
    Location(
        DataClass.REFRESH_SUCCESSOR,
        "refresh_tokens",
        "successor_enc",
        "token_hash",
        _binary_key("token_hash"),
        key_is_binary=True,
    ),
    Location(
        DataClass.BANK_DETAILS,
        "funds_bank_accounts",
        "account_number_enc",
        "id",
        _text_key("id"),
    ),
    Location(DataClass.NOTIFY_RECIPIENT, "notify_outbox", "recipient_enc", "id", _text_key("id")),
    Location(DataClass.NOTIFY_BODY, "notify_outbox", "body_enc", "id", _text_key("id")),
    Location(
        DataClass.SUBJECT_KEYS,
        "audit_subject_key",
        "wrapped_key",
        "key_id",
        _subject_key_context,
        extra_columns=("subject",),
    ),
)


def locations_of(
    data_class: DataClass, catalogue: tuple[Location, ...] = LOCATIONS
) -> list[Location]:
    return [location for location in catalogue if location.data_class is data_class]


def location_of_purpose(
    data_class: DataClass, catalogue: tuple[Location, ...] = LOCATIONS
) -> Location | None:
    """The one column a legacy purpose seals (the keyring's `encrypt(purpose=...)` path)."""
    found = locations_of(data_class, catalogue)
    return found[0] if len(found) == 1 else None
