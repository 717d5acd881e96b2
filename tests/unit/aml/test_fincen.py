"""FinCEN CTR and SAR batch XML: what is built passes the element rules, and documents that
break one of them are named (aml/fincen.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal

import pytest

from tradeguard.aml import fincen
from tradeguard.aml.fincen import q

ADDRESS = fincen.Address("100 Broad Street", "New York", "NY", "10004", "US")
FILER = fincen.Filer(
    name="Tradeguard Securities LLC",
    tin="987654321",
    address=ADDRESS,
    contact_office="AML Compliance",
    phone="2125550100",
    transmitter_control_code="TBSATEST",
)
SUBJECT = fincen.Subject(
    family_name="Doe",
    given_name="Jane",
    birth_date=date(1980, 2, 14),
    tin="123456789",
    address=fincen.Address("1 Main Street", "New York", "NY", "10001", "US"),
)


def ctr(**changes: object) -> ET.Element:
    values: dict[str, object] = {
        "reference": "c1",
        "day": date(2026, 1, 6),
        "cash_in": Decimal("19400.40"),
        "cash_out": Decimal(0),
        "subject": SUBJECT,
        "accounts": ("acct-1",),
        "filing_date": date(2026, 1, 7),
    }
    values.update(changes)
    return fincen.build_ctr(fincen.CtrReport(**values), FILER)  # type: ignore[arg-type]


def sar(**changes: object) -> ET.Element:
    values: dict[str, object] = {
        "reference": "s1",
        "from_day": date(2026, 1, 5),
        "to_day": date(2026, 1, 6),
        "amount": Decimal(28400),
        "subject": SUBJECT,
        "narrative": "Three deposits just under the threshold.",
        "structuring": True,
        "filing_date": date(2026, 1, 20),
    }
    values.update(changes)
    return fincen.build_sar(fincen.SarReport(**values), FILER)  # type: ignore[arg-type]


class TestBuiltBatches:
    @pytest.mark.spec("AML-3")
    def test_a_ctr_batch_passes_and_reads_back(self) -> None:
        root = fincen.parse(fincen.to_bytes(ctr()))
        assert fincen.validate(root) == []
        assert root.tag == q("EFilingBatchXML")
        assert root.get("TotalAmount") == "19400"
        assert root.get("PartyCount") == "6"
        codes = [p.findtext(q("ActivityPartyTypeCode")) for p in root.iter(q("Party"))]
        assert codes == ["35", "37", "30", "8", "34", "50"]

    @pytest.mark.spec("AML-1")
    def test_a_sar_batch_passes_with_or_without_a_suspect(self) -> None:
        assert fincen.validate(sar()) == []
        assert fincen.validate(sar(subject=None)) == []


class TestBrokenBatches:
    def test_a_ctr_of_10000_or_less_is_refused(self) -> None:
        assert any("more than" in p for p in fincen.validate(ctr(cash_in=Decimal(10_000))))

    @pytest.mark.parametrize(
        ("subject", "rule"),
        [
            (fincen.Subject("Doe", "Jane", date(1980, 2, 14), "12345", SUBJECT.address), "TIN"),
            (fincen.Subject("Doe", "Jane", None, "123456789", SUBJECT.address), "BirthDate"),
            (
                fincen.Subject(
                    "Doe",
                    "Jane",
                    date(1980, 2, 14),
                    "123456789",
                    fincen.Address("1 Main", "NYC", "NY", "1000", "US"),
                ),
                "ZIP",
            ),
            (
                fincen.Subject("", "Jane", date(1980, 2, 14), "123456789", SUBJECT.address),
                "LastName",
            ),
        ],
    )
    def test_a_bad_subject_is_named(self, subject: fincen.Subject, rule: str) -> None:
        assert any(rule in p for p in fincen.validate(ctr(subject=subject)))

    def test_counts_and_totals_must_match(self) -> None:
        root = ctr()
        root.set("PartyCount", "5")
        root.set("TotalAmount", "1")
        problems = fincen.validate(root)
        assert "PartyCount" in problems
        assert any("TotalAmount" in p for p in problems)

    def test_a_missing_party_or_narrative_is_named(self) -> None:
        root = sar(narrative="")
        activity = root.find(q("Activity"))
        assert activity is not None
        transmitter = activity.find(q("Party"))
        assert transmitter is not None
        activity.remove(transmitter)
        problems = fincen.validate(root)
        assert any("Party 35" in p for p in problems)
        assert any("Narrative" in p for p in problems)

    def test_a_dtd_is_refused_when_reading_back(self) -> None:
        with pytest.raises(ValueError, match="DTD"):
            fincen.parse(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x/>')

    def test_the_wrong_root_or_form_is_refused(self) -> None:
        assert fincen.validate(ET.Element("EFilingBatchXML")) != []
        root = ctr()
        form = root.find(q("FormTypeCode"))
        assert form is not None
        form.text = "FBARX"
        assert fincen.validate(root) == ["FormTypeCode must be CTRX or SARX"]

    def test_the_filer_and_subject_name_what_is_missing(self) -> None:
        empty = fincen.Subject(None, None, None, None, fincen.Address(None, None, None, None, None))
        assert "subject.tin" in empty.missing()
        assert "subject.address.zip_code" in empty.missing()
        assert FILER.missing() == []


class TestText:
    def test_control_characters_and_markup_in_names_stay_well_formed(self) -> None:
        odd = fincen.Subject(
            "Doe\x00\x1b<script>&", "Jane", date(1980, 2, 14), "123456789", SUBJECT.address
        )
        root = fincen.parse(fincen.to_bytes(ctr(subject=odd)))
        names = [el.text for el in root.iter(q("RawEntityIndividualLastName"))]
        assert names == ["Doe<script>&"]
