"""The data inventory (PRIV-1) beyond the application's fields: every sealed column the
KYC/AML parts keep about a customer (documents, screening, EDD, payees, filings) is listed
with its purpose, legal basis, retention and the class it is encrypted under."""

from __future__ import annotations

from pathlib import Path

import pytest

import tradeguard.aml.models
import tradeguard.funds.models
import tradeguard.kyc.documents.models
import tradeguard.kyc.onboarding.models
import tradeguard.kyc.sanctions.models  # noqa: F401 - the tables on the metadata
from tradeguard.crypto.columns import EncryptedText
from tradeguard.db.base import Base
from tradeguard.kyc.onboarding.inventory import CLEAR, INVENTORY, RECORDS

DOC = (Path(__file__).parents[4] / "docs" / "kyc.md").read_text(encoding="utf-8")
# The tables of the KYC and AML parts, and funds' bank accounts (the payees screened).
PREFIXES = ("kyc_", "sanctions_", "aml_", "funds_bank_accounts")
# The application's own sealed columns are inventoried field by field (INVENTORY).
BY_FIELD = {"kyc_applications.details_enc", "kyc_applications.tax_id_enc"}


def _sealed_columns() -> dict[str, str]:
    found: dict[str, str] = {}
    for table in Base.metadata.tables.values():
        if not table.name.startswith(PREFIXES):
            continue
        for column in table.columns:
            if isinstance(column.type, EncryptedText):
                found[f"{table.name}.{column.name}"] = column.type.data_class.value
    return found


@pytest.mark.spec("PRIV-1")
class TestRecords:
    def test_every_sealed_column_of_the_kyc_and_aml_parts_is_listed(self) -> None:
        listed = {entry.field: entry.data_class for entry in RECORDS}
        sealed = _sealed_columns()
        assert sealed, "no sealed columns found: the models are not imported"
        for column, data_class in sealed.items():
            if column in BY_FIELD:
                continue
            assert column in listed, column
            assert listed[column] == data_class, column

    def test_documents_screening_edd_and_payees_are_covered(self) -> None:
        listed = {entry.field for entry in RECORDS}
        for needed in (
            "kyc_document_chunks.blob",
            "kyc_documents.fields_enc",
            "kyc_applications.edd_note_enc",
            "sanctions_hits.reasons_enc",
            "funds_bank_accounts.holder_name_enc",
        ):
            assert needed in listed

    def test_every_listed_column_exists(self) -> None:
        tables = Base.metadata.tables
        for entry in RECORDS:
            table, column = entry.field.split(".")
            assert column in tables[table].columns, entry.field

    def test_every_entry_says_why_on_what_basis_how_long_and_how_it_is_kept(self) -> None:
        fields = [entry.field for entry in (*INVENTORY, *RECORDS)]
        assert len(fields) == len(set(fields))
        for entry in RECORDS:
            assert entry.purpose
            assert entry.legal_basis
            assert entry.retention
            assert entry.required
            assert entry.data_class

    def test_every_record_is_documented(self) -> None:
        for entry in RECORDS:
            row = (
                f"| `{entry.field}` | {entry.purpose} | {entry.legal_basis} | {entry.required} "
                f"| {entry.retention} | `{entry.data_class}` |"
            )
            assert row in DOC, entry.field
        assert CLEAR
