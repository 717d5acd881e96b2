"""The data inventory (PRIV-1) covers exactly the application's fields."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tradeguard.crypto.classes import DataClass
from tradeguard.kyc.onboarding.inventory import INVENTORY
from tradeguard.kyc.onboarding.schemas import ApplicationIn
from tradeguard.kyc.onboarding.validation import SCHEMA


def _api_fields() -> set[str]:
    fields: set[str] = set()
    for section, info in ApplicationIn.model_fields.items():
        model = next(
            arg
            for arg in getattr(info.annotation, "__args__", ())
            if isinstance(arg, type) and issubclass(arg, BaseModel)
        )
        fields |= {f"{section}.{name}" for name in model.model_fields}
    return fields


@pytest.mark.spec("PRIV-1")
class TestInventory:
    def test_every_field_of_the_application_is_in_the_inventory_and_nothing_else(self) -> None:
        listed = [entry.field for entry in INVENTORY]
        assert len(listed) == len(set(listed))
        schema = {f"{s}.{n}" for s, fields in SCHEMA.items() for n in fields}
        assert set(listed) == schema
        assert _api_fields() == schema

    def test_every_entry_says_why_on_what_basis_how_long_and_how_it_is_kept(self) -> None:
        for entry in INVENTORY:
            assert entry.purpose
            assert entry.legal_basis
            assert entry.retention
            assert entry.required
            assert entry.data_class in {DataClass.PERSONAL_DETAILS, DataClass.TAX_ID}
        tax = next(e for e in INVENTORY if e.field == "identity.tax_id")
        assert tax.data_class == DataClass.TAX_ID
        assert "1023.220" in tax.legal_basis
        assert "5 years after the account is closed" in tax.retention

    def test_required_in_the_inventory_matches_the_schema(self) -> None:
        for entry in INVENTORY:
            section, name = entry.field.split(".")
            if SCHEMA[section][name]:
                assert entry.required == "yes", entry.field

    def test_marketing_is_opt_in_by_consent(self) -> None:
        marketing = next(e for e in INVENTORY if e.field == "preferences.marketing_opt_in")
        assert "consent" in marketing.legal_basis
        assert marketing.required.startswith("no")
