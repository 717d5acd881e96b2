"""The account application's rules, field by field: FinCEN's Customer Identification Program
(31 CFR 1023.220(a)(2): name, date of birth, address, identification number), FINRA 4512
(employment, broker-dealer affiliation, control persons) and FINRA 2090/2111 (the investment
profile).

A draft may leave fields out; every field given is checked as it is saved, and `missing`
names what a submission still needs. Errors name the field and never echo its value.
Pure: the standard library and core only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from tradeguard.core.errors import InvalidInput
from tradeguard.kyc.onboarding.countries import ISO_ALPHA2
from tradeguard.kyc.onboarding.domain import (
    WORKING,
    EmploymentStatus,
    Experience,
    FundsSource,
    IncomeBand,
    Objective,
    Occupation,
    RiskTolerance,
    TaxIdKind,
    TimeHorizon,
    WealthBand,
)

MAX_NAME = 100
MAX_TEXT = 500
MAX_AMOUNT = Decimal(1_000_000_000)
# Nobody alive was born before this (the oldest verified person lived 122 years).
OLDEST_YEARS = 120


class ApplicationInvalid(InvalidInput):
    """A field of the application is not acceptable (422); `field` names it (its value is
    never repeated back: it may be a tax id or a date of birth)."""

    slug = "application-invalid"
    title = "The application is not valid"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", field=field)
        self.field = field


# The application's schema: section -> field -> whether a submission needs it. Conditional
# needs (employer only when working, ...) are checked in `missing`.
SCHEMA: dict[str, dict[str, bool]] = {
    "identity": {
        "given_names": True,
        "family_name": True,
        "birth_date": True,
        "nationality": True,
        "tax_id": False,
        "tax_id_country": False,
        "no_tax_id_reason": False,
    },
    "address": {
        "line1": True,
        "line2": False,
        "city": True,
        "region": False,
        "postal_code": False,
        "country": True,
    },
    "employment": {
        "status": True,
        "employer": False,
        "occupation": False,
        "broker_dealer_affiliated": True,
        "broker_dealer_name": False,
        "control_person": True,
        "control_person_symbols": False,
        "politically_exposed": True,
        "pep_details": False,
    },
    "funding": {
        "source_of_funds": True,
        "source_of_funds_details": False,
        "source_of_wealth": True,
        "source_of_wealth_details": False,
    },
    "profile": {
        "annual_income": True,
        "net_worth": True,
        "liquid_net_worth": True,
        "experience": True,
        "options_experience": True,
        "objectives": True,
        "risk_tolerance": True,
        "time_horizon": True,
        "margin_requested": True,
        "expected_monthly_deposits": True,
        "expected_monthly_withdrawals": True,
    },
    "preferences": {
        "marketing_opt_in": False,
    },
}

# Advertising and otherwise known-invalid SSNs: the Woolworth wallet card's 078-05-1120 and
# the SSA's advertising block 987-65-4320 to 987-65-4329 (already refused by area 9xx).
KNOWN_INVALID_SSNS = frozenset({"078051120", "219099999", "457555462", "123456789"})
# ITIN group numbers (the fourth and fifth digits) the IRS issues.
ITIN_GROUPS = frozenset([*range(50, 66), *range(70, 89), *range(90, 93), *range(94, 100)])
# Matched against the NFKC-normalised, case-folded line with accents removed, so fullwidth
# letters (U+FF30 "P" and its kin) and accented forms ("Boîte postale") are caught too.
_PO_BOX = re.compile(
    r"\b(p\.?\s*o\.?\s*box|post\s+office\s+box|postal\s+box|p\.?\s*o\.?\s*b\b\.?|"
    r"pob\s*\d|box\s*#?\s*\d+$|general\s+delivery|pmb\b|private\s+mail\s*box|"
    r"lock(ed)?\s+bag|postfach|apartado|boite\s+postale|caixa\s+postal|casilla\b|"
    r"postbus|postboks|skrytka\s+pocztowa|casella\s+postale|gpo\s+box)",
    re.IGNORECASE | re.ASCII,
)
_ZIP = re.compile(r"[0-9]{5}(-[0-9]{4})?")
# Postal codes of any country: ASCII letters, digits, spaces and hyphens only.
_POSTAL = re.compile(r"[A-Z0-9][A-Z0-9 -]{1,11}")
# USPS state, district and territory codes (a US address's region).
US_REGIONS = frozenset(
    {
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "AS",
        "GU",
        "MP",
        "PR",
        "VI",
        "UM",
        "AA",
        "AE",
        "AP",
    }
)
_SYMBOL = re.compile(r"[A-Z][A-Z0-9.]{0,9}")
_FOREIGN_TAX_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ./-]{2,29}")
# Letters of any script, combining marks, spaces, apostrophes, hyphens and periods: nothing
# else (no digits, symbols, emoji, control or format characters such as U+202E or U+200B).
_NAME_PUNCTUATION = frozenset(" '-.\u2019")


@dataclass(frozen=True, slots=True)
class TaxId:
    kind: TaxIdKind
    value: str  # normalized: digits for an SSN or ITIN, the country and id for a foreign one
    last4: str


def _text(field: str, value: Any, *, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise ApplicationInvalid(field, "must be text")
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ApplicationInvalid(field, "must not be empty")
    if len(cleaned) > limit:
        raise ApplicationInvalid(field, f"at most {limit} characters")
    return cleaned


def _name(field: str, value: Any) -> str:
    if isinstance(value, str) and any(unicodedata.category(ch)[0] == "C" for ch in value):
        raise ApplicationInvalid(field, "letters, spaces, apostrophes, hyphens and periods only")
    cleaned = _text(field, value, limit=MAX_NAME)
    allowed = all(ch in _NAME_PUNCTUATION or unicodedata.category(ch)[0] in "LM" for ch in cleaned)
    if not allowed or not any(ch.isalpha() for ch in cleaned):
        raise ApplicationInvalid(field, "letters, spaces, apostrophes, hyphens and periods only")
    return cleaned


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ApplicationInvalid(field, "must be true or false")
    return value


def _choice(field: str, value: Any, kind: type[Any]) -> str:
    try:
        return str(kind(value).value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ApplicationInvalid(field, f"must be one of {allowed}") from None


def _choices(field: str, value: Any, kind: type[Any]) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ApplicationInvalid(field, "must be a non-empty list")
    picked = [_choice(field, item, kind) for item in value]
    if len(set(picked)) != len(picked):
        raise ApplicationInvalid(field, "lists each value once")
    return sorted(picked)


def country_code(field: str, value: Any) -> str:
    if not isinstance(value, str) or value.strip().upper() not in ISO_ALPHA2:
        raise ApplicationInvalid(field, "must be an ISO 3166-1 alpha-2 country code such as US")
    return value.strip().upper()


def _amount(field: str, value: Any) -> str:
    try:
        amount = Decimal(str(value).strip()) if isinstance(value, str | int) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or not 0 <= amount <= MAX_AMOUNT:
        raise ApplicationInvalid(field, "must be an amount in USD from 0 to 1000000000")
    if amount != amount.quantize(Decimal("0.01")):
        raise ApplicationInvalid(field, "has at most 2 decimal places")
    return f"{amount:.2f}"


def birth_date(field: str, value: Any, *, today: date, min_age: int) -> str:
    try:
        born = date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        born = None
    if born is None:
        raise ApplicationInvalid(field, "must be a date such as 1980-04-30")
    if born > today:
        raise ApplicationInvalid(field, "is in the future")
    if age_on(born, today) >= OLDEST_YEARS:
        raise ApplicationInvalid(field, "is not plausible")
    if age_on(born, today) < min_age:
        raise ApplicationInvalid(field, f"the account holder must be at least {min_age}")
    return born.isoformat()


def age_on(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def valid_ssn(digits: str) -> bool:
    """SSA rules for issued numbers: area not 000, 666 or 900-999; group not 00; serial not
    0000; and none of the numbers known to be invalid (advertising, the Woolworth card)."""
    if not re.fullmatch(r"\d{9}", digits):
        return False
    area, group, serial = int(digits[:3]), int(digits[3:5]), int(digits[5:])
    if area in {0, 666} or area >= 900:
        return False
    if group == 0 or serial == 0:
        return False
    return digits not in KNOWN_INVALID_SSNS and len(set(digits)) > 1


def valid_itin(digits: str) -> bool:
    """IRS ITINs: 9XX-GG-XXXX with group GG in 50-65, 70-88, 90-92 or 94-99."""
    return bool(re.fullmatch(r"9\d{8}", digits)) and int(digits[3:5]) in ITIN_GROUPS


def us_tax_id(field: str, value: Any) -> TaxId:
    """An SSN or ITIN written as 123-45-6789, 123 45 6789 or 123456789."""
    # ASCII digits only: fullwidth or Arabic-Indic digits would slip past the duplicate
    # check (another blind index) and be stored as such.
    if not isinstance(value, str) or not re.fullmatch(
        r"[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}", value.strip(), re.ASCII
    ):
        raise ApplicationInvalid(field, "must be 9 digits such as 123-45-6789")
    digits = "".join(ch for ch in value if ch in "0123456789")
    if digits.startswith("9"):
        if valid_itin(digits):
            return TaxId(TaxIdKind.ITIN, digits, digits[-4:])
        raise ApplicationInvalid(field, "is not a valid ITIN")
    if valid_ssn(digits):
        return TaxId(TaxIdKind.SSN, digits, digits[-4:])
    raise ApplicationInvalid(field, "is not a valid Social Security number")


def foreign_tax_id(field: str, value: Any, country: str) -> TaxId:
    if not isinstance(value, str) or not _FOREIGN_TAX_ID.fullmatch(value.strip()):
        raise ApplicationInvalid(field, "must be 3 to 30 letters, digits, spaces, . / or -")
    normalized = "".join(ch for ch in value.upper() if ch.isascii() and ch.isalnum())
    return TaxId(TaxIdKind.FOREIGN, f"{country}:{normalized}", normalized[-4:])


@dataclass(frozen=True, slots=True)
class Cleaned:
    """A saved draft's sections as stored (without the tax id) and the tax id, if given."""

    sections: dict[str, dict[str, Any]]
    tax_id: TaxId | None


def clean(
    given: Mapping[str, Mapping[str, Any] | None],
    *,
    today: date,
    min_age: int,
    tax_id_country: str = "US",
) -> Cleaned:
    """Check every field given; returns the stored form. Unknown sections or fields are
    refused (the API's schema already forbids them)."""
    sections: dict[str, dict[str, Any]] = {}
    tax: TaxId | None = None
    for section, fields in given.items():
        if section not in SCHEMA:
            raise ApplicationInvalid(section, "is not a section of the application")
        if fields is None:
            continue
        out: dict[str, Any] = {}
        for name, value in fields.items():
            path = f"{section}.{name}"
            if name not in SCHEMA[section]:
                raise ApplicationInvalid(path, "is not a field of the application")
            if value is None:
                continue
            out[name] = _field(path, value, today=today, min_age=min_age)
        sections[section] = out
    identity = given.get("identity") or {}
    if identity.get("tax_id") is not None:
        identity_out = sections["identity"]
        raw = identity_out.pop("tax_id")
        # The country given now, else the one saved before: a tax id is US unless said.
        country = identity_out.get("tax_id_country", tax_id_country)
        tax = (
            us_tax_id("identity.tax_id", raw)
            if country == "US"
            else foreign_tax_id("identity.tax_id", raw, country)
        )
    return Cleaned(sections, tax)


def _field(path: str, value: Any, *, today: date, min_age: int) -> Any:  # noqa: C901, PLR0912 - one branch per field kind
    name = path.split(".", 1)[1]
    if path in ("identity.given_names", "identity.family_name"):
        return _name(path, value)
    if path == "identity.birth_date":
        return birth_date(path, value, today=today, min_age=min_age)
    if name in ("nationality", "country", "tax_id_country"):
        return country_code(path, value)
    if path == "identity.tax_id":
        if not isinstance(value, str):
            raise ApplicationInvalid(path, "must be text")
        return value
    if path == "address.postal_code":
        postal = _text(path, value, limit=12).upper()
        if not _POSTAL.fullmatch(postal):
            raise ApplicationInvalid(path, "ASCII letters, digits, spaces and hyphens only")
        return postal
    if path in ("address.line1", "address.line2", "address.city", "address.region"):
        return _text(path, value, limit=120)
    if path == "employment.status":
        return _choice(path, value, EmploymentStatus)
    if path == "employment.occupation":
        return _choice(path, value, Occupation)
    if name in (
        "broker_dealer_affiliated",
        "control_person",
        "politically_exposed",
        "options_experience",
        "margin_requested",
        "marketing_opt_in",
    ):
        return _bool(path, value)
    if path == "employment.control_person_symbols":
        if not isinstance(value, list) or not value or len(value) > 20:
            raise ApplicationInvalid(path, "must be a list of 1 to 20 ticker symbols")
        symbols = [str(item).strip().upper() for item in value]
        if not all(_SYMBOL.fullmatch(symbol) for symbol in symbols):
            raise ApplicationInvalid(path, "each entry must be a ticker symbol such as ACME")
        return sorted(set(symbols))
    if name in ("source_of_funds", "source_of_wealth"):
        return _choices(path, value, FundsSource)
    if path == "profile.annual_income":
        return _choice(path, value, IncomeBand)
    if path in ("profile.net_worth", "profile.liquid_net_worth"):
        return _choice(path, value, WealthBand)
    if path == "profile.experience":
        return _choice(path, value, Experience)
    if path == "profile.objectives":
        return _choices(path, value, Objective)
    if path == "profile.risk_tolerance":
        return _choice(path, value, RiskTolerance)
    if path == "profile.time_horizon":
        return _choice(path, value, TimeHorizon)
    if name.startswith("expected_monthly_"):
        return _amount(path, value)
    # Free text: employer, broker-dealer name, no-tax-id reason, details.
    return _text(path, value)


def missing(  # noqa: C901, PLR0912 - one branch per cross-field rule
    sections: Mapping[str, Mapping[str, Any]], has_tax_id: bool
) -> list[str]:
    """The fields a submission still needs, and the cross-field rules it breaks."""
    needed: list[str] = []
    for section, fields in SCHEMA.items():
        given = sections.get(section, {})
        needed += [f"{section}.{name}" for name, req in fields.items() if req and name not in given]
    identity = sections.get("identity", {})
    address = sections.get("address", {})
    employment = sections.get("employment", {})
    funding = sections.get("funding", {})
    profile = sections.get("profile", {})
    # CIP: a US person gives a taxpayer identification number; a non-US person a foreign
    # one (with its country) or none, with the reason documented (31 CFR 1023.220(a)(2)(i)).
    us_person = identity.get("nationality") == "US" or address.get("country") == "US"
    if us_person and not has_tax_id:
        needed.append("identity.tax_id")
    if not us_person and not has_tax_id and "no_tax_id_reason" not in identity:
        needed.append("identity.no_tax_id_reason")
    if address.get("country") == "US":
        for name in ("region", "postal_code"):
            if name not in address:
                needed.append(f"address.{name}")
    if employment.get("status") in WORKING:
        needed += [f"employment.{n}" for n in ("employer", "occupation") if n not in employment]
    if employment.get("broker_dealer_affiliated") and "broker_dealer_name" not in employment:
        needed.append("employment.broker_dealer_name")
    if employment.get("control_person") and "control_person_symbols" not in employment:
        needed.append("employment.control_person_symbols")
    if employment.get("politically_exposed") and "pep_details" not in employment:
        needed.append("employment.pep_details")
    for kind in ("funds", "wealth"):
        if FundsSource.OTHER.value in funding.get(f"source_of_{kind}", []) and (
            f"source_of_{kind}_details" not in funding
        ):
            needed.append(f"funding.source_of_{kind}_details")
    order = list(WealthBand)
    liquid, total = profile.get("liquid_net_worth"), profile.get("net_worth")
    if liquid and total and order.index(WealthBand(liquid)) > order.index(WealthBand(total)):
        needed.append("profile.liquid_net_worth (cannot exceed net_worth)")
    return needed


def check_address(sections: Mapping[str, Mapping[str, Any]]) -> None:
    """Cross-field rules of the residential address, checked on every save."""
    address = sections.get("address", {})
    for line in ("line1", "line2"):
        if line in address and _PO_BOX.search(_folded(address[line])):
            raise ApplicationInvalid(
                f"address.{line}", "a residential address cannot be a PO box or general delivery"
            )
    region = address.get("region")
    if address.get("country") == "US" and region is not None and region not in US_REGIONS:
        raise ApplicationInvalid(
            "address.region", "must be a USPS state or territory code such as NY"
        )
    postal = address.get("postal_code")
    if address.get("country") == "US" and postal is not None and not _ZIP.fullmatch(postal):
        raise ApplicationInvalid("address.postal_code", "must be a US ZIP code such as 10001")
    identity = sections.get("identity", {})
    if identity.get("no_tax_id_reason") and identity.get("nationality") == "US":
        raise ApplicationInvalid(
            "identity.no_tax_id_reason", "a US person gives their SSN or ITIN instead"
        )


def _folded(line: str) -> str:
    """NFKC (fullwidth to ASCII), accents dropped, case folded: how the PO-box rule reads."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", line))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def check_tax_id_kind(sections: Mapping[str, Mapping[str, Any]], kind: str | None) -> None:
    """A US person (US nationality or a US residential address) gives an SSN or ITIN: a
    foreign tax id alone does not do (31 CFR 1023.220(a)(2)(i)(A)(4)(i))."""
    identity, address = sections.get("identity", {}), sections.get("address", {})
    us_person = identity.get("nationality") == "US" or address.get("country") == "US"
    if us_person and kind == TaxIdKind.FOREIGN.value:
        raise ApplicationInvalid("identity.tax_id", "a US person gives their SSN or ITIN")


def check_declarations(sections: Mapping[str, Mapping[str, Any]]) -> None:
    """Cross-field rules of the profile and funding checked on every save (as far as the
    fields are there): liquid net worth within net worth."""
    profile = sections.get("profile", {})
    order = list(WealthBand)
    liquid, total = profile.get("liquid_net_worth"), profile.get("net_worth")
    if liquid and total and order.index(WealthBand(liquid)) > order.index(WealthBand(total)):
        raise ApplicationInvalid("profile.liquid_net_worth", "cannot exceed net_worth")
