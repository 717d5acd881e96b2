"""The issue's takeover scenario end to end (ATO-1, ATO-2): someone with the customer's
password and authenticator signs in from a new device in another country, changes the
password and asks for a withdrawal: it is refused, withdrawals freeze and a takeover review
opens; the owner's "was this you?" link ends every session."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.api import PASSWORD, Api, audit_events, bearer, login_with_totp, step_up
from tests.support.funds import add_bank, balances_of, customer, past_cooling
from tests.support.takeover import GB, SE, answer, prompt_token
from tests.support.trading import Trader

NEW_PASSWORD = "a different horse battery staple 43"


@pytest.mark.spec("ATO-1", "ATO-2")
async def test_new_country_password_change_then_withdrawal_is_frozen_and_reviewed(
    api: Api,
) -> None:
    async with api.client(GB) as home, api.client(SE) as abroad:
        alice = await customer(api, home, "alice", phone="+14155550110", cash="50000")
        bank_id = await add_bank(api, alice)
        await past_cooling(api, alice)
        before = await balances_of(alice)

        # Six hours later, the intruder: alice's password and a code from her authenticator,
        # a new device, another country (not so far that the trip was impossible: that would
        # lock the account at once).
        api.clock.advance(seconds=6 * 3600)
        tokens = await login_with_totp(api, abroad, alice.totp, "alice")
        claims = api.services.verifier.verify(tokens["access_token"])
        intruder = Trader("alice", claims.subject, tokens["access_token"], abroad)
        # The risky sign-in asks for a fresh second factor before sensitive changes; the
        # intruder has the authenticator too.
        await step_up(api, abroad, intruder.access, alice.totp)
        changed = await abroad.put(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(intruder.access),
        )
        assert changed.status_code == 200, changed.text
        asked = await intruder.post(
            "/api/v1/funds/withdrawals",
            {
                "account_id": alice.account_id,
                "bank_account_id": bank_id,
                "amount": "5000.00",
                "idempotency_key": "drain-1",
            },
        )
        assert asked.status_code == 403, asked.text
        assert asked.json()["reason"] == "WITHDRAWALS_FROZEN"

        # The owner's "was this you?" email (sent at the foreign sign-in): "no".
        token = await prompt_token(api, alice)
        assert (await answer(api, token, "no")).status_code == 200
        still = await abroad.get("/api/v1/funds/withdrawals", headers=bearer(intruder.access))
        assert still.status_code == 401
    reviews = await audit_events(api, "fraud:review:opened")
    assert reviews
    assert await audit_events(api, "fraud:withdrawals:frozen")
    refused = await audit_events(api, "funds:withdrawal:refused")
    assert [e["data"]["reason"] for e in refused] == ["WITHDRAWALS_FROZEN"]
    assert before["cash_withdrawing"] == Decimal(0)
