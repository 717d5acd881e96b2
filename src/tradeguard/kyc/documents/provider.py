"""Document verification providers: the interface, and a deterministic sandbox.

A provider takes the document (its bytes, kind, the MRZ the client's scanner read) and the
applicant's declared facts, and answers pass, fail or review with reasons and the fields it
read. Real providers (Onfido, Persona, Veriff) sit behind the same interface; the one in use
is named by the `kyc_verification_provider` setting.

The sandbox is modelled on Onfido's and Persona's sandboxes: the outcome is chosen by
documented test data, otherwise it does what a provider's document check does with the MRZ
(docs/kyc-documents.md lists the test values):

- applicant family name `Consider` (any case) -> review, `Reject` -> fail;
- MRZ document number starting `REVIEW` -> review, starting `FAIL` -> fail;
- otherwise a passport or national ID passes when its MRZ passes ICAO 9303's checks (check
  digits, dates, codes; an expired document fails) and agrees with the applicant (a
  disagreement is review); one without a readable MRZ is review;
- a driving licence or proof of address passes (the sandbox reads no fields from them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Protocol

from tradeguard.kyc.contracts import ApplicantFacts
from tradeguard.kyc.documents.domain import MRZ_KINDS, DocumentKind
from tradeguard.kyc.documents.mrz import (
    MrzRecord,
    MrzUnreadable,
    inconsistencies,
    mrz_problems,
    parse_mrz,
)

SANDBOX = "sandbox"


class ProviderOutcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    REVIEW = "review"


class SandboxReason(StrEnum):
    SANDBOX_REVIEW = "SANDBOX_REVIEW"
    SANDBOX_REJECTED = "SANDBOX_REJECTED"
    MRZ_MISSING = "MRZ_MISSING"
    MRZ_UNREADABLE = "MRZ_UNREADABLE"
    MRZ_DOCUMENT_KIND_MISMATCH = "MRZ_DOCUMENT_KIND_MISMATCH"
    APPLICANT_UNKNOWN = "APPLICANT_UNKNOWN"


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    document_id: str
    kind: DocumentKind
    detected_type: str
    content: bytes
    mrz_text: str | None
    applicant: ApplicantFacts | None
    today: date


@dataclass(frozen=True, slots=True)
class VerificationResult:
    provider: str
    outcome: ProviderOutcome
    reasons: tuple[str, ...] = ()
    # What the provider read from the document (MRZ fields), for staff review.
    fields: Mapping[str, str] = field(default_factory=dict)
    reference: str | None = None


class VerificationProvider(Protocol):
    name: str

    async def verify(self, request: VerificationRequest) -> VerificationResult: ...


def mrz_fields(record: MrzRecord) -> dict[str, str]:
    return {
        "format": record.format.value,
        "document_code": record.document_code,
        "issuing_state": record.issuing_state,
        "document_number": record.document_number,
        "nationality": record.nationality,
        "birth_date": record.birth_date.isoformat() if record.birth_date else "",
        "sex": record.sex,
        "expiry_date": record.expiry_date.isoformat() if record.expiry_date else "",
        "family_name": record.family_name,
        "given_names": record.given_names,
    }


def _kind_matches(kind: DocumentKind, record: MrzRecord) -> bool:
    code = record.document_code[:1]
    if kind is DocumentKind.PASSPORT:
        return code == "P"
    return code in {"I", "A", "C"}


class SandboxProvider:
    """Deterministic outcomes from documented test data; no network."""

    name = SANDBOX

    async def verify(self, request: VerificationRequest) -> VerificationResult:
        reference = f"sandbox-{request.document_id}"
        family = (request.applicant.family_name if request.applicant else "").strip().casefold()
        if family == "reject":
            return self._result(
                ProviderOutcome.FAIL, (SandboxReason.SANDBOX_REJECTED,), {}, reference
            )
        if family == "consider":
            return self._result(
                ProviderOutcome.REVIEW, (SandboxReason.SANDBOX_REVIEW,), {}, reference
            )
        if request.kind not in MRZ_KINDS:
            return self._result(ProviderOutcome.PASS, (), {}, reference)
        if not request.mrz_text:
            return self._result(ProviderOutcome.REVIEW, (SandboxReason.MRZ_MISSING,), {}, reference)
        try:
            record = parse_mrz(request.mrz_text, today=request.today)
        except MrzUnreadable:
            return self._result(
                ProviderOutcome.FAIL, (SandboxReason.MRZ_UNREADABLE,), {}, reference
            )
        read = mrz_fields(record)
        if record.document_number.startswith("FAIL"):
            return self._result(
                ProviderOutcome.FAIL, (SandboxReason.SANDBOX_REJECTED,), read, reference
            )
        if record.document_number.startswith("REVIEW"):
            return self._result(
                ProviderOutcome.REVIEW, (SandboxReason.SANDBOX_REVIEW,), read, reference
            )
        failed: list[str] = [problem.value for problem in mrz_problems(record, today=request.today)]
        if not _kind_matches(request.kind, record):
            failed.append(SandboxReason.MRZ_DOCUMENT_KIND_MISMATCH.value)
        if failed:
            return self._result(ProviderOutcome.FAIL, tuple(failed), read, reference)
        if request.applicant is None:
            return self._result(
                ProviderOutcome.REVIEW, (SandboxReason.APPLICANT_UNKNOWN,), read, reference
            )
        found = inconsistencies(record, request.applicant)
        if found:
            return self._result(
                ProviderOutcome.REVIEW, tuple(reason.value for reason in found), read, reference
            )
        return self._result(ProviderOutcome.PASS, (), read, reference)

    def _result(
        self,
        outcome: ProviderOutcome,
        reasons: tuple[str, ...],
        fields: Mapping[str, str],
        reference: str,
    ) -> VerificationResult:
        return VerificationResult(
            self.name, outcome, tuple(str(r) for r in reasons), fields, reference
        )


def provider_named(name: str) -> VerificationProvider:
    if name == SANDBOX:
        return SandboxProvider()
    raise ValueError(f"unknown verification provider {name!r}")
