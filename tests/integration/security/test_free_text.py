"""Card numbers and tax ids typed into free text (a halt's reason) are masked before the
table and the audit ledger see them (PCI DSS 3.5.1; the ledger can never be edited)."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api
from tests.support.trading import signed_in_staff

PAN = "5105105105105100"
SSN = "078-05-1120"


async def test_a_reason_with_a_card_and_an_ssn_is_stored_masked(
    api: Api, engine: AsyncEngine
) -> None:
    async with api.client() as client:
        ada = await signed_in_staff(api, client, "ada")
        halted = await ada.post(
            "/api/v1/admin/halts",
            {"scope": "market", "reason": f"chargeback card {PAN}, SSN {SSN}"},
        )
        assert halted.status_code == 201, halted.text
        assert PAN not in halted.text
    async with engine.connect() as conn:
        [reason] = (await conn.execute(text("SELECT reason FROM trading_halts"))).scalars()
        bodies = (
            (
                await conn.execute(
                    text("SELECT body FROM audit_event WHERE event_type = 'trading:halt:started'")
                )
            )
            .scalars()
            .all()
        )
    assert reason == "chargeback card [REDACTED-PAN], SSN [REDACTED-TAX-ID]"
    [body] = [json.loads(bytes(b) if not isinstance(b, str) else b) for b in bodies]
    assert body["data"]["reason"] == reason
