"""A verified identity document does not outvote a later one that failed its checks or waits
for a person: the identity evidence goes to REVIEW until a person decides the later one or a
newer document verifies (docs/kyc-documents.md)."""

from __future__ import annotations

from tests.support.api import Api
from tests.support.kyc import declared
from tests.support.kyc_documents import STAFF_DOCUMENTS, upload
from tests.support.kyc_files import jpeg, td3
from tests.support.trading import Trader, signed_in_staff, signed_in_trader
from tradeguard.access.domain import Role
from tradeguard.kyc.contracts import EvidenceStatus, IdentityEvidence
from tradeguard.kyc.documents.container import DocumentServices
from tradeguard.kyc.documents.service import LATER_DOCUMENT_NOT_VERIFIED


async def evidence(api: Api, user_id: str) -> IdentityEvidence:
    services: DocumentServices = api.app.state.kyc_documents
    async with api.services.unit_of_work() as session:
        return await services.evidence.evidence(session, user_id)


async def passport(api: Api, who: Trader, mrz: str, status: str) -> str:
    api.clock.advance(seconds=60)
    response = await upload(who, jpeg(), mrz=mrz)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == status, response.text
    return str(response.json()["id"])


def forged(mrz: str) -> str:
    """The same MRZ with the document number's check digit changed."""
    line1, line2 = mrz.split("\n")
    digit = str((int(line2[9]) + 1) % 10)
    return line1 + "\n" + line2[:9] + digit + line2[10:]


class TestALaterDocumentIsNotOutvoted:
    async def test_a_later_forged_passport_sends_the_evidence_to_review(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice)
            first = await passport(api, alice, td3(), "verified")
            assert (await evidence(api, alice.user_id)).identity is EvidenceStatus.VERIFIED
            await passport(api, alice, forged(td3()), "failed")
            found = await evidence(api, alice.user_id)
            assert found.identity is EvidenceStatus.REVIEW
            assert found.identity_document_id == first
            assert LATER_DOCUMENT_NOT_VERIFIED in found.reasons
            # A newer document that verifies is the evidence again.
            await alice.sign_in_again()
            newest = await passport(api, alice, td3(), "verified")
            found = await evidence(api, alice.user_id)
            assert found.identity is EvidenceStatus.VERIFIED
            assert found.identity_document_id == newest
            assert LATER_DOCUMENT_NOT_VERIFIED not in found.reasons

    async def test_a_later_inconsistent_passport_waits_for_a_person(self, api: Api) -> None:
        async with api.client() as client, api.client() as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice)
            first = await passport(api, alice, td3(), "verified")
            # A passport of someone else (another birth date) after the verified one.
            other = await passport(api, alice, td3(birth="800101"), "review")
            found = await evidence(api, alice.user_id)
            assert found.identity is EvidenceStatus.REVIEW
            assert LATER_DOCUMENT_NOT_VERIFIED in found.reasons
            assert "BIRTH_DATE_MISMATCH" in found.reasons
            # A person rejects it: the verified one stands.
            carol = await signed_in_staff(api, staff_client, "carol", Role.COMPLIANCE)
            response = await carol.post(
                f"{STAFF_DOCUMENTS}/{other}/review",
                {"decision": "reject", "reason": "not the applicant's passport"},
            )
            assert response.status_code == 200, response.text
            found = await evidence(api, alice.user_id)
            assert found.identity is EvidenceStatus.VERIFIED
            assert found.identity_document_id == first

    async def test_an_earlier_failure_does_not_spoil_a_later_verified_passport(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice)
            await passport(api, alice, forged(td3()), "failed")
            verified = await passport(api, alice, td3(), "verified")
            found = await evidence(api, alice.user_id)
            assert found.identity is EvidenceStatus.VERIFIED
            assert found.identity_document_id == verified
