"""Arranging back-office tests: a customer with a phone factor and an account, and staff."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.api import Api, audit_events, bearer
from tests.support.trading import Trader, funded_account, signed_in_staff, signed_in_trader
from tradeguard.access.domain import Role

BACKOFFICE = "/api/v1/backoffice"
ACCESS_LOG = "/api/v1/me/access-log"
PHONE = "+14155550123"
UNKNOWN_ID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"
REASON = "Customer called about a rejected order; confirming the details on file"


@dataclass
class Customer:
    trader: Trader
    email: str
    phone_factor_id: str | None
    account_id: str

    @property
    def user_id(self) -> str:
        return self.trader.user_id


async def customer(
    api: Api, client: httpx.AsyncClient, username: str = "alice", *, phone: bool = True
) -> Customer:
    """A signed-in trader with TOTP, optionally a text-message factor, and a funded account."""
    trader = await signed_in_trader(api, client, username)
    factor_id = None
    if phone:
        started = await trader.post("/api/v1/auth/mfa/sms/enroll", {"phone": PHONE})
        assert started.status_code == 201, started.text
        factor_id = str(started.json()["factor_id"])
        texts = [m for m in await api.outbox(to=PHONE) if m["channel"] == "sms"]
        code = texts[-1]["body"].split("code is ")[1][:6]
        confirmed = await trader.post(
            "/api/v1/auth/mfa/sms/confirm", {"factor_id": factor_id, "code": code}
        )
        assert confirmed.status_code == 200, confirmed.text
    account_id = await funded_account(api, trader, "1000.00")
    return Customer(trader, f"{username}@example.com", factor_id, account_id)


async def staff(
    api: Api, client: httpx.AsyncClient, username: str, role: Role = Role.SUPPORT
) -> Trader:
    return await signed_in_staff(api, client, username, role)


async def access_log(who: Trader, **params: Any) -> dict[str, Any]:
    response = await who.get(ACCESS_LOG, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def events_of(api: Api, event_type: str) -> list[dict[str, Any]]:
    return await audit_events(api, event_type)


async def token_works(client: httpx.AsyncClient, access: str) -> bool:
    response = await client.get("/api/v1/me", headers=bearer(access))
    assert response.status_code in {200, 401}, response.text
    return response.status_code == 200
