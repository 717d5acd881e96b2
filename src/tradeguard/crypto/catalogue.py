"""Where encrypted values are stored: the columns a rewrap walks and a usage count reads.

Each location is one column of one table, with a single-column primary key to walk in order
and the record id its ciphertexts are bound to (their associated data). Tables are named,
not imported: the keyring sits below the domains that own them. `tests/unit/crypto` checks
every entry against the tables the migrations create, so a renamed column fails a test.

A new encrypted column (crypto/columns.py) adds its entry here; until it does, its data is
invisible to rewrap and usage counts, and so its old key versions would never retire.

A blind-index column adds an `IndexLocation` to `INDEX_LOCATIONS`: the column holding the
index, the encrypted column it is computed from (same row) and the normalization it was
computed with. `tradeguard keys reindex` decrypts the source to recompute the index under the
current index key version; an index column missing here keeps its old index versions alive.
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

    @property
    def columns_read(self) -> tuple[str, ...]:
        return (self.key_column, self.column, *self.extra_columns)


# What a row's blind index is the HMAC of: from the decrypted source value and the row (its
# key and extra columns), the same string the owning domain passes to `blind_index`.
IndexInput = Callable[[str, Any], str]


@dataclass(frozen=True, slots=True)
class IndexLocation:
    """A blind-index column (`column`), computed from the encrypted `source_column` of the
    same row (and, where the domain's index covers them, its `extra_columns`)."""

    data_class: DataClass
    table: str
    column: str
    source_column: str
    key_column: str
    record_id: RecordId = field(compare=False)
    index_input: IndexInput = field(compare=False)
    key_is_binary: bool = False
    extra_columns: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def columns_read(self) -> tuple[str, ...]:
        return (self.key_column, self.column, self.source_column, *self.extra_columns)


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
    Location(DataClass.KYC_DOCUMENT, "kyc_documents", "data_key_enc", "id", _text_key("id")),
    Location(DataClass.KYC_DOCUMENT, "kyc_documents", "fields_enc", "id", _text_key("id")),
    Location(DataClass.API_KEY_SECRET, "api_keys", "secret_enc", "id", _text_key("id")),
    # An account application's declared details and staff EDD notes, and its tax id
    # (kyc/onboarding/models.py).
    Location(DataClass.PERSONAL_DETAILS, "kyc_applications", "details_enc", "id", _text_key("id")),
    Location(DataClass.PERSONAL_DETAILS, "kyc_applications", "edd_note_enc", "id", _text_key("id")),
    Location(DataClass.TAX_ID, "kyc_applications", "tax_id_enc", "id", _text_key("id")),
    Location(DataClass.NOTIFY_RECIPIENT, "notify_outbox", "recipient_enc", "id", _text_key("id")),
    # AML's FinCEN exports carry the subject's name, address, tax id and date of birth.
    Location(DataClass.PERSONAL_DETAILS, "aml_filings", "document_enc", "id", _text_key("id")),
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


def _bank_account_index_input(account_number: str, row: Any) -> str:
    # The same input as funds/bank_accounts.py `_index_input` (routing number, then the
    # account number as sealed with its leading zeros dropped, funds/domain.py
    # `indexed_account_number`): tests/integration/crypto/test_index_rotation.py reindexes
    # accounts added through the funds service and finds them again.
    return f"{row['routing_number']}:{account_number.lstrip('0') or '0'}"


INDEX_LOCATIONS: tuple[IndexLocation, ...] = (
    IndexLocation(
        DataClass.BANK_DETAILS,
        "funds_bank_accounts",
        "account_index",
        "account_number_enc",
        "id",
        _text_key("id"),
        _bank_account_index_input,
        extra_columns=("routing_number",),
    ),
    # The application's tax id is sealed in its normalized form, the same string the index
    # is the HMAC of (kyc/onboarding/service.py).
    IndexLocation(
        DataClass.TAX_ID,
        "kyc_applications",
        "tax_id_index",
        "tax_id_enc",
        "id",
        _text_key("id"),
        lambda tax_id, _row: tax_id,
    ),
)


def index_locations_of(
    data_class: DataClass, catalogue: tuple[IndexLocation, ...] = INDEX_LOCATIONS
) -> list[IndexLocation]:
    return [location for location in catalogue if location.data_class is data_class]


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
