"""Card deposits through the card vault (PCI-2): the payment service receives the card and
its security code for one authorization; the code is never stored; a declined card credits
nothing; the sandbox's decline test numbers; another customer's card is not found."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.vault.conftest import vault_database, vault_engine
from tests.support.api import PROBLEMS, Api, audit_events, running_api
from tests.support.cards import CVV, VISA
from tests.support.funds import (
    Customer,
    add_bank,
    balances_of,
    customer,
    past_cooling,
    request_withdrawal,
    run_funds,
)
from tests.support.trading import reconcile
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock

__all__ = ["vault_database", "vault_engine"]

PHONE = "+14155550108"
DECLINED = "4000000000000002"
NO_FUNDS = "4000000000009995"


@pytest.fixture
async def api(
    settings: Settings, engine: AsyncEngine, vault_engine: AsyncEngine, clock: FrozenClock
) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock, vault_engine=vault_engine) as running:
        yield running


async def add_card(who: Customer, pan: str) -> str:
    added = await who.post(
        "/api/v1/me/cards", {"pan": pan, "expiry_month": 12, "expiry_year": 2030}
    )
    assert added.status_code == 201, added.text
    return str(added.json()["id"])


async def card_deposit(
    who: Customer, card_id: str, amount: str, *, cvv: str = CVV, key: str = "c1"
) -> Any:
    return await who.post(
        "/api/v1/funds/deposits",
        {
            "account_id": who.account_id,
            "rail": "card",
            "card_id": card_id,
            "cvv": cvv,
            "amount": amount,
            "idempotency_key": key,
        },
    )


class TestCardDeposits:
    @pytest.mark.spec("PCI-2")
    async def test_an_approved_card_is_credited_and_its_code_is_nowhere(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            card_id = await add_card(alice, VISA)
            made = await card_deposit(alice, card_id, "750.00")
            assert made.status_code == 201, made.text
            assert made.json()["status"] == "pending"
            assert made.json()["card_id"] == card_id
            assert VISA not in made.text
            assert (await balances_of(alice))["cash_settled"] == Decimal(750)
            api.clock.advance(seconds=86_400)
            assert (await run_funds(api)).deposits == 1
        assert (await reconcile(api))["ok"] is True
        [credited] = await audit_events(api, "funds:deposit:credited")
        assert credited["data"]["last4"] == "1111"
        # The payment service's use of the card is in the ledger; the code and number are not.
        async with engine.connect() as conn:
            bodies = (await conn.execute(text("SELECT body FROM audit_event"))).all()
        blob = b"".join(
            bytes(b) if isinstance(b, bytes | memoryview) else str(b).encode() for (b,) in bodies
        )
        assert VISA.encode() not in blob
        assert f'"{CVV}"'.encode() not in blob

    @pytest.mark.parametrize(
        ("pan", "cvv", "code"),
        [
            (DECLINED, CVV, "card_declined"),
            (NO_FUNDS, CVV, "insufficient_funds"),
            (VISA, "000", "incorrect_cvc"),
        ],
    )
    async def test_a_declined_card_credits_nothing(
        self, api: Api, pan: str, cvv: str, code: str
    ) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            card_id = await add_card(alice, pan)
            refused = await card_deposit(alice, card_id, "100.00", cvv=cvv)
            assert refused.status_code == 402, refused.text
            body = refused.json()
            assert body["type"] == PROBLEMS + "card-declined"
            assert body["decline_code"] == code
            assert (await balances_of(alice))["cash_settled"] == 0
            [row] = (await alice.get("/api/v1/funds/deposits")).json()
            assert (row["status"], row["decline_code"]) == ("failed", code)
        [event] = await audit_events(api, "funds:deposit:declined")
        assert event["data"]["decline_code"] == code

    @pytest.mark.parametrize(
        "changes",
        [
            {"cvv": "12"},
            {"cvv": "12345"},
            {"cvv": None},
            {"card_id": None},
            {"bank_account_id": "0190c5a0-0000-7000-8000-000000000001"},
        ],
    )
    async def test_a_card_deposit_needs_a_card_and_its_code_and_nothing_else(
        self, api: Api, changes: dict[str, Any]
    ) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            card_id = await add_card(alice, VISA)
            body = {
                "account_id": alice.account_id,
                "rail": "card",
                "card_id": card_id,
                "cvv": CVV,
                "amount": "10.00",
                "idempotency_key": "k",
            } | changes
            response = await alice.post(
                "/api/v1/funds/deposits", {k: v for k, v in body.items() if v is not None}
            )
            assert response.status_code == 422, response.text
            assert f'"{CVV}"' not in response.text
            assert (await alice.get("/api/v1/funds/deposits")).json() == []

    async def test_another_customers_card_is_not_found(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.61") as other:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            card_id = await add_card(alice, VISA)
            mallory = await customer(api, other, "mallory", phone="+14155550109", cash="0")
            stolen = await card_deposit(mallory, card_id, "10.00")
            assert stolen.status_code == 404
            assert (await balances_of(mallory))["cash_settled"] == 0


async def test_guessing_a_cards_security_code_stops_after_five_declines(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="0")
        card_id = await add_card(alice, VISA)
        for n in range(5):
            declined = await card_deposit(alice, card_id, "10.00", cvv="000", key=f"g{n}")
            assert declined.status_code == 402
        guessed = await card_deposit(alice, card_id, "10.00", cvv=CVV, key="right")
        assert guessed.status_code == 429, guessed.text
        assert (await balances_of(alice))["cash_settled"] == 0


async def test_parallel_guesses_cannot_pass_five_declines_together(
    api: Api, engine: AsyncEngine
) -> None:
    # 12 wrong codes at once: the decline count is checked again under the customer's lock
    # right before each charge, so no more than 5 ever reach the processor as declines.
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="0")
        card_id = await add_card(alice, VISA)
        responses = await asyncio.gather(
            *(card_deposit(alice, card_id, "10.00", cvv="000", key=f"p{n}") for n in range(12))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [402] * 5 + [429] * 7, [r.text for r in responses]
        guessed = await card_deposit(alice, card_id, "10.00", cvv=CVV, key="right")
        assert guessed.status_code == 429, guessed.text
        assert "5 card charges were declined" in guessed.json()["detail"]
    async with engine.connect() as conn:
        declined = await conn.scalar(
            text("SELECT count(*) FROM funds_deposits WHERE decline_code IS NOT NULL")
        )
    assert declined == 5
    assert len(await audit_events(api, "funds:deposit:declined")) == 5


async def test_card_money_stays_for_the_chargeback_hold_after_it_settles(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="0")
        card_id = await add_card(alice, VISA)
        await add_bank(api, alice)
        assert (await card_deposit(alice, card_id, "500.00")).status_code == 201
        await past_cooling(api, alice)  # 73 hours: collected, inside the 30-day hold
        await run_funds(api)
        held = await request_withdrawal(alice, "100.00", key="early")
        assert held.status_code == 403
        assert held.json()["reason"] == "INSUFFICIENT_WITHDRAWABLE_CASH"
        api.clock.advance(seconds=30 * 86_400)
        await alice.trader.sign_in_again()
        assert (await request_withdrawal(alice, "100.00", key="later")).status_code == 202


async def test_a_chargeback_after_settling_reverses_the_credit_and_freezes_withdrawals(
    api: Api,
) -> None:
    """The sandbox's dispute test card settles, then comes back CB10 (the cardholder says
    it was fraud) three days later: the credit is reversed from the firm's bank."""
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="0")
        card_id = await add_card(alice, "4000000000000259")
        made = await card_deposit(alice, card_id, "400.00")
        assert made.status_code == 201, made.text
        api.clock.advance(seconds=86_400)
        assert (await run_funds(api)).deposits == 1
        api.clock.advance(seconds=3 * 86_400)
        assert (await run_funds(api)).late_returns == 1
        await alice.trader.sign_in_again()
        assert (await balances_of(alice))["cash_settled"] == 0
        row = (await alice.get(f"/api/v1/funds/deposits/{made.json()['id']}")).json()
        assert row["status"] == "returned"
    [event] = await audit_events(api, "funds:deposit:returned")
    assert (event["data"]["return_code"], event["data"]["after_settlement"]) == ("CB10", True)
    assert await audit_events(api, "fraud:withdrawals:frozen")
    assert (await reconcile(api))["ok"] is True
