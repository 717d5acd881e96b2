"""API bodies of onboarding (pydantic v2, extra fields refused). The shapes only: every
field's rules are in validation.py, so the API, the CLI and the demo check alike. A tax id
only ever comes in; it goes out as its last four digits."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Text = Annotated[str, Field(max_length=500)]
Short = Annotated[str, Field(max_length=120)]
Code = Annotated[str, Field(max_length=40)]
Reason = Annotated[str, Field(min_length=3, max_length=2000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentityIn(Strict):
    given_names: Short | None = None
    family_name: Short | None = None
    birth_date: Code | None = Field(default=None, description="YYYY-MM-DD")
    nationality: Code | None = Field(default=None, description="ISO 3166-1 alpha-2")
    tax_id: Annotated[str, Field(max_length=40)] | None = Field(
        default=None,
        description="US SSN or ITIN (123-45-6789); with tax_id_country, a foreign tax id. "
        "Never returned: responses show its last four digits.",
    )
    tax_id_country: Code | None = None
    no_tax_id_reason: Text | None = None


class AddressIn(Strict):
    line1: Short | None = None
    line2: Short | None = None
    city: Short | None = None
    region: Short | None = None
    postal_code: Code | None = None
    country: Code | None = None


class EmploymentIn(Strict):
    status: Code | None = None
    employer: Text | None = None
    occupation: Code | None = None
    broker_dealer_affiliated: bool | None = None
    broker_dealer_name: Text | None = None
    control_person: bool | None = None
    control_person_symbols: Annotated[list[Code], Field(max_length=20)] | None = None
    politically_exposed: bool | None = None
    pep_details: Text | None = None


class FundingIn(Strict):
    source_of_funds: Annotated[list[Code], Field(max_length=11)] | None = None
    source_of_funds_details: Text | None = None
    source_of_wealth: Annotated[list[Code], Field(max_length=11)] | None = None
    source_of_wealth_details: Text | None = None


class ProfileIn(Strict):
    annual_income: Code | None = None
    net_worth: Code | None = None
    liquid_net_worth: Code | None = None
    experience: Code | None = None
    options_experience: bool | None = None
    objectives: Annotated[list[Code], Field(max_length=4)] | None = None
    risk_tolerance: Code | None = None
    time_horizon: Code | None = None
    margin_requested: bool | None = None
    expected_monthly_deposits: Code | None = Field(default=None, description="USD, e.g. 2500")
    expected_monthly_withdrawals: Code | None = None


class PreferencesIn(Strict):
    marketing_opt_in: bool | None = Field(
        default=None, description="Product news by email: off unless you opt in (PRIV-1)."
    )


class ApplicationIn(Strict):
    """Sections and fields to save; a field left out stays as it was, null clears it."""

    identity: IdentityIn | None = None
    address: AddressIn | None = None
    employment: EmploymentIn | None = None
    funding: FundingIn | None = None
    profile: ProfileIn | None = None
    preferences: PreferencesIn | None = None

    def given(self) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {}
        for name in self.model_fields_set:
            section = getattr(self, name)
            out[name] = None if section is None else section.model_dump(exclude_unset=True)
        return out


class TaxIdOut(BaseModel):
    kind: str | None
    last4: str | None


class RatingOut(BaseModel):
    rating: str | None
    score: int | None
    overridden: bool
    factors: list[dict[str, Any]]
    next_review_on: str | None
    # A lowering override waiting for a second staff member (four eyes), and who proposed it.
    proposed: str | None = None
    proposed_by: str | None = None


class ApplicationOut(BaseModel):
    id: str
    status: str
    sections: dict[str, dict[str, Any]]
    tax_id: TaxIdOut
    created_at: str
    updated_at: str
    submitted_at: str | None
    decided_at: str | None
    message: str | None = Field(description="What the reviewer asked for, or why refused.")
    consent_version: str | None
    consented_at: str | None
    marketing_opt_in: bool


class StaffApplicationOut(ApplicationOut):
    user_id: str
    masked: bool
    rating: RatingOut
    screening: str | None
    duplicate_tax_id: bool
    duplicate_resolved_by: str | None
    edd_recorded: bool
    address_accepted_by: str | None
    first_approver: str | None
    decided_by: str | None
    blockers: list[str]


class QueueItemOut(BaseModel):
    id: str
    user_id: str
    status: str
    submitted_at: str | None
    rating: str | None
    screening: str | None
    duplicate_tax_id: bool
    first_approver: str | None


class RevealIn(Strict):
    field: Literal["given_names", "family_name", "birth_date", "address"]
    reason: Reason


class RevealedOut(BaseModel):
    field: str
    value: Any


class ReasonIn(Strict):
    reason: Reason


class MessageIn(Strict):
    message: Reason


class NoteIn(Strict):
    note: Annotated[str, Field(min_length=20, max_length=2000)]


class RatingIn(Strict):
    rating: Literal["low", "medium", "high"]
    reason: Reason


class InventoryEntryOut(BaseModel):
    field: str
    purpose: str
    legal_basis: str
    required: str
    retention: str
    data_class: str


class InventoryOut(BaseModel):
    terms_version: str
    entries: list[InventoryEntryOut]
