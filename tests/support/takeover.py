"""Arranging takeover tests: a customer signed in at home, the same credentials used from
elsewhere, the "was this you?" mail, and what the defence recorded."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pyotp
from sqlalchemy import func, select

from tests.support.api import (
    Api,
    bearer,
    enrol_totp,
    login,
    login_with_totp,
    register_verified,
)
from tests.support.trading import Trader
from tradeguard.fraud.container import FraudServices
from tradeguard.fraud.models import TakeoverReview, WithdrawalFreeze
from tradeguard.fraud.service import TakeoverDecision
from tradeguard.identity.models import AuthSession
from tradeguard.ledger.models import AuditEventRow

# MaxMind's published test addresses, as geoip2fast's shipped database places them: two
# networks in the United Kingdom (Andrews & Arnold, Sky) and one in Sweden (Bredband2).
GB = "81.2.69.142"
GB_OTHER_NETWORK = "2.125.160.216"
SE = "89.160.20.112"
ANSWERS = "/api/v1/takeover/answers"
PROMPT = "takeover_prompt"


@dataclass
class Customer:
    username: str
    user_id: str
    email: str
    totp: pyotp.TOTP
    home: httpx.AsyncClient
    access: str
    session_id: str
    device_token: str | None


def fraud_of(api: Api) -> FraudServices:
    services: FraudServices = api.app.state.fraud
    return services


async def customer(
    api: Api, username: str = "alice", ip: str = GB, *, phone: str | None = None
) -> Customer:
    """Registered, TOTP enrolled and signed in with it from `ip`: the baseline sign-ins;
    with `phone`, a confirmed text-message factor too."""
    home = api.client(ip)
    email = await register_verified(api, home, username)
    first = await login(home, username)
    totp = await enrol_totp(api, home, first["access_token"])
    tokens = await login_with_totp(api, home, totp, username)
    if phone is not None:
        headers = bearer(tokens["access_token"])
        started = await home.post(
            "/api/v1/auth/mfa/sms/enroll", json={"phone": phone}, headers=headers
        )
        assert started.status_code == 201, started.text
        [text] = [m for m in await api.outbox(to=phone) if m["channel"] == "sms"]
        confirmed = await home.post(
            "/api/v1/auth/mfa/sms/confirm",
            json={
                "factor_id": started.json()["factor_id"],
                "code": text["body"].split("code is ")[1][:6],
            },
            headers=headers,
        )
        assert confirmed.status_code == 200, confirmed.text
    claims = api.services.verifier.verify(tokens["access_token"])
    return Customer(
        username,
        claims.subject,
        email,
        totp,
        home,
        tokens["access_token"],
        claims.session_id,
        tokens["device_token"],
    )


async def sign_in_from(api: Api, who: Customer, ip: str, *, same_device: bool = False) -> Trader:
    """The customer's credentials (password and TOTP) used from another address."""
    client = api.client(ip)
    extra: dict[str, Any] = {"device": {"device_token": who.device_token}} if same_device else {}
    tokens = await login_with_totp(api, client, who.totp, who.username, **extra)
    claims = api.services.verifier.verify(tokens["access_token"])
    return Trader(who.username, claims.subject, tokens["access_token"], client)


async def prompt_token(api: Api, who: Customer) -> str:
    return await api.last_token_in_mail(who.email, PROMPT)


async def prompts(api: Api, who: Customer) -> list[dict[str, str]]:
    return [m for m in await api.outbox(to=who.email) if m["template"] == PROMPT]


async def answer(api: Api, token: str, reply: str, ip: str = "198.51.100.20") -> httpx.Response:
    async with api.client(ip) as client:
        return await client.post(ANSWERS, json={"token": token, "answer": reply})


async def works(client: httpx.AsyncClient, access: str) -> bool:
    response = await client.get("/api/v1/auth/sessions", headers=bearer(access))
    assert response.status_code in {200, 401}, response.text
    return response.status_code == 200


async def frozen(api: Api, user_id: str) -> bool:
    fraud = fraud_of(api)
    async with fraud.unit_of_work() as session:
        return await fraud.defence.withdrawals_frozen(session, user_id)


async def withdrawal(api: Api, user_id: str, amount: str = "1000.00") -> TakeoverDecision:
    fraud = fraud_of(api)
    async with fraud.unit_of_work() as session:
        return await fraud.defence.withdrawal_requested(
            session, user_id=user_id, amount=Decimal(amount), withdrawal_id="w-1"
        )


async def session_row(api: Api, session_id: str) -> AuthSession:
    async with api.services.unit_of_work() as session:
        row = await session.get(AuthSession, session_id)
        assert row is not None
        return row


async def counts(api: Api) -> tuple[int, int, int, int]:
    """Ledger events, reviews, freezes, revoked sessions: what an answer could change."""
    async with api.services.unit_of_work() as session:
        events = await session.scalar(select(func.count()).select_from(AuditEventRow))
        reviews = await session.scalar(select(func.count()).select_from(TakeoverReview))
        freezes = await session.scalar(select(func.count()).select_from(WithdrawalFreeze))
        revoked = await session.scalar(
            select(func.count()).select_from(AuthSession).where(AuthSession.revoked_ns.is_not(None))
        )
    return int(events or 0), int(reviews or 0), int(freezes or 0), int(revoked or 0)


async def raw_bodies(api: Api, prefix: str = "fraud:") -> list[bytes]:
    async with api.services.unit_of_work() as session:
        rows = await session.execute(
            select(AuditEventRow.body).where(AuditEventRow.event_type.like(f"{prefix}%"))
        )
        return [bytes(body) for body in rows.scalars().all()]
