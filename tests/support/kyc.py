"""The real KYC parts arranged for tests of the parts that read them (issue #13).

No stand-ins: an application saved and submitted through the customer API (or, where a
test needs an approved customer and onboarding itself is not under test, recorded through
onboarding's audited import path, the one the demo uses); identity documents uploaded
through the documents API with an MRZ made here for the applicant, so the documents' own
checks and the sandbox provider decide; screening by the real sanctions service against
the OFAC sample list read in place; staff decisions through the admin APIs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import Api
from tests.support.kyc_applications import application
from tests.support.kyc_documents import upload
from tests.support.kyc_files import jpeg, pdf
from tests.support.trading import Trader
from tradeguard.access.domain import Role
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.db.engine import unit_of_work
from tradeguard.kyc.documents.container import DocumentServices
from tradeguard.kyc.onboarding.container import OnboardingServices
from tradeguard.kyc.sanctions.container import SanctionsServices
from tradeguard.ledger.domain import Party

APPLICATION = "/api/v1/kyc/application"
ADMIN_APPLICATIONS = "/api/v1/admin/kyc/applications"
SANCTIONS_HITS = "/api/v1/admin/sanctions/hits"
# OFAC's 17-entry sample (sdn.csv, alt.csv, add.csv), read in place, never copied here.
SDN_SAMPLE = Path("/work/shared/data/ofac/sdn-sample")
# A listed individual of the sample: sdn.csv 15102 "MORENO, Daniel", DOB 12 Oct 1972.
LISTED = {"given_names": "Daniel", "family_name": "Moreno", "birth_date": "1972-10-12"}
LISTED_ENTRY = "15102"
# Who records an imported (verified before this system) customer, and loads the list.
OPERATOR = Party("operator", "tester")

# ICAO Doc 9303 Part 3 three-letter codes of the nationalities the tests use.
_ICAO = {"US": "USA", "GB": "GBR", "DE": "D<<", "IR": "IRN", "FR": "FRA"}


def onboarding_of(api: Api) -> OnboardingServices:
    services: OnboardingServices = api.app.state.onboarding
    return services


def documents_of(api: Api) -> DocumentServices:
    services: DocumentServices = api.app.state.kyc_documents
    return services


def sanctions_of(api: Api) -> SanctionsServices:
    services: SanctionsServices = api.app.state.sanctions
    return services


def today(api: Api) -> date:
    """The test clock's day (UTC)."""
    return datetime.fromtimestamp(api.clock.now_ns() // NS_PER_SECOND, UTC).date()


# Applications -------------------------------------------------------------------------------


async def submitted(who: Trader, body: Mapping[str, Any]) -> str:
    """The customer saves the application and submits it (screened and rated on submit)."""
    saved = await who.put(APPLICATION, dict(body))
    assert saved.status_code == 200, saved.text
    done = await who.post(f"{APPLICATION}/submit")
    assert done.status_code == 200, done.text
    return str(done.json()["id"])


async def imported(
    api: Api,
    user_id: str,
    body: Mapping[str, Mapping[str, Any]],
    *,
    reason: str = "customer verified before this system (test back-book)",
) -> str:
    """An approved application recorded through onboarding's audited import path
    (`kyc:application:imported`), as the demo seeds its verified customers."""
    services = onboarding_of(api)
    async with unit_of_work(services.sessions) as session:
        row = await services.applications.import_approved(
            session, user_id=user_id, sections=body, actor=OPERATOR, reason=reason
        )
        return row.id


async def approve(reviewer: Trader, application_id: str) -> dict[str, Any]:
    """A compliance reviewer approves through the admin API; nothing may block it."""
    response = await reviewer.post(f"{ADMIN_APPLICATIONS}/{application_id}/approve")
    assert response.status_code == 200, response.text
    approved: dict[str, Any] = response.json()
    return approved


# Identity documents -------------------------------------------------------------------------


def _value(ch: str) -> int:
    if ch.isdigit():
        return int(ch)
    if ch == "<":
        return 0
    return ord(ch) - ord("A") + 10


def mrz_check_digit(field: str) -> str:
    """ICAO Doc 9303 Part 3, 4.9: weights 7, 3, 1 repeating; `<` is 0, A-Z are 10-35."""
    weights = (7, 3, 1)
    return str(sum(_value(ch) * weights[i % 3] for i, ch in enumerate(field)) % 10)


def _mrz_name(text: str) -> str:
    return "<".join(part for part in text.upper().replace("-", " ").split())


def _padded(value: str, width: int) -> str:
    return value[:width].ljust(width, "<")


def passport_mrz(
    identity: Mapping[str, Any],
    *,
    on: date,
    number: str = "C01X00T47",
    valid_years: int = 5,
    sex: str = "F",
) -> str:
    """A TD3 (passport) MRZ for the application's identity section, every check digit
    right (Doc 9303 Part 4), expiring `valid_years` after `on` (the test clock's day)."""
    nationality = _ICAO[identity["nationality"]]
    born = date.fromisoformat(identity["birth_date"]).strftime("%y%m%d")
    expires = (on + timedelta(days=365 * valid_years)).strftime("%y%m%d")
    names = f"{_mrz_name(identity['family_name'])}<<{_mrz_name(identity['given_names'])}"
    line1 = "P<" + nationality + _padded(names, 39)
    document = _padded(number, 9)
    optional = "<" * 14
    body = (
        document
        + mrz_check_digit(document)
        + nationality
        + born
        + mrz_check_digit(born)
        + sex
        + expires
        + mrz_check_digit(expires)
        + optional
        + mrz_check_digit(optional)
    )
    composite = mrz_check_digit(body[0:10] + body[13:20] + body[21:43])
    return line1 + "\n" + body + composite


async def upload_passport(
    api: Api, who: Trader, identity: Mapping[str, Any], *, number: str = "C01X00T47"
) -> dict[str, Any]:
    """The customer uploads a passport (a real JPEG) with an MRZ made for `identity`."""
    response = await upload(
        who, jpeg(), mrz=passport_mrz(identity, on=today(api), number=number), side="front"
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def upload_proof_of_address(who: Trader) -> dict[str, Any]:
    """The customer uploads a proof of address (a real one-page PDF)."""
    response = await upload(
        who, pdf(), kind="proof_of_address", filename="bill.pdf", content_type="application/pdf"
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def verified_documents(api: Api, who: Trader, identity: Mapping[str, Any]) -> tuple[str, str]:
    """A passport and a proof of address the real checks verify: their ids."""
    passport = await upload_passport(api, who, identity)
    assert passport["status"] == "verified", passport
    bill = await upload_proof_of_address(who)
    assert bill["status"] == "verified", bill
    return str(passport["id"]), str(bill["id"])


# Sanctions screening ------------------------------------------------------------------------


def sample_list() -> Path:
    if not SDN_SAMPLE.is_dir():
        pytest.skip("the OFAC sample files are not present")
    return SDN_SAMPLE


async def load_sample_list(api: Api) -> str:
    """The OFAC sample list loaded by the real sanctions service: its version id."""
    directory = str(sample_list())
    services = sanctions_of(api)
    files = await services.service.fetch(directory)
    async with unit_of_work(services.sessions) as session:
        result = await services.service.load(session, files, source=directory, actor=OPERATOR)
    return str(result.version.id)


async def open_hits(reviewer: Trader, user_id: str) -> list[dict[str, Any]]:
    response = await reviewer.get(SANCTIONS_HITS, params={"subject_ref": user_id, "status": "open"})
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()
    return hits


async def clear_hits(reviewer: Trader, user_id: str, reason: str) -> int:
    """A sanctions reviewer clears the customer's open hits as false positives."""
    hits = await open_hits(reviewer, user_id)
    for hit in hits:
        cleared = await reviewer.post(f"{SANCTIONS_HITS}/{hit['id']}/clear", {"reason": reason})
        assert cleared.status_code == 200, cleared.text
    return len(hits)


async def declared(
    who: Trader,
    *,
    given_names: str = "Anna Maria",
    family_name: str = "Eriksson",
    birth_date: str = "1974-08-12",
    nationality: str = "DE",
    country: str = "DE",
) -> dict[str, Any]:
    """The customer's draft application with their identity and address saved through the
    customer API: what identity documents are checked against (a draft is enough)."""
    identity = {
        "given_names": given_names,
        "family_name": family_name,
        "birth_date": birth_date,
        "nationality": nationality,
    }
    address = {"line1": "Hauptstrasse 5", "city": "Berlin", "postal_code": "10115"}
    saved = await who.put(
        APPLICATION, {"identity": identity, "address": address | {"country": country}}
    )
    assert saved.status_code == 200, saved.text
    return identity


def british_applicant(**identity: str) -> dict[str, dict[str, Any]]:
    """A complete application of a British national living in London (a UK tax reference
    ending 6789, born 12 April 1985, postcode SW1A 1AA): account recovery's KYC record."""
    return application(
        identity={
            "given_names": "Alice",
            "family_name": "Example",
            "birth_date": "1985-04-12",
            "nationality": "GB",
            "tax_id_country": "GB",
            "tax_id": "12345 06789",
            **identity,
        },
        address={
            "line1": "1 Example Road",
            "line2": None,
            "city": "London",
            "region": None,
            "postal_code": "SW1A 1AA",
            "country": "GB",
        },
    )


async def kyc_record_on_file(api: Api, who: Trader, body: Mapping[str, Mapping[str, Any]]) -> str:
    """An approved application (the audited import path) and a passport the real checks
    verify: the KYC record and identity document on file. The passport's id."""
    await imported(api, who.user_id, body)
    passport = await upload_passport(api, who, body["identity"])
    assert passport["status"] == "verified", passport
    return str(passport["id"])


async def approved_customer(
    api: Api, username: str, identity: Mapping[str, Any], *, tax_id: str
) -> str:
    """A customer account (created by the identity service) with an approved application
    (the audited import path) declaring `identity`: one of onboarding's screening
    subjects. Their user id."""
    async with api.services.unit_of_work() as session:
        user = await api.services.accounts.create_user(
            session,
            username=username,
            email=f"{username}@example.com",
            password="correct horse battery staple 42",
            role=Role.TRADER,
            email_verified=True,
        )
    await imported(api, user.id, application(identity={**identity, "tax_id": tax_id}))
    return user.id
