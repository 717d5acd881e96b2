"""Uploads through the real API: accepted files are sealed and verified; every refusal is
problem+json and stores nothing (KYC-2)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from tests.support.api import Api, is_problem
from tests.support.kyc import declared
from tests.support.kyc_documents import DOCUMENTS, stored_counts, upload
from tests.support.kyc_files import (
    jpeg,
    padded_pdf,
    pdf,
    pdf_flate_bomb,
    pdf_with_attachment,
    pdf_with_javascript,
    png,
    png_bomb,
    td3,
)
from tests.support.trading import signed_in_trader
from tradeguard.kyc.documents.models import KycDocumentChunk


@pytest.mark.spec("KYC-2")
class TestAcceptedUpload:
    async def test_a_passport_with_a_consistent_mrz_is_sealed_and_verified(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice)
            content = jpeg()
            response = await upload(alice, content, mrz=td3(), side="front")
            assert response.status_code == 201, response.text
            body = response.json()
            assert body["status"] == "verified"
            assert body["detected_type"] == "image/jpeg"
            assert body["size_bytes"] == len(content)
            assert (body["width"], body["height"]) == (640, 400)
            assert body["mrz_format"] == "TD3"
            assert body["reasons"] == []
            listed = await alice.get(DOCUMENTS)
            assert [d["id"] for d in listed.json()] == [body["id"]]
        # The file is stored sealed: no chunk holds the plaintext.
        async with api.services.unit_of_work() as session:
            blobs = (await session.execute(select(KycDocumentChunk.blob))).scalars().all()
        assert blobs
        assert all(content[:64] not in bytes(blob) for blob in blobs)

    async def test_a_file_larger_than_other_request_bodies_is_accepted_on_this_path(
        self, api: Api
    ) -> None:
        content = padded_pdf(1536 * 1024)
        assert len(content) > 1024 * 1024  # more than the global max_body_bytes
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            response = await upload(
                alice,
                content,
                kind="proof_of_address",
                filename="bill.pdf",
                content_type="application/pdf",
            )
            assert response.status_code == 201, response.text
            download = await alice.get(f"{DOCUMENTS}/{response.json()['id']}/file")
        assert download.content == content
        assert (await stored_counts(api))[1] == 2  # two 1 MiB chunks

    async def test_a_proof_of_address_pdf_is_accepted_with_its_page_count(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            await declared(alice)
            response = await upload(
                alice,
                pdf(2),
                kind="proof_of_address",
                filename="bill.pdf",
                content_type="application/pdf",
            )
            assert response.status_code == 201, response.text
            assert response.json()["pages"] == 2
            assert response.json()["status"] == "verified"


REFUSALS = [
    ("gif", b"GIF89a" + bytes(64), "id.png", "image/png", 415, "unsupported-file-type"),
    (
        "html",
        b"<html><script>1</script>",
        "id.pdf",
        "application/pdf",
        415,
        "unsupported-file-type",
    ),
    ("declared", png(), "id.png", "image/jpeg", 415, "file-type-mismatch"),
    ("extension", jpeg(), "id.exe", "image/jpeg", 415, "file-type-mismatch"),
    ("png bomb", png_bomb(), "id.png", "image/png", 422, "image-too-large"),
    (
        "flate bomb",
        pdf_flate_bomb(),
        "a.pdf",
        "application/pdf",
        422,
        "compressed-content-too-large",
    ),
    ("pages", pdf(11), "a.pdf", "application/pdf", 422, "too-many-pages"),
    ("javascript", pdf_with_javascript(), "a.pdf", "application/pdf", 422, "unsafe-document"),
    ("attachment", pdf_with_attachment(), "a.pdf", "application/pdf", 422, "unsafe-document"),
]


@pytest.mark.spec("KYC-2")
class TestRefusedUpload:
    @pytest.mark.parametrize(
        ("case", "content", "filename", "content_type", "status", "slug"),
        REFUSALS,
        ids=[r[0] for r in REFUSALS],
    )
    async def test_a_refused_file_is_a_problem_and_nothing_is_stored(
        self,
        api: Api,
        case: str,
        content: bytes,
        filename: str,
        content_type: str,
        status: int,
        slug: str,
    ) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            kind = "proof_of_address" if content_type == "application/pdf" else "passport"
            response = await upload(
                alice, content, kind=kind, filename=filename, content_type=content_type
            )
        assert is_problem(response, status, slug), response.text
        assert response.json()["detail"]
        assert await stored_counts(api) == (0, 0)

    async def test_a_body_over_the_limit_streamed_without_length_is_refused(self, api: Api) -> None:
        boundary = "tgboundary"

        async def body() -> AsyncIterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\n'
                f'passport\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            yield jpeg()
            for _ in range(48):  # 3 MiB more: over the 2 MiB limit
                yield bytes(64 * 1024)
            yield f"\r\n--{boundary}--\r\n".encode()

        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            response = await client.post(
                DOCUMENTS,
                content=body(),
                headers=alice.headers
                | {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
        assert "content-length" not in response.request.headers
        assert is_problem(response, 413, "file-too-large"), response.text
        assert await stored_counts(api) == (0, 0)

    async def test_a_declared_length_over_the_limit_is_refused_unread(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            response = await upload(alice, bytes(5 * 1024 * 1024), filename="big.jpg")
        assert response.status_code == 413
        assert await stored_counts(api) == (0, 0)

    async def test_an_unknown_kind_or_unreadable_mrz_is_refused(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            response = await upload(alice, jpeg(), kind="selfie")
            assert is_problem(response, 422, "invalid-upload"), response.text
            response = await upload(alice, jpeg(), mrz="P<UTO")
            assert is_problem(response, 422, "invalid-upload"), response.text
            assert response.json()["reason"] == "MRZ_UNREADABLE"
            response = await client.post(
                DOCUMENTS, json={"kind": "passport"}, headers=alice.headers
            )
            assert is_problem(response, 422, "invalid-upload"), response.text
        assert await stored_counts(api) == (0, 0)

    async def test_uploads_per_day_are_bounded(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            for _ in range(4):
                assert (
                    await upload(alice, png(), filename="a.png", content_type="image/png")
                ).status_code == 201
            response = await upload(alice, png(), filename="a.png", content_type="image/png")
            assert is_problem(response, 429, "document-quota-reached"), response.text
            assert response.json()["reason"] == "UPLOADS_PER_DAY"
            api.clock.advance(seconds=86_401)
            await alice.sign_in_again()
            assert (
                await upload(alice, png(), filename="a.png", content_type="image/png")
            ).status_code == 201
        assert (await stored_counts(api))[0] == 5
