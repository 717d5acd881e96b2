"""FinCEN BSA e-filing batch XML (EFilingBatchXML, namespace `www.fincen.gov/base`): the
FinCEN CTR (form type CTRX, FinCEN Report 112, CTR XML Schema 2.0) and SAR (SARX, Report
111) layouts, and a validator for the element rules this module relies on.

No XSD ships in any package we can install, so `validate` checks the documented rules we
implement (FinCEN's "Electronic Filing Requirements" user guides for CTR and SAR XML):
required elements and their counts, party type codes, the batch totals, dates (YYYYMMDD),
whole-dollar amounts, TINs (9 digits), ZIP codes (5 or 9 digits), state and country codes,
and maximum lengths. docs/aml.md lists them.

Pure: builds and reads `xml.etree.ElementTree` elements; parses only documents it made.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

NS = "www.fincen.gov/base"
PREFIX = "fc2"
ET.register_namespace(PREFIX, NS)

CTR_FORM = "CTRX"
SAR_FORM = "SARX"

# Activity party type codes (the user guides' "ActivityPartyTypeCode" tables).
TRANSMITTER = "35"
TRANSMITTER_CONTACT = "37"
FILING_INSTITUTION = "30"
CONTACT_OFFICE = "8"
LOCATION = "34"  # CTR: transaction location; SAR: the institution where activity occurred
PERSON_INVOLVED = "50"  # CTR: person conducting the transaction on their own behalf
SUBJECT = "33"  # SAR: subject
# Party identification type codes.
TIN_SSN_ITIN = "1"
TIN_EIN = "2"
TIN_TRANSMITTER = "4"
TCC = "28"
# Currency transaction detail type codes: 55 deposit(s) (cash in), 56 withdrawal(s) (out).
DETAIL_DEPOSIT = "55"
DETAIL_WITHDRAWAL = "56"
CASH_IN_DETAILS = frozenset({"55", "46", "23", "12", "14", "49", "18", "21", "25", "997"})
CASH_OUT_DETAILS = frozenset({"56", "30", "32", "13", "15", "48", "28", "33", "31", "998"})
# Primary federal regulator: 7 = SEC (a broker-dealer's), as the user guides list it.
REGULATOR_SEC = "7"
# SAR classification: structuring (type 1) with its subtypes; "other suspicious activities"
# (type 10) for the rules that are not structuring.
SAR_STRUCTURING = "1"
SAR_OTHER = "10"

MAX_NAME = 150
MAX_FIRST_NAME = 35
MAX_STREET = 100
MAX_CITY = 50
MAX_NARRATIVE = 17_000
CTR_THRESHOLD = Decimal(10_000)

_DATE = re.compile(r"^\d{8}$")
_DOLLARS = re.compile(r"^\d{1,15}$")
_TIN = re.compile(r"^\d{9}$")
_ZIP = re.compile(r"^(\d{5}|\d{9})$")
_STATE = re.compile(r"^[A-Z]{2}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_PHONE = re.compile(r"^\d{10,16}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


@dataclass(frozen=True, slots=True)
class Address:
    street: str | None
    city: str | None
    state: str | None
    zip_code: str | None
    country: str | None

    def missing(self, who: str) -> list[str]:
        names = ("street", "city", "state", "zip_code", "country")
        return [f"{who}.address.{n}" for n in names if not getattr(self, n)]


@dataclass(frozen=True, slots=True)
class Filer:
    """The firm as filing institution and transmitter (config.py `aml_filer_*`)."""

    name: str
    tin: str
    address: Address
    contact_office: str
    phone: str
    transmitter_control_code: str

    def missing(self) -> list[str]:
        out = [
            f"filer.{n}"
            for n in ("name", "tin", "contact_office", "phone", "transmitter_control_code")
            if not getattr(self, n)
        ]
        return out + self.address.missing("filer")


@dataclass(frozen=True, slots=True)
class Subject:
    """The person a report is about, from the KYC record at export time."""

    family_name: str | None
    given_name: str | None
    birth_date: date | None
    tin: str | None
    address: Address
    occupation: str | None = None

    def missing(self) -> list[str]:
        out = [
            f"subject.{n}"
            for n in ("family_name", "given_name", "birth_date", "tin")
            if not getattr(self, n)
        ]
        return out + self.address.missing("subject")


@dataclass(frozen=True, slots=True)
class CtrReport:
    reference: str
    day: date
    cash_in: Decimal
    cash_out: Decimal
    subject: Subject
    accounts: tuple[str, ...]
    filing_date: date


@dataclass(frozen=True, slots=True)
class SarReport:
    reference: str
    from_day: date
    to_day: date
    amount: Decimal
    # None: no suspect identified (the subject's facts are reported unknown).
    subject: Subject | None
    narrative: str
    structuring: bool
    filing_date: date
    accounts: tuple[str, ...] = ()


@dataclass(slots=True)
class _Seq:
    n: int = 0

    def next(self) -> str:
        self.n += 1
        return str(self.n)


@dataclass(slots=True)
class _Builder:
    seq: _Seq = field(default_factory=_Seq)

    def el(
        self, parent: ET.Element, tag: str, text: str | None = None, *, seq: bool = False
    ) -> ET.Element:
        child = ET.SubElement(parent, q(tag))
        if seq:
            child.set("SeqNum", self.seq.next())
        if text is not None:
            # XML 1.0 has no place for control characters: a stray one typed into a KYC
            # record must not make the whole batch unreadable.
            child.text = _CONTROL.sub("", text)
        return child

    def party(self, activity: ET.Element, code: str) -> ET.Element:
        party = self.el(activity, "Party", seq=True)
        self.el(party, "ActivityPartyTypeCode", code)
        return party

    def name(self, party: ET.Element, full: str) -> None:
        name = self.el(party, "PartyName", seq=True)
        self.el(name, "PartyNameTypeCode", "L")
        self.el(name, "RawPartyFullName", full[:MAX_NAME])

    def address(self, party: ET.Element, address: Address) -> None:
        el = self.el(party, "Address", seq=True)
        self.el(el, "RawCityText", address.city or "")
        self.el(el, "RawCountryCodeText", address.country or "")
        self.el(el, "RawStateCodeText", address.state or "")
        self.el(el, "RawStreetAddress1Text", address.street or "")
        self.el(el, "RawZIPCode", address.zip_code or "")

    def ident(self, party: ET.Element, number: str, code: str) -> None:
        el = self.el(party, "PartyIdentification", seq=True)
        self.el(el, "PartyIdentificationNumberText", number)
        self.el(el, "PartyIdentificationTypeCode", code)

    def firm_parties(self, activity: ET.Element, filer: Filer, *, sar: bool) -> None:
        transmitter = self.party(activity, TRANSMITTER)
        self.name(transmitter, filer.name)
        self.address(transmitter, filer.address)
        phone = self.el(transmitter, "PhoneNumber", seq=True)
        self.el(phone, "PhoneNumberText", filer.phone)
        self.ident(transmitter, filer.tin, TIN_TRANSMITTER)
        self.ident(transmitter, filer.transmitter_control_code, TCC)
        contact = self.party(activity, TRANSMITTER_CONTACT)
        self.name(contact, filer.contact_office)
        institution = self.party(activity, FILING_INSTITUTION)
        self.el(institution, "PrimaryRegulatorTypeCode", REGULATOR_SEC)
        self.name(institution, filer.name)
        self.address(institution, filer.address)
        self.ident(institution, filer.tin, TIN_EIN)
        office = self.party(activity, CONTACT_OFFICE)
        self.name(office, filer.contact_office)
        office_phone = self.el(office, "PhoneNumber", seq=True)
        self.el(office_phone, "PhoneNumberText", filer.phone)
        location = self.party(activity, LOCATION)
        if not sar:
            self.el(location, "PrimaryRegulatorTypeCode", REGULATOR_SEC)
        self.name(location, filer.name)
        self.address(location, filer.address)
        self.ident(location, filer.tin, TIN_EIN)

    def person(self, party: ET.Element, subject: Subject, accounts: Iterable[str]) -> None:
        if subject.birth_date is not None:
            self.el(party, "IndividualBirthDateText", fincen_date(subject.birth_date))
        name = self.el(party, "PartyName", seq=True)
        self.el(name, "PartyNameTypeCode", "L")
        self.el(name, "RawEntityIndividualLastName", (subject.family_name or "")[:MAX_NAME])
        self.el(name, "RawIndividualFirstName", (subject.given_name or "")[:MAX_FIRST_NAME])
        self.address(party, subject.address)
        self.ident(party, subject.tin or "", TIN_SSN_ITIN)
        if subject.occupation:
            occupation = self.el(party, "PartyOccupationBusiness", seq=True)
            self.el(occupation, "OccupationBusinessText", subject.occupation[:30])
        for number in accounts:
            account = self.el(party, "Account", seq=True)
            self.el(account, "AccountNumberText", number[:40])


def fincen_date(day: date) -> str:
    return day.strftime("%Y%m%d")


def dollars(amount: Decimal) -> str:
    """FinCEN amounts are whole US dollars."""
    return str(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _batch(form: str) -> tuple[ET.Element, ET.Element, _Builder]:
    root = ET.Element(q("EFilingBatchXML"))
    builder = _Builder()
    root.set("SeqNum", builder.seq.next())
    builder.el(root, "FormTypeCode", form)
    activity = builder.el(root, "Activity", seq=True)
    return root, activity, builder


def _counts(root: ET.Element) -> None:
    root.set("ActivityCount", str(len(root.findall(q("Activity")))))
    root.set("PartyCount", str(len(root.findall(f"{q('Activity')}/{q('Party')}"))))


def build_ctr(report: CtrReport, filer: Filer) -> ET.Element:
    """One CTR in its batch: the firm's parties, the person, the day's cash in and out."""
    root, activity, b = _batch(CTR_FORM)
    b.firm_parties(activity, filer, sar=False)
    person = b.party(activity, PERSON_INVOLVED)
    if report.cash_in > 0:
        b.el(person, "IndividualEntityCashInAmountText", dollars(report.cash_in))
    if report.cash_out > 0:
        b.el(person, "IndividualEntityCashOutAmountText", dollars(report.cash_out))
    b.person(person, report.subject, report.accounts)
    b.el(activity, "FilingDateText", fincen_date(report.filing_date))
    association = b.el(activity, "ActivityAssociation", seq=True)
    b.el(association, "InitialReportIndicator", "Y")
    cta = b.el(activity, "CurrencyTransactionActivity", seq=True)
    b.el(cta, "AggregateTransactionIndicator", "Y")
    b.el(cta, "TotalCashInReceiveAmountText", dollars(report.cash_in) if report.cash_in else "")
    b.el(cta, "TotalCashOutAmountText", dollars(report.cash_out) if report.cash_out else "")
    b.el(cta, "TransactionDateText", fincen_date(report.day))
    for code, amount in ((DETAIL_DEPOSIT, report.cash_in), (DETAIL_WITHDRAWAL, report.cash_out)):
        if amount > 0:
            detail = b.el(cta, "CurrencyTransactionActivityDetail", seq=True)
            b.el(detail, "CurrencyTransactionActivityDetailTypeCode", code)
            b.el(detail, "DetailTransactionAmountText", dollars(amount))
    _counts(root)
    root.set("TotalAmount", dollars(report.cash_in + report.cash_out))
    return root


def build_sar(report: SarReport, filer: Filer) -> ET.Element:
    """One SAR in its batch: the firm's parties, the subject (or unknown), the activity and
    the narrative."""
    root, activity, b = _batch(SAR_FORM)
    b.firm_parties(activity, filer, sar=True)
    subject = b.party(activity, SUBJECT)
    if report.subject is None:
        b.el(subject, "AllCriticalSubjectInformationUnavailableIndicator", "Y")
    else:
        b.person(subject, report.subject, report.accounts)
    b.el(activity, "FilingDateText", fincen_date(report.filing_date))
    association = b.el(activity, "ActivityAssociation", seq=True)
    b.el(association, "InitialReportIndicator", "Y")
    suspicious = b.el(activity, "SuspiciousActivity", seq=True)
    b.el(suspicious, "SuspiciousActivityAmountText", dollars(report.amount))
    b.el(suspicious, "SuspiciousActivityFromDateText", fincen_date(report.from_day))
    b.el(suspicious, "SuspiciousActivityToDateText", fincen_date(report.to_day))
    classification = b.el(suspicious, "SuspiciousActivityClassification", seq=True)
    b.el(
        classification,
        "SuspiciousActivityTypeID",
        SAR_STRUCTURING if report.structuring else SAR_OTHER,
    )
    narrative = b.el(activity, "ActivityNarrativeInformation", seq=True)
    b.el(narrative, "ActivityNarrativeSequenceNumber", "1")
    b.el(narrative, "ActivityNarrativeText", report.narrative[:MAX_NARRATIVE])
    _counts(root)
    return root


def to_bytes(root: ET.Element) -> bytes:
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def parse(document: bytes) -> ET.Element:
    """Read back a stored export (only documents this module made: no DTDs, no entities)."""
    if b"<!DOCTYPE" in document or b"<!ENTITY" in document:
        raise ValueError("a FinCEN batch has no DTD")
    return ET.fromstring(document)  # noqa: S314 - our own output, DTDs refused above


# Validation ----------------------------------------------------------------------------------


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _check(problems: list[str], ok: bool, message: str) -> None:
    if not ok:
        problems.append(message)


def _party_rules(problems: list[str], party: ET.Element, where: str, *, person: bool) -> None:
    for name in party.findall(q("PartyName")):
        for tag, limit in (
            ("RawPartyFullName", MAX_NAME),
            ("RawEntityIndividualLastName", MAX_NAME),
            ("RawIndividualFirstName", MAX_FIRST_NAME),
        ):
            value = name.find(q(tag))
            if value is not None:
                _check(problems, 0 < len(_text(value)) <= limit, f"{where}: {tag} 1..{limit} chars")
    _check(problems, bool(party.findall(q("PartyName"))), f"{where}: PartyName is required")
    address = party.find(q("Address"))
    if address is not None:
        _check(
            problems,
            0 < len(_text(address.find(q("RawCityText")))) <= MAX_CITY,
            f"{where}: RawCityText",
        )
        street = _text(address.find(q("RawStreetAddress1Text")))
        _check(problems, 0 < len(street) <= MAX_STREET, f"{where}: RawStreetAddress1Text")
        country = _text(address.find(q("RawCountryCodeText")))
        _check(problems, bool(_COUNTRY.match(country)), f"{where}: RawCountryCodeText ISO alpha-2")
        if country == "US":
            state = _text(address.find(q("RawStateCodeText")))
            _check(problems, bool(_STATE.match(state)), f"{where}: RawStateCodeText 2 letters")
            zip_code = _text(address.find(q("RawZIPCode")))
            _check(problems, bool(_ZIP.match(zip_code)), f"{where}: RawZIPCode 5 or 9 digits")
    elif person:
        problems.append(f"{where}: Address is required")
    for ident in party.findall(q("PartyIdentification")):
        code = _text(ident.find(q("PartyIdentificationTypeCode")))
        number = _text(ident.find(q("PartyIdentificationNumberText")))
        if code in (TIN_SSN_ITIN, TIN_EIN, TIN_TRANSMITTER):
            _check(problems, bool(_TIN.match(number)), f"{where}: TIN (type {code}) 9 digits")
        elif code == TCC:
            _check(problems, 0 < len(number) <= 8, f"{where}: TCC 1..8 chars")
    for phone in party.findall(q("PhoneNumber")):
        text = _text(phone.find(q("PhoneNumberText")))
        _check(problems, bool(_PHONE.match(text)), f"{where}: PhoneNumberText 10..16 digits")
    birth = party.find(q("IndividualBirthDateText"))
    if person:
        _check(
            problems, bool(_DATE.match(_text(birth))), f"{where}: IndividualBirthDateText YYYYMMDD"
        )
        tins = [
            i
            for i in party.findall(q("PartyIdentification"))
            if _text(i.find(q("PartyIdentificationTypeCode"))) == TIN_SSN_ITIN
        ]
        _check(problems, len(tins) == 1, f"{where}: one TIN (type {TIN_SSN_ITIN})")


def _expect_parties(
    problems: list[str], parties: dict[str, list[ET.Element]], required: dict[str, tuple[int, int]]
) -> None:
    for code, (low, high) in required.items():
        n = len(parties.get(code, []))
        _check(problems, low <= n <= high, f"Party {code}: {n} present, {low}..{high} required")
    for code in parties:
        _check(problems, code in required, f"Party {code}: not allowed here")


def validate(root: ET.Element) -> list[str]:
    """The documented element rules this module implements; an empty list when it passes."""
    problems: list[str] = []
    if root.tag != q("EFilingBatchXML"):
        return [f"root must be EFilingBatchXML in namespace {NS}"]
    form = _text(root.find(q("FormTypeCode")))
    if form not in (CTR_FORM, SAR_FORM):
        return ["FormTypeCode must be CTRX or SARX"]
    activities = root.findall(q("Activity"))
    _check(problems, len(activities) >= 1, "at least one Activity")
    _check(problems, root.get("ActivityCount") == str(len(activities)), "ActivityCount")
    all_parties = [p for a in activities for p in a.findall(q("Party"))]
    _check(problems, root.get("PartyCount") == str(len(all_parties)), "PartyCount")
    seqs = [el.get("SeqNum") for el in root.iter() if el.get("SeqNum") is not None]
    _check(problems, len(seqs) == len(set(seqs)), "SeqNum values are unique")
    _check(problems, all(s is not None and s.isdigit() for s in seqs), "SeqNum are integers")
    total = Decimal(0)
    for index, activity in enumerate(activities, start=1):
        where = f"Activity {index}"
        _check(
            problems,
            bool(_DATE.match(_text(activity.find(q("FilingDateText"))))),
            f"{where}: FilingDateText YYYYMMDD",
        )
        _check(
            problems,
            activity.find(q("ActivityAssociation")) is not None,
            f"{where}: ActivityAssociation",
        )
        parties: dict[str, list[ET.Element]] = {}
        for party in activity.findall(q("Party")):
            parties.setdefault(_text(party.find(q("ActivityPartyTypeCode"))), []).append(party)
        firm = {
            TRANSMITTER: (1, 1),
            TRANSMITTER_CONTACT: (1, 1),
            FILING_INSTITUTION: (1, 1),
            CONTACT_OFFICE: (1, 1),
            LOCATION: (1, 99),
        }
        if form == CTR_FORM:
            _expect_parties(problems, parties, firm | {PERSON_INVOLVED: (1, 999)})
            total += _ctr_activity(problems, activity, parties, where)
        else:
            _expect_parties(problems, parties, firm | {SUBJECT: (1, 999)})
            _sar_activity(problems, activity, parties, where)
        for code, found in parties.items():
            for party in found:
                if (
                    code == SUBJECT
                    and party.find(q("AllCriticalSubjectInformationUnavailableIndicator"))
                    is not None
                ):
                    continue
                _party_rules(
                    problems,
                    party,
                    f"{where} Party {code}",
                    person=code in (PERSON_INVOLVED, SUBJECT),
                )
    if form == CTR_FORM:
        _check(
            problems,
            root.get("TotalAmount") == str(total),
            "TotalAmount is the sum of cash in and out",
        )
    return problems


def _amount(problems: list[str], text: str, what: str) -> Decimal:
    if text == "":
        return Decimal(0)
    if not _DOLLARS.match(text):
        problems.append(f"{what}: whole dollars")
        return Decimal(0)
    return Decimal(text)


def _ctr_activity(
    problems: list[str], activity: ET.Element, parties: dict[str, list[ET.Element]], where: str
) -> Decimal:
    cta = activity.find(q("CurrencyTransactionActivity"))
    if cta is None:
        problems.append(f"{where}: CurrencyTransactionActivity is required")
        return Decimal(0)
    _check(
        problems,
        bool(_DATE.match(_text(cta.find(q("TransactionDateText"))))),
        f"{where}: TransactionDateText YYYYMMDD",
    )
    cash_in = _amount(
        problems, _text(cta.find(q("TotalCashInReceiveAmountText"))), f"{where}: cash in"
    )
    cash_out = _amount(problems, _text(cta.find(q("TotalCashOutAmountText"))), f"{where}: cash out")
    _check(
        problems,
        cash_in > CTR_THRESHOLD or cash_out > CTR_THRESHOLD,
        f"{where}: a CTR reports more than {CTR_THRESHOLD} in or out",
    )
    details_in = details_out = Decimal(0)
    details = cta.findall(q("CurrencyTransactionActivityDetail"))
    _check(problems, bool(details), f"{where}: CurrencyTransactionActivityDetail is required")
    for detail in details:
        code = _text(detail.find(q("CurrencyTransactionActivityDetailTypeCode")))
        amount = _amount(
            problems, _text(detail.find(q("DetailTransactionAmountText"))), f"{where}: detail"
        )
        if code in CASH_IN_DETAILS:
            details_in += amount
        elif code in CASH_OUT_DETAILS:
            details_out += amount
        else:
            problems.append(f"{where}: unknown detail type code {code}")
    _check(problems, details_in == cash_in, f"{where}: cash-in details add up to the total")
    _check(problems, details_out == cash_out, f"{where}: cash-out details add up to the total")
    person_in = person_out = Decimal(0)
    for person in parties.get(PERSON_INVOLVED, []):
        person_in += _amount(
            problems,
            _text(person.find(q("IndividualEntityCashInAmountText"))),
            f"{where}: person in",
        )
        person_out += _amount(
            problems,
            _text(person.find(q("IndividualEntityCashOutAmountText"))),
            f"{where}: person out",
        )
    _check(
        problems,
        person_in == cash_in and person_out == cash_out,
        f"{where}: persons' amounts add up",
    )
    return cash_in + cash_out


def _sar_activity(
    problems: list[str], activity: ET.Element, parties: dict[str, list[ET.Element]], where: str
) -> None:
    suspicious = activity.find(q("SuspiciousActivity"))
    if suspicious is None:
        problems.append(f"{where}: SuspiciousActivity is required")
        return
    start = _text(suspicious.find(q("SuspiciousActivityFromDateText")))
    end = _text(suspicious.find(q("SuspiciousActivityToDateText")))
    _check(problems, bool(_DATE.match(start)), f"{where}: SuspiciousActivityFromDateText YYYYMMDD")
    _check(
        problems, bool(_DATE.match(end)) and end >= start, f"{where}: SuspiciousActivityToDateText"
    )
    _amount(problems, _text(suspicious.find(q("SuspiciousActivityAmountText"))), f"{where}: amount")
    _check(
        problems,
        bool(suspicious.findall(q("SuspiciousActivityClassification"))),
        f"{where}: SuspiciousActivityClassification is required",
    )
    narrative = _text(
        activity.find(f"{q('ActivityNarrativeInformation')}/{q('ActivityNarrativeText')}")
    )
    _check(
        problems,
        0 < len(narrative) <= MAX_NARRATIVE,
        f"{where}: ActivityNarrativeText 1..{MAX_NARRATIVE}",
    )
