"""The sandbox verification provider and how a document's status is decided."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from tests.support.kyc_files import SPECIMEN_DAY, TD1_SPECIMEN, TD3_SPECIMEN, td3
from tradeguard.kyc.contracts import ApplicantFacts
from tradeguard.kyc.documents.domain import DocumentKind, DocumentStatus
from tradeguard.kyc.documents.mrz import parse_mrz
from tradeguard.kyc.documents.provider import (
    ProviderOutcome,
    SandboxProvider,
    VerificationRequest,
    VerificationResult,
    provider_named,
)
from tradeguard.kyc.documents.service import decide

APPLICANT = ApplicantFacts(
    user_id="u1",
    application_id="a1",
    given_names="Anna Maria",
    family_name="Eriksson",
    birth_date=date(1974, 8, 12),
    nationality="DE",
    country="DE",
    status="submitted",
)


async def _verify(
    kind: DocumentKind, mrz: str | None, applicant: ApplicantFacts | None = APPLICANT
) -> VerificationResult:
    return await SandboxProvider().verify(
        VerificationRequest(
            document_id="d1",
            kind=kind,
            detected_type="image/jpeg",
            content=b"",
            mrz_text=mrz,
            applicant=applicant,
            today=SPECIMEN_DAY,
        )
    )


@pytest.mark.spec("KYC-2")
class TestSandbox:
    async def test_a_consistent_passport_passes_with_the_fields_it_read(self) -> None:
        result = await _verify(DocumentKind.PASSPORT, td3())
        assert result.outcome is ProviderOutcome.PASS
        assert result.fields["document_number"] == "C01X00T47"
        assert result.fields["birth_date"] == "1974-08-12"

    async def test_an_id_card_mrz_on_a_passport_fails(self) -> None:
        result = await _verify(DocumentKind.PASSPORT, TD1_SPECIMEN)
        assert result.outcome is ProviderOutcome.FAIL
        assert "MRZ_DOCUMENT_KIND_MISMATCH" in result.reasons

    async def test_the_id_card_specimen_disagrees_only_on_nationality(self) -> None:
        result = await _verify(DocumentKind.NATIONAL_ID, TD1_SPECIMEN)
        assert (result.outcome, result.reasons) == (
            ProviderOutcome.REVIEW,
            ("NATIONALITY_MISMATCH",),
        )

    async def test_no_mrz_or_no_applicant_is_review(self) -> None:
        assert (await _verify(DocumentKind.PASSPORT, None)).reasons == ("MRZ_MISSING",)
        assert (await _verify(DocumentKind.PASSPORT, td3(), None)).reasons == ("APPLICANT_UNKNOWN",)

    async def test_a_licence_and_a_proof_of_address_pass(self) -> None:
        for kind in (DocumentKind.DRIVING_LICENCE, DocumentKind.PROOF_OF_ADDRESS):
            assert (await _verify(kind, None)).outcome is ProviderOutcome.PASS

    def test_only_the_sandbox_is_known(self) -> None:
        assert provider_named("sandbox").name == "sandbox"
        with pytest.raises(ValueError, match="unknown"):
            provider_named("onfido")


@pytest.mark.spec("KYC-2")
class TestDecide:
    def test_a_lax_provider_cannot_verify_a_corrupted_or_inconsistent_mrz(self) -> None:
        passed = VerificationResult("lax", ProviderOutcome.PASS)
        corrupted = parse_mrz(TD3_SPECIMEN.replace("7408122", "7408123"), today=SPECIMEN_DAY)
        status, reasons = decide(DocumentKind.PASSPORT, passed, corrupted, APPLICANT, SPECIMEN_DAY)
        assert status is DocumentStatus.FAILED
        assert "MRZ_BIRTH_DATE_CHECK_FAILED" in reasons
        other = dataclasses.replace(APPLICANT, family_name="Larsson")
        record = parse_mrz(td3(), today=SPECIMEN_DAY)
        status, reasons = decide(DocumentKind.PASSPORT, passed, record, other, SPECIMEN_DAY)
        assert (status, reasons) == (DocumentStatus.REVIEW, ("FAMILY_NAME_MISMATCH",))

    def test_a_provider_pass_on_a_consistent_mrz_is_verified(self) -> None:
        passed = VerificationResult("lax", ProviderOutcome.PASS)
        record = parse_mrz(td3(), today=SPECIMEN_DAY)
        assert decide(DocumentKind.PASSPORT, passed, record, APPLICANT, SPECIMEN_DAY) == (
            DocumentStatus.VERIFIED,
            (),
        )
