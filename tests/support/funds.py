"""Customers who move money, through the real API: signed in with TOTP, a phone for SMS
codes, a funded trading account and a confirmed bank account (micro-deposits read from the
sandbox processor's statement, as the customer would read their bank statement)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pyotp

from tests.support.api import (
    Api,
    bearer,
    enrol_totp,
    login,
    login_with_totp,
    register_verified,
)
from tests.support.trading import Trader, funded_account
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.funds.container import FundsServices
from tradeguard.funds.tasks import PassResult, run_funds_once

# A valid ABA routing number (JPMorgan Chase's, public).
ROUTING = "021000021"
HOUR = 3600 * NS_PER_SECOND


def funds_of(api: Api) -> FundsServices:
    services: FundsServices = api.app.state.funds
    return services


@dataclass
class Customer:
    trader: Trader
    totp: pyotp.TOTP
    phone: str
    email: str
    account_id: str
    bank_account_id: str | None = None

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.trader.post(path, body)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.trader.get(path, **kwargs)


async def _last_text(api: Api, phone: str, template: str) -> str:
    texts = [
        m for m in await api.outbox(to=phone) if m["channel"] == "sms" and m["template"] == template
    ]
    match = re.search(r"\b(\d{6})\b", texts[-1]["body"])
    assert match, texts[-1]
    return match.group(1)


async def _last_mail_code(api: Api, email: str, template: str) -> str:
    mails = [m for m in await api.outbox(to=email) if m["template"] == template]
    match = re.search(r"\b(\d{6})\b", mails[-1]["body"])
    assert match, mails[-1]
    return match.group(1)


async def customer(
    api: Api,
    client: httpx.AsyncClient,
    username: str,
    *,
    phone: str,
    cash: str = "100000",
    sms: bool = True,
) -> Customer:
    """Registered, TOTP and (unless `sms=False`) SMS factors, a funded cash account."""
    email = await register_verified(api, client, username)
    first = await login(client, username)
    totp = await enrol_totp(api, client, first["access_token"])
    tokens = await login_with_totp(api, client, totp, username)
    device = {"device_token": tokens["device_token"]}

    async def again() -> str:
        renewed = await login_with_totp(api, client, totp, username, device=device)
        return str(renewed["access_token"])

    claims = api.services.verifier.verify(tokens["access_token"])
    trader = Trader(username, claims.subject, tokens["access_token"], client, again)
    if sms:
        started = await client.post(
            "/api/v1/auth/mfa/sms/enroll", json={"phone": phone}, headers=bearer(trader.access)
        )
        assert started.status_code == 201, started.text
        confirmed = await client.post(
            "/api/v1/auth/mfa/sms/confirm",
            json={
                "factor_id": started.json()["factor_id"],
                "code": await _last_text(api, phone, "otp_code"),
            },
            headers=bearer(trader.access),
        )
        assert confirmed.status_code == 200, confirmed.text
    account_id = await funded_account(api, trader, cash)
    return Customer(trader, totp, phone, email, account_id)


async def add_bank(
    api: Api,
    who: Customer,
    account_number: str = "000123456789",
    *,
    verify: bool = True,
    holder_name: str = "Jordan Example",
) -> str:
    added = await who.post(
        "/api/v1/funds/bank-accounts",
        {
            "routing_number": ROUTING,
            "account_number": account_number,
            "account_type": "checking",
            "nickname": "Main checking",
            "holder_name": holder_name,
        },
    )
    assert added.status_code == 201, added.text
    bank_id: str = added.json()["id"]
    if verify:
        first, second = funds_of(api).processor.statement(bank_id)
        verified = await who.post(
            f"/api/v1/funds/bank-accounts/{bank_id}/verify",
            {"amounts": [str(second), str(first)]},
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["status"] == "verified"
    who.bank_account_id = bank_id
    return bank_id


async def past_cooling(api: Api, who: Customer, hours: int = 73) -> None:
    """Move past the new-account and new-destination holds and the takeover defence's
    window after a security change (the phone added at set-up, 72 hours), and sign in
    again (a fresh second factor, as a withdrawal needs)."""
    api.clock.advance(seconds=hours * 3600)
    await who.trader.sign_in_again()


async def request_withdrawal(
    who: Customer, amount: str, *, key: str | None = None, bank_account_id: str | None = None
) -> httpx.Response:
    return await who.post(
        "/api/v1/funds/withdrawals",
        {
            "account_id": who.account_id,
            "bank_account_id": bank_account_id or who.bank_account_id,
            "amount": amount,
            "idempotency_key": key or f"w-{amount}-{id(who)}-{who.trader.access[-6:]}",
        },
    )


async def withdrawal_codes(api: Api, who: Customer) -> tuple[str, str]:
    return (
        await _last_mail_code(api, who.email, "action_code"),
        await _last_text(api, who.phone, "action_code"),
    )


async def confirm(api: Api, who: Customer, withdrawal_id: str) -> httpx.Response:
    email_code, sms_code = await withdrawal_codes(api, who)
    return await who.post(
        f"/api/v1/funds/withdrawals/{withdrawal_id}/confirm",
        {"email_code": email_code, "sms_code": sms_code},
    )


async def run_funds(api: Api) -> PassResult:
    return await run_funds_once(funds_of(api))


async def balances_of(who: Customer) -> dict[str, Decimal]:
    response = await who.get(f"/api/v1/accounts/{who.account_id}")
    assert response.status_code == 200, response.text
    return {k: Decimal(v) for k, v in response.json()["balances"].items()}
