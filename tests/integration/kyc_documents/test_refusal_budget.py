"""Refused uploads are counted per user per 24 hours against their own budget: once it is
spent, uploads get 429 with Retry-After before the body is parsed, and nothing of the
refused files is stored (only who, when and the refusal code)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api, audit_events, is_problem
from tests.support.kyc_documents import stored_counts, upload
from tests.support.kyc_files import pdf_flate_bomb, pdf_with_javascript, png
from tests.support.tables import model_differences
from tests.support.trading import signed_in_trader
from tradeguard.config import Settings
from tradeguard.kyc.documents.models import KycDocumentRefusal


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"kyc_document_refusals_per_day": 3})


async def refusal_rows(api: Api) -> list[KycDocumentRefusal]:
    async with api.services.unit_of_work() as session:
        return list((await session.execute(select(KycDocumentRefusal))).scalars().all())


class TestRefusedUploadsAreThrottled:
    async def test_refusals_have_a_daily_budget_then_429_with_retry_after(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            bob = await signed_in_trader(api, client, "bob")
            refusals = []
            for content in (pdf_flate_bomb(), pdf_flate_bomb(), pdf_with_javascript()):
                response = await upload(
                    alice, content, filename="a.pdf", content_type="application/pdf"
                )
                assert response.status_code in (413, 415, 422), response.text
                refusals.append(response.json()["reason"])
                api.clock.advance(seconds=60)
            # The budget is spent: even a good file waits, and a bomb is not parsed again.
            for content, name, kind in (
                (pdf_flate_bomb(), "a.pdf", "application/pdf"),
                (png(), "a.png", "image/png"),
            ):
                response = await upload(alice, content, filename=name, content_type=kind)
                assert is_problem(response, 429, "document-quota-reached"), response.text
                assert response.json()["reason"] == "REFUSALS_PER_DAY"
                retry = int(response.headers["retry-after"])
                # The oldest refusal leaves the 24-hour window three minutes after it came.
                assert 86_400 - 180 - 1 <= retry <= 86_400 - 180 + 1
            # Someone else is not affected.
            assert (
                await upload(bob, png(), filename="b.png", content_type="image/png")
            ).status_code == 201
            # Nothing of the refused files is kept: who, when and the code only.
            rows = await refusal_rows(api)
            assert sorted(r.reason for r in rows) == sorted(refusals)
            assert {r.user_id for r in rows} == {alice.user_id}
            assert set(KycDocumentRefusal.__table__.columns.keys()) == {
                "id",
                "user_id",
                "reason",
                "created_ns",
            }
            events = await audit_events(api, "kyc:document:refused")
            assert [e["data"] for e in events] == [{"reason": r} for r in refusals]
            assert (await stored_counts(api))[0] == 1
            # A day after the oldest refusal, uploads are taken again.
            api.clock.advance(seconds=86_400)
            await alice.sign_in_again()
            assert (
                await upload(alice, png(), filename="a.png", content_type="image/png")
            ).status_code == 201
            # Old counts are forgotten at the next refusal.
            response = await upload(
                alice, pdf_with_javascript(), filename="a.pdf", content_type="application/pdf"
            )
            assert response.status_code != 429
            assert len(await refusal_rows(api)) == 1


async def test_the_refusals_table_matches_its_model(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        differences = await conn.run_sync(model_differences({"kyc_document_refusals"}))
        tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
    assert differences == []
    assert "kyc_document_refusals" in tables
