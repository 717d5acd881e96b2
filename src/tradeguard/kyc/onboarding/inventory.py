"""The data inventory of the account application (PRIV-1): every field collected, why
(purpose), on what legal basis, whether it is required, how long it is kept and under which
data class it is encrypted. Served read-only at GET /api/v1/kyc/inventory and shown in
docs/kyc.md; a test proves it lists every field of the application and nothing else.

Pure: the standard library and the crypto data classes' names only.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradeguard.crypto.classes import DataClass

CIP = "CIP, 31 CFR 1023.220(a)(2) and FinCEN CDD, 31 CFR 1010.230"
FINRA_4512 = "FINRA Rule 4512 (customer account information)"
FINRA_3210 = "FINRA Rule 3210 / 4512(a)(1)(D) (accounts of associated persons)"
FINRA_2111 = "FINRA Rules 2090 and 2111 (know your customer, suitability)"
AML = "Bank Secrecy Act AML program, 31 CFR 1023.210 (customer risk profile)"
CONSENT = "consent (opt-in; withdrawable at any time)"
# CIP records: five years after the account is closed (31 CFR 1023.220(a)(3)(ii)); books
# and records of accounts: six years after closure (SEA Rule 17a-4(c)); the longer applies
# to fields kept under both.
CIP_RETENTION = "5 years after the account is closed (31 CFR 1023.220(a)(3)(ii))"
BOOKS_RETENTION = "6 years after the account is closed (SEA Rule 17a-4(c))"
CONSENT_RETENTION = "until withdrawn, then the record of consent for 3 years"


@dataclass(frozen=True, slots=True)
class InventoryEntry:
    field: str  # section.name, as in the application's schema
    purpose: str
    legal_basis: str
    required: str  # "yes", "no", or when it is required
    retention: str
    data_class: str  # the keyring class it is encrypted under


def _entry(field: str, purpose: str, basis: str, required: str, retention: str) -> InventoryEntry:
    data_class = DataClass.TAX_ID if field == "identity.tax_id" else DataClass.PERSONAL_DETAILS
    return InventoryEntry(field, purpose, basis, required, retention, data_class.value)


_ID = "verify identity and screen against sanctions lists"
INVENTORY: tuple[InventoryEntry, ...] = (
    _entry("identity.given_names", _ID, CIP, "yes", CIP_RETENTION),
    _entry("identity.family_name", _ID, CIP, "yes", CIP_RETENTION),
    _entry("identity.birth_date", f"{_ID}; minimum age", CIP, "yes", CIP_RETENTION),
    _entry("identity.nationality", f"{_ID}; country risk", CIP, "yes", CIP_RETENTION),
    _entry(
        "identity.tax_id",
        "identification number for CIP and tax reporting; duplicate detection (blind index)",
        CIP,
        "yes for US persons; a non-US person may give a foreign id or a reason",
        CIP_RETENTION,
    ),
    _entry("identity.tax_id_country", "which country issued the tax id", CIP, "no", CIP_RETENTION),
    _entry(
        "identity.no_tax_id_reason",
        "why a non-US person gives no tax id (documented exception)",
        CIP,
        "when a non-US person gives no tax id",
        CIP_RETENTION,
    ),
    _entry("address.line1", "residential address (no PO box)", CIP, "yes", CIP_RETENTION),
    _entry("address.line2", "residential address", CIP, "no", CIP_RETENTION),
    _entry("address.city", "residential address", CIP, "yes", CIP_RETENTION),
    _entry("address.region", "residential address", CIP, "yes in the US", CIP_RETENTION),
    _entry("address.postal_code", "residential address", CIP, "yes in the US", CIP_RETENTION),
    _entry("address.country", f"residential address; {_ID}", CIP, "yes", CIP_RETENTION),
    _entry("employment.status", "customer profile", FINRA_4512, "yes", BOOKS_RETENTION),
    _entry("employment.employer", "customer profile", FINRA_4512, "when working", BOOKS_RETENTION),
    _entry(
        "employment.occupation",
        "customer profile; AML risk rating",
        FINRA_4512,
        "when working",
        BOOKS_RETENTION,
    ),
    _entry(
        "employment.broker_dealer_affiliated",
        "notify the employing member firm",
        FINRA_3210,
        "yes",
        BOOKS_RETENTION,
    ),
    _entry(
        "employment.broker_dealer_name",
        "notify the employing member firm",
        FINRA_3210,
        "when affiliated",
        BOOKS_RETENTION,
    ),
    _entry(
        "employment.control_person",
        "Rule 144 and insider-trading controls",
        FINRA_4512,
        "yes",
        BOOKS_RETENTION,
    ),
    _entry(
        "employment.control_person_symbols",
        "restricted symbols for the customer",
        FINRA_4512,
        "when a control person",
        BOOKS_RETENTION,
    ),
    _entry(
        "employment.politically_exposed",
        "enhanced due diligence of PEPs",
        AML,
        "yes",
        CIP_RETENTION,
    ),
    _entry("employment.pep_details", "enhanced due diligence", AML, "when a PEP", CIP_RETENTION),
    _entry("funding.source_of_funds", "AML risk rating", AML, "yes", CIP_RETENTION),
    _entry("funding.source_of_funds_details", "AML risk rating", AML, "when other", CIP_RETENTION),
    _entry("funding.source_of_wealth", "AML risk rating; EDD", AML, "yes", CIP_RETENTION),
    _entry("funding.source_of_wealth_details", "AML risk rating", AML, "when other", CIP_RETENTION),
    _entry("profile.annual_income", "suitability", FINRA_2111, "yes", BOOKS_RETENTION),
    _entry("profile.net_worth", "suitability", FINRA_2111, "yes", BOOKS_RETENTION),
    _entry("profile.liquid_net_worth", "suitability", FINRA_2111, "yes", BOOKS_RETENTION),
    _entry("profile.experience", "suitability", FINRA_2111, "yes", BOOKS_RETENTION),
    _entry("profile.options_experience", "suitability", FINRA_2111, "yes", BOOKS_RETENTION),
    _entry("profile.objectives", "suitability", FINRA_2111, "yes", BOOKS_RETENTION),
    _entry("profile.risk_tolerance", "suitability", FINRA_2111, "yes", BOOKS_RETENTION),
    _entry("profile.time_horizon", "suitability", FINRA_2111, "yes", BOOKS_RETENTION),
    _entry(
        "profile.margin_requested",
        "suitability; AML risk rating",
        FINRA_2111,
        "yes",
        BOOKS_RETENTION,
    ),
    _entry(
        "profile.expected_monthly_deposits",
        "expected activity for AML monitoring",
        AML,
        "yes",
        CIP_RETENTION,
    ),
    _entry(
        "profile.expected_monthly_withdrawals",
        "expected activity for AML monitoring",
        AML,
        "yes",
        CIP_RETENTION,
    ),
    _entry(
        "preferences.marketing_opt_in",
        "product news by email",
        CONSENT,
        "no (off unless the customer opts in)",
        CONSENT_RETENTION,
    ),
)


# What the other KYC/AML parts hold about the customer beyond the application's fields
# (PRIV-1): identity documents, screening, enhanced due diligence, payees, AML work. Each
# names its table and column; a test proves every sealed column of those tables is listed.
AML_RETENTION = "5 years after the filing or the case is closed (31 CFR 1023.320(d), 1010.306)"
SANCTIONS = "OFAC sanctions compliance, 31 CFR Chapter V (screening and its records)"
CLEAR = "clear (access-controlled, scrubbed of secrets)"


_DOC = DataClass.KYC_DOCUMENT.value
_PERSONAL = DataClass.PERSONAL_DETAILS.value
_BANK = DataClass.BANK_DETAILS.value
RECORDS: tuple[InventoryEntry, ...] = (
    InventoryEntry(
        "kyc_document_chunks.blob",
        "the identity document's and the proof of address's images or PDF, to verify identity",
        CIP,
        "yes before approval",
        CIP_RETENTION,
        _DOC,
    ),
    InventoryEntry(
        "kyc_documents.data_key_enc",
        "the per-document key the images are encrypted under",
        CIP,
        "yes with each document",
        CIP_RETENTION,
        _DOC,
    ),
    InventoryEntry(
        "kyc_documents.fields_enc",
        "what the document says: the MRZ and the fields the verification provider read "
        "(name, birth date, document number, expiry, nationality)",
        CIP,
        "yes with each identity document",
        CIP_RETENTION,
        _DOC,
    ),
    InventoryEntry(
        "kyc_documents.provider_reference",
        "the verification provider's reference for its check",
        CIP,
        "when a provider checked the document",
        CIP_RETENTION,
        CLEAR,
    ),
    InventoryEntry(
        "kyc_documents.review_reason",
        "a reviewer's reason for accepting or refusing a document",
        CIP,
        "when a person reviewed it",
        CIP_RETENTION,
        CLEAR,
    ),
    InventoryEntry(
        "kyc_applications.edd_note_enc",
        "enhanced due diligence: the source-of-wealth evidence a reviewer saw",
        AML,
        "yes for a high-risk customer",
        CIP_RETENTION,
        _PERSONAL,
    ),
    InventoryEntry(
        "kyc_applications.rating_factors",
        "the customer's risk rating and the factors behind it",
        AML,
        "yes (computed)",
        CIP_RETENTION,
        CLEAR,
    ),
    InventoryEntry(
        "sanctions_hits.matched_name",
        "the list entry's name the customer or payee resembled",
        SANCTIONS,
        "when screening finds a possible match",
        CIP_RETENTION,
        CLEAR,
    ),
    InventoryEntry(
        "sanctions_hits.reasons_enc",
        "why the screened name, birth date and nationality matched a list entry",
        SANCTIONS,
        "when screening finds a possible match",
        CIP_RETENTION,
        _PERSONAL,
    ),
    InventoryEntry(
        "sanctions_hits.review_note_enc",
        "the reviewer's reason for clearing or confirming a match",
        SANCTIONS,
        "when a match is reviewed",
        CIP_RETENTION,
        _PERSONAL,
    ),
    InventoryEntry(
        "funds_bank_accounts.holder_name_enc",
        "the payee's name, screened against sanctions lists before money is sent",
        SANCTIONS,
        "yes for a new bank account",
        BOOKS_RETENTION,
        _BANK,
    ),
    InventoryEntry(
        "funds_bank_accounts.account_number_enc",
        "where deposits come from and withdrawals go",
        FINRA_4512,
        "yes for a bank account",
        BOOKS_RETENTION,
        _BANK,
    ),
    InventoryEntry(
        "aml_alerts.summary",
        "what a monitoring rule saw in the customer's activity",
        AML,
        "when a rule raises an alert",
        AML_RETENTION,
        CLEAR,
    ),
    InventoryEntry(
        "aml_cases.decision_reason",
        "why an AML case was closed or filed",
        AML,
        "when a case is decided",
        AML_RETENTION,
        CLEAR,
    ),
    InventoryEntry(
        "aml_case_notes.text",
        "investigators' notes on the customer's activity",
        AML,
        "when an investigator writes one",
        AML_RETENTION,
        CLEAR,
    ),
    InventoryEntry(
        "aml_filings.document_enc",
        "a CTR or SAR as filed: the customer's identity, address and tax id",
        AML,
        "when a report is due",
        AML_RETENTION,
        _PERSONAL,
    ),
)
