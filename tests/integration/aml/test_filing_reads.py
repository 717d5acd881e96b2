"""Reading a stored FinCEN export: a stated reason, a ledger event naming the reader, the
filing and the reason (no personal data), served as an attachment; drafts carry the
subject's tax id masked (last four), only the final export carries it in full."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.access import staff
from tests.support.api import Api, audit_events
from tests.support.funds import Customer, add_bank, customer
from tests.support.kyc import imported
from tests.support.kyc_applications import SSN as JANE_SSN
from tests.support.kyc_applications import application
from tradeguard.access.domain import Role
from tradeguard.aml import fincen
from tradeguard.aml.container import AmlServices
from tradeguard.aml.service import mask_tin
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.ledger.sequencer import LedgerSequencer

NY = ZoneInfo("America/New_York")
AML = "/api/v1/admin/aml"
SSN = JANE_SSN.replace("-", "")


def aml_of(api: Api) -> AmlServices:
    services: AmlServices = api.app.state.aml
    return services


async def deposit(who: Customer, amount: str, key: str) -> None:
    response = await who.post(
        "/api/v1/funds/deposits",
        {
            "account_id": who.account_id,
            "bank_account_id": who.bank_account_id,
            "rail": "ach",
            "amount": amount,
            "idempotency_key": key,
        },
    )
    assert response.status_code in (200, 201), response.text


async def a_ctr(api: Api, client: Any) -> tuple[Customer, Any, str]:
    """Jane deposits 9500 and 9900 on one business day: a CTR is owed."""
    jane = await customer(api, client, "jane", phone="+14155550111", cash="0")
    await add_bank(api, jane)
    target = int(datetime(2026, 1, 5, 11, 0, tzinfo=NY).timestamp()) * NS_PER_SECOND
    api.clock.advance(ns=target - api.clock.now_ns())
    await jane.trader.sign_in_again()
    await deposit(jane, "9500.00", "d1")
    await deposit(jane, "9900.00", "d2")
    await LedgerSequencer(api.engine, clock=api.clock).drain()
    await aml_of(api).consumer.run()
    # Jane's KYC record: an approved application (onboarding's audited import path), read
    # by AML for the filing's subject through the app's wiring.
    await imported(
        api,
        jane.trader.user_id,
        application(identity={"given_names": "Jane", "family_name": "Doe"}),
    )
    carol = await staff(api, client, "carol", Role.COMPLIANCE)
    (ctr,) = (await carol.get(f"{AML}/ctrs")).json()
    return jane, carol, ctr["id"]


def test_the_mask_keeps_the_last_four_digits() -> None:
    assert mask_tin("123456789") == "*****6789"
    assert mask_tin("1234") == "****"
    assert mask_tin(None) is None
    assert mask_tin("") == ""


class TestReadingAFiling:
    async def test_a_draft_is_read_with_a_reason_as_an_attachment_and_masks_the_tax_id(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            jane, carol, ctr_id = await a_ctr(api, client)
            draft = await carol.post(f"{AML}/ctrs/{ctr_id}/export", {"final": False})
            assert draft.status_code == 201, draft.text
            filing_id = draft.json()["id"]
            # The record without its document: no reason needed, nothing personal.
            record = await carol.get(f"{AML}/filings/{filing_id}")
            assert record.status_code == 200, record.text
            assert record.json()["status"] == "draft"
            assert "<" not in record.text
            assert SSN not in record.text
            # No reason, a blank or too short one: refused, nothing read, no event.
            url = f"{AML}/filings/{filing_id}/download"
            for body in ({}, {"reason": ""}, {"reason": "    "}, {"reason": "x"}):
                refused = await carol.post(url, body)
                assert refused.status_code == 422, (body, refused.text)
                assert SSN not in refused.text
            assert await audit_events(api, "aml:filing:read") == []
            # A customer cannot read it.
            assert (await jane.post(url, {"reason": "curious about my file"})).status_code == 403
            read = await carol.post(url, {"reason": "checking the draft before filing"})
            assert read.status_code == 200, read.text
            assert read.headers["content-disposition"].startswith("attachment;")
            assert read.headers["x-content-type-options"] == "nosniff"
            assert read.headers["cache-control"] == "no-store"
            # The draft carries the tax id masked: only the final export holds it in full.
            assert SSN.encode() not in read.content
            root = fincen.parse(read.content)
            numbers = [el.text for el in root.iter(fincen.q("PartyIdentificationNumberText"))]
            assert f"*****{SSN[-4:]}" in numbers
            (event,) = await audit_events(api, "aml:filing:read")
            assert event["actor"]["id"] == carol.user_id
            assert event["data"]["filing_id"] == filing_id
            assert event["data"]["reason"] == "checking the draft before filing"
            assert SSN not in str(event)
            assert "Doe" not in str(event)
            # The final export (the one sent to FinCEN) carries the full tax id, valid.
            final = await carol.post(f"{AML}/ctrs/{ctr_id}/export", {"final": True})
            assert final.status_code == 201, final.text
            sent = await carol.post(
                f"{AML}/filings/{final.json()['id']}/download", {"reason": "filing with FinCEN"}
            )
            assert sent.status_code == 200
            assert SSN.encode() in sent.content
            assert fincen.validate(fincen.parse(sent.content)) == []
            assert len(await audit_events(api, "aml:filing:read")) == 2
            # Nothing in the export events either.
            for exported in await audit_events(api, "aml:filing:exported"):
                assert SSN not in str(exported)

    async def test_an_unknown_filing_is_not_found(self, api: Api) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            missing = "00000000-0000-0000-0000-000000000000"
            read = await carol.post(f"{AML}/filings/{missing}/download", {"reason": "a reason"})
            assert read.status_code == 404
            assert await audit_events(api, "aml:filing:read") == []
