"""Who may read a document, how a file leaves the server, staff review, the sandbox
provider's outcomes and the identity evidence onboarding reads (KYC-2)."""

from __future__ import annotations

import pytest

from tests.support.api import Api, audit_events, is_problem
from tests.support.kyc import declared
from tests.support.kyc_documents import DOCUMENTS, STAFF_DOCUMENTS, upload
from tests.support.kyc_files import TD3_SPECIMEN, jpeg, pdf, td3
from tests.support.trading import Trader, signed_in_staff, signed_in_trader
from tradeguard.access.domain import Role
from tradeguard.kyc.contracts import EvidenceStatus, IdentityEvidence
from tradeguard.kyc.documents.container import DocumentServices
from tradeguard.kyc.documents.provider import (
    SandboxProvider,
    VerificationRequest,
    VerificationResult,
)


def documents_of(api: Api) -> DocumentServices:
    services: DocumentServices = api.app.state.kyc_documents
    return services


async def evidence(api: Api, user_id: str) -> IdentityEvidence:
    services = documents_of(api)
    async with api.services.unit_of_work() as session:
        return await services.evidence.evidence(session, user_id)


async def _passport(who: Trader, mrz: str | None = None) -> dict[str, object]:
    response = await upload(who, jpeg(), mrz=mrz if mrz is not None else td3())
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


class TestOwnerAccess:
    async def test_another_users_document_is_not_found(self, api: Api) -> None:
        async with api.client() as a_client, api.client() as b_client:
            alice = await signed_in_trader(api, a_client, "alice")
            bob = await signed_in_trader(api, b_client, "bob")
            await declared(alice)
            document = await _passport(alice)
            for path in (f"{DOCUMENTS}/{document['id']}", f"{DOCUMENTS}/{document['id']}/file"):
                assert is_problem(await bob.get(path), 404, "not-found")
            assert (await bob.get(DOCUMENTS)).json() == []
            assert (await alice.get(f"{DOCUMENTS}/{document['id']}")).status_code == 200

    async def test_ids_are_random_not_time_ordered(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            first = await _passport(alice)
            second = await _passport(alice)
        assert str(first["id"])[14] == "4"  # UUID version 4: 122 random bits
        assert str(first["id"])[:8] != str(second["id"])[:8]

    async def test_the_owner_downloads_an_attachment_that_is_never_rendered(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            content = jpeg()
            response = await upload(alice, content)
            document = response.json()
            download = await alice.get(f"{DOCUMENTS}/{document['id']}/file")
        assert download.status_code == 200
        assert download.content == content
        assert download.headers["content-disposition"].startswith("attachment;")
        assert download.headers["x-content-type-options"] == "nosniff"
        assert download.headers["content-security-policy"] == "sandbox; default-src 'none'"
        assert download.headers["content-type"] == "image/jpeg"

    async def test_a_customer_cannot_use_the_staff_routes(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            response = await alice.get(STAFF_DOCUMENTS)
        assert response.status_code in {403, 404}


@pytest.mark.spec("KYC-2")
class TestStaff:
    async def test_a_staff_download_needs_a_reason_and_is_in_the_ledger(self, api: Api) -> None:
        async with api.client() as client, api.client() as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice)
            content = jpeg()
            document = (await upload(alice, content, mrz=td3())).json()
            carol = await signed_in_staff(api, staff_client, "carol", Role.COMPLIANCE)
            path = f"{STAFF_DOCUMENTS}/{document['id']}/download"
            assert (await carol.post(path, {})).status_code == 422
            response = await carol.post(path, {"reason": "KYC review of case 17"})
            assert response.status_code == 200
            assert response.content == content
            assert response.headers["content-disposition"].startswith("attachment;")
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["content-security-policy"] == "sandbox; default-src 'none'"
            detail = (await carol.get(f"{STAFF_DOCUMENTS}/{document['id']}")).json()
        assert detail["fields_read"]["document_number"] == "C01X00T47"
        downloads = await audit_events(api, "kyc:document:downloaded")
        assert [e["data"]["reason"] for e in downloads] == ["KYC review of case 17"]
        assert downloads[0]["actor"]["id"] == carol.user_id

    async def test_an_inconsistent_passport_waits_for_review_and_staff_accept_it(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client() as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice, birth_date="1975-08-12")
            document = await _passport(alice)
            assert document["status"] == "review"
            assert "BIRTH_DATE_MISMATCH" in document["reasons"]  # type: ignore[operator]
            assert (await evidence(api, alice.user_id)).identity is EvidenceStatus.REVIEW
            carol = await signed_in_staff(api, staff_client, "carol", Role.COMPLIANCE)
            queue = (await carol.get(STAFF_DOCUMENTS)).json()
            assert [d["id"] for d in queue] == [document["id"]]
            path = f"{STAFF_DOCUMENTS}/{document['id']}/review"
            assert (await carol.post(path, {"decision": "accept"})).status_code == 422
            response = await carol.post(
                path, {"decision": "accept", "reason": "birth date typo on the application"}
            )
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "verified"
            again = await carol.post(path, {"decision": "reject", "reason": "second thoughts"})
            assert is_problem(again, 409, "conflict"), again.text
        found = await evidence(api, alice.user_id)
        assert found.identity is EvidenceStatus.VERIFIED
        assert found.identity_document_id == document["id"]
        reviewed = await audit_events(api, "kyc:document:reviewed")
        assert reviewed[0]["data"]["decision"] == "accept"


@pytest.mark.spec("KYC-2")
class TestSandboxOutcomes:
    @pytest.mark.parametrize(
        ("family", "mrz_family", "number", "status", "reason"),
        [
            ("Consider", "CONSIDER", "C01X00T47", "review", "SANDBOX_REVIEW"),
            ("Reject", "REJECT", "C01X00T47", "failed", "SANDBOX_REJECTED"),
            ("Eriksson", "ERIKSSON", "FAIL00001", "failed", "SANDBOX_REJECTED"),
            ("Eriksson", "ERIKSSON", "REVIEW001", "review", "SANDBOX_REVIEW"),
            ("Eriksson", "ERIKSSON", "C01X00T47", "verified", None),
        ],
    )
    async def test_documented_test_data_chooses_the_outcome(
        self,
        api: Api,
        family: str,
        mrz_family: str,
        number: str,
        status: str,
        reason: str | None,
    ) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice, family_name=family)
            document = await _passport(alice, td3(family=mrz_family, number=number))
        assert document["status"] == status
        if reason:
            assert reason in document["reasons"]  # type: ignore[operator]

    async def test_an_expired_passport_fails(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice, nationality="DE")
            document = await _passport(alice, TD3_SPECIMEN)
        assert document["status"] == "failed"
        assert "MRZ_DOCUMENT_EXPIRED" in document["reasons"]  # type: ignore[operator]
        assert (await evidence(api, alice.user_id)).identity is EvidenceStatus.FAILED

    async def test_without_an_application_an_identity_document_waits_for_review(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            document = await _passport(alice)
        assert document["status"] == "review"
        assert "APPLICANT_UNKNOWN" in document["reasons"]  # type: ignore[operator]


@pytest.mark.spec("KYC-2")
class TestEvidence:
    async def test_evidence_is_none_then_verified_for_identity_and_address(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice)
            assert await evidence(api, alice.user_id) == IdentityEvidence(
                EvidenceStatus.NONE, EvidenceStatus.NONE
            )
            failed = await _passport(alice, TD3_SPECIMEN)
            passport = await _passport(alice)
            bill = await upload(
                alice,
                pdf(),
                kind="proof_of_address",
                filename="b.pdf",
                content_type="application/pdf",
            )
        found = await evidence(api, alice.user_id)
        assert found.identity is EvidenceStatus.VERIFIED
        assert found.identity_document_id == passport["id"] != failed["id"]
        assert found.address is EvidenceStatus.VERIFIED
        assert found.address_document_id == bill.json()["id"]

    async def test_a_provider_outage_leaves_the_document_pending_until_a_recheck(
        self, api: Api
    ) -> None:
        class Down:
            name = "down"

            async def verify(self, request: VerificationRequest) -> VerificationResult:
                raise ConnectionError("provider unreachable")

        documents_of(api).deps.provider = Down()
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice)
            document = await _passport(alice)
        assert document["status"] == "pending"
        assert (await evidence(api, alice.user_id)).identity is EvidenceStatus.PENDING
        # Once the provider is back, the operator's recheck finishes the checks.
        services = documents_of(api)
        services.deps.provider = SandboxProvider()
        async with api.services.unit_of_work() as session:
            assert await services.documents.pending(session) == [document["id"]]
        async with api.services.unit_of_work() as session:
            row = await services.documents.recheck(session, str(document["id"]))
            assert row is not None
            assert row.status == "verified"
        assert (await evidence(api, alice.user_id)).identity is EvidenceStatus.VERIFIED
        checked = await audit_events(api, "kyc:document:checked")
        assert checked[-1]["actor"]["kind"] == "system"
