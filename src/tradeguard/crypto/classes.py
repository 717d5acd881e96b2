"""Data classes of the keyring: each kind of sensitive value has its own keys (ENC-2).

A class's numeric id is written into every ciphertext's header, so ids are never reused or
renumbered; a new kind of data gets the next free id. `legacy_purpose` names the HKDF
purpose the class's data was sealed under before versioned keys (crypto/legacy.py): data in
that format still reads, as version 0 of its class, until `tradeguard keys rewrap` moves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_ROTATION_DAYS = 90  # PCI-4, ENC-1: a cryptoperiod of 90 days unless configured


class DataClass(StrEnum):
    ACCOUNT_NUMBER = "account_number"
    TAX_ID = "tax_id"
    BANK_DETAILS = "bank_details"
    CARD_VAULT = "card_vault"
    AUDIT_PERSONAL = "audit_personal"
    SUBJECT_KEYS = "subject_keys"
    TOTP_SECRET = "totp_secret"  # noqa: S105 - a class name, not a secret
    FACTOR_DESTINATION = "factor_destination"
    REFRESH_SUCCESSOR = "refresh_successor"
    NOTIFY_RECIPIENT = "notify_recipient"
    NOTIFY_BODY = "notify_body"
    BACKUP = "backup"
    KYC_DOCUMENT = "kyc_document"
    PERSONAL_DETAILS = "personal_details"
    API_KEY_SECRET = "api_key_secret"  # noqa: S105 - a class name, not a secret


@dataclass(frozen=True, slots=True)
class ClassSpec:
    data_class: DataClass
    class_id: int
    description: str
    legacy_purpose: str | None = None
    # Its ciphertexts live outside the database (backup files): no usage count can see them,
    # so a zero count proves nothing and its versions never retire on one.
    stored_outside: bool = False
    # Its keys live in the card vault's own database, under the vault's own master key
    # (vault/store.py, PCI-2/PCI-3): the platform's database holds none.
    in_vault: bool = False


CLASS_SPECS: tuple[ClassSpec, ...] = (
    ClassSpec(DataClass.ACCOUNT_NUMBER, 1, "brokerage and bank account numbers"),
    ClassSpec(DataClass.TAX_ID, 2, "SSNs and other tax identifiers"),
    ClassSpec(DataClass.BANK_DETAILS, 3, "bank details of payment methods"),
    ClassSpec(DataClass.CARD_VAULT, 4, "card numbers in the card vault (PCI-2)", in_vault=True),
    ClassSpec(DataClass.AUDIT_PERSONAL, 5, "personal data kept by audit features"),
    ClassSpec(
        DataClass.SUBJECT_KEYS,
        6,
        "the ledger's per-subject data keys (crypto-shredding)",
        legacy_purpose="ledger-subject-key",
    ),
    ClassSpec(
        DataClass.TOTP_SECRET, 7, "TOTP shared secrets", legacy_purpose="identity.totp_secret"
    ),
    ClassSpec(
        DataClass.FACTOR_DESTINATION,
        8,
        "phone numbers and addresses of one-time-code factors",
        legacy_purpose="identity.factor_destination",
    ),
    ClassSpec(
        DataClass.REFRESH_SUCCESSOR,
        9,
        "a spent refresh token's successor (grace-window replay)",
        legacy_purpose="identity.refresh_successor",
    ),
    ClassSpec(
        DataClass.NOTIFY_RECIPIENT,
        10,
        "recipients of queued email and SMS",
        legacy_purpose="notify.recipient",
    ),
    ClassSpec(
        DataClass.NOTIFY_BODY, 11, "bodies of queued email and SMS", legacy_purpose="notify.body"
    ),
    ClassSpec(
        DataClass.BACKUP,
        12,
        "the data key of each database backup (backup/, ENC-1)",
        stored_outside=True,
    ),
    ClassSpec(DataClass.KYC_DOCUMENT, 13, "identity documents and proofs of address (KYC-2)"),
    ClassSpec(
        DataClass.PERSONAL_DETAILS,
        14,
        "names, dates of birth, addresses and profiles collected at onboarding (KYC-1)",
    ),
    ClassSpec(
        DataClass.API_KEY_SECRET, 15, "API key secrets, kept to check request signatures (API-3)"
    ),
)

SPEC_OF: dict[DataClass, ClassSpec] = {spec.data_class: spec for spec in CLASS_SPECS}
# The classes whose keys the platform's own database holds.
PLATFORM_CLASSES: tuple[DataClass, ...] = tuple(
    spec.data_class for spec in CLASS_SPECS if not spec.in_vault
)
CLASS_OF_ID: dict[int, DataClass] = {spec.class_id: spec.data_class for spec in CLASS_SPECS}
CLASS_OF_PURPOSE: dict[str, DataClass] = {
    spec.legacy_purpose: spec.data_class for spec in CLASS_SPECS if spec.legacy_purpose
}


def parse_data_class(name: str) -> DataClass:
    """The class named `name`; ValueError (listing the known names) for anything else."""
    try:
        return DataClass(name)
    except ValueError:
        known = ", ".join(c.value for c in DataClass)
        raise ValueError(f"unknown data class {name!r}; known classes: {known}") from None
