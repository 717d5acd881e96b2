"""An in-process API client over the real app, database and ledger (no mocks)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.identity.container import IdentityServices
from tradeguard.identity.password_hashing import Argon2Parameters
from tradeguard.ledger.models import AuditEventRow
from tradeguard.notify.models import OutboxMessage
from tradeguard.notify.service import BODY_PURPOSE, RECIPIENT_PURPOSE, seal_context
from tradeguard.web.app import create_app

# Cheap parameters keep the suite fast; bench/auth.py measures the production ones.
TEST_ARGON2 = Argon2Parameters(time_cost=1, memory_cost_kib=1024, parallelism=1)
CLIENT_IP = "203.0.113.7"
PASSWORD = "correct horse battery staple 42"


@dataclass
class Api:
    app: FastAPI
    clock: FrozenClock
    engine: AsyncEngine

    @property
    def services(self) -> IdentityServices:
        services: IdentityServices = self.app.state.identity
        return services

    def client(self, ip: str = CLIENT_IP) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(ip, 40000))
        return httpx.AsyncClient(transport=transport, base_url="https://testserver")

    async def outbox(self, *, to: str | None = None) -> list[dict[str, str]]:
        """Queued messages, decrypted: what the user would receive."""
        keyring = self.services.deps.keyring
        async with self.services.unit_of_work() as session:
            rows = (
                # Ids break ties in time (a frozen clock): one app's ids only increase, while
                # the table's physical order is not insertion order once rows were deleted.
                (
                    await session.execute(
                        select(OutboxMessage).order_by(OutboxMessage.created_ns, OutboxMessage.id)
                    )
                )
                .scalars()
                .all()
            )
            messages = [
                {
                    "id": row.id,
                    "channel": row.channel,
                    "template": row.template,
                    "to": keyring.decrypt(
                        row.recipient_enc, purpose=RECIPIENT_PURPOSE, context=seal_context(row.id)
                    ).decode(),
                    "subject": row.subject,
                    "body": keyring.decrypt(
                        row.body_enc, purpose=BODY_PURPOSE, context=seal_context(row.id)
                    ).decode(),
                }
                for row in rows
            ]
        return [m for m in messages if to is None or m["to"] == to]

    async def last_token_in_mail(self, to: str, template: str) -> str:
        mails = [m for m in await self.outbox(to=to) if m["template"] == template]
        match = re.search(r"token=([A-Za-z0-9_-]+)", mails[-1]["body"])
        assert match, mails[-1]
        return match.group(1)

    async def last_code_in_mail(self, to: str) -> str:
        mails = [m for m in await self.outbox(to=to) if m["template"] == "otp_code"]
        match = re.search(r"\b(\d{6})\b", mails[-1]["body"])
        assert match
        return match.group(1)


@asynccontextmanager
async def running_api(
    settings: Settings,
    engine: AsyncEngine,
    clock: FrozenClock,
    *,
    vault_engine: AsyncEngine | None = None,
) -> AsyncIterator[Api]:
    # Background workers off: tests read the outbox and the ledger deterministically.
    app = create_app(
        settings,
        clock=clock,
        engine=engine,
        argon2=TEST_ARGON2,
        run_workers=False,
        vault_engine=vault_engine,
    )
    async with app.router.lifespan_context(app):
        yield Api(app, clock, engine)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register_verified(api: Api, client: httpx.AsyncClient, username: str = "alice") -> str:
    email = f"{username}@example.com"
    response = await client.post(
        "/api/v1/auth/register", json={"username": username, "email": email, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    token = await api.last_token_in_mail(email, "verify_email")
    verified = await client.post("/api/v1/auth/email/verify", json={"token": token})
    assert verified.status_code == 200, verified.text
    return email


async def login(client: httpx.AsyncClient, username: str = "alice", **extra: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/login", json={"login": username, "password": PASSWORD, **extra}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def prove_email(api: Api, client: httpx.AsyncClient, access: str) -> None:
    """The first factor needs this session to prove the mailbox (a password is not enough)."""
    before = {m["id"] for m in await api.outbox()}
    sent = await client.post("/api/v1/auth/email/proof", headers=bearer(access))
    assert sent.status_code == 202, sent.text
    # The message this request queued (not "the last": under a frozen clock times tie, and
    # two apps of one test make ids that need not sort in the order they were made).
    [mail] = [
        m for m in await api.outbox() if m["template"] == "email_proof" and m["id"] not in before
    ]
    match = re.search(r"\b(\d{6})\b", mail["body"])
    assert match
    proved = await client.post(
        "/api/v1/auth/email/proof/verify", json={"code": match.group(1)}, headers=bearer(access)
    )
    assert proved.status_code == 200, proved.text


async def enrol_totp(api: Api, client: httpx.AsyncClient, access: str) -> pyotp.TOTP:
    factors = await client.get("/api/v1/auth/mfa", headers=bearer(access))
    if not [f for f in factors.json() if f["status"] == "active"]:
        await prove_email(api, client, access)
    enrol = await client.post("/api/v1/auth/mfa/totp/enroll", headers=bearer(access))
    assert enrol.status_code == 201, enrol.text
    body = enrol.json()
    totp = pyotp.TOTP(body["secret"])
    code = totp.at(api.clock.now_ns() // 10**9)
    confirm = await client.post(
        "/api/v1/auth/mfa/totp/confirm",
        json={"factor_id": body["factor_id"], "code": code},
        headers=bearer(access),
    )
    assert confirm.status_code == 200, confirm.text
    return totp


async def login_with_totp(
    api: Api, client: httpx.AsyncClient, totp: pyotp.TOTP, username: str = "alice", **extra: Any
) -> dict[str, Any]:
    first = await login(client, username, **extra)
    assert first["status"] == "mfa_required", first
    api.clock.advance(seconds=30)  # a fresh time step: a used code is never accepted twice
    response = await client.post(
        "/api/v1/auth/mfa/verify",
        json={
            "ticket": first["ticket"],
            "method": "totp",
            "code": totp.at(api.clock.now_ns() // 10**9),
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    body["device_token"] = first.get("device_token")
    return body


PROBLEMS = "https://tradeguard.dev/problems/"


async def audit_events(api: Api, event_type: str | None = None) -> list[dict[str, Any]]:
    """Ledger events as stored (canonical JSON, decoded), oldest first, with their sealed
    personal sections opened the way the ledger's consumers read them."""
    keys = api.services.deps.ledger.subject_keys
    assert keys is not None
    async with api.services.unit_of_work() as session:
        query = select(AuditEventRow.body).order_by(AuditEventRow.pk)
        if event_type is not None:
            query = query.where(AuditEventRow.event_type == event_type)
        bodies = (await session.execute(query)).scalars().all()
        documents = [json.loads(body) for body in bodies]
        await keys.open_documents(session, documents)
    return documents


async def step_up(api: Api, client: httpx.AsyncClient, access: str, totp: pyotp.TOTP) -> None:
    api.clock.advance(seconds=30)  # a fresh TOTP step: a used code is never accepted again
    response = await client.post(
        "/api/v1/auth/mfa/step-up",
        json={"method": "totp", "code": totp.at(api.clock.now_ns() // 10**9)},
        headers=bearer(access),
    )
    assert response.status_code == 200, response.text


async def user_with_totp(
    api: Api, client: httpx.AsyncClient, username: str = "alice"
) -> tuple[str, pyotp.TOTP]:
    """A verified user whose password-only first session enrolled TOTP; returns that session."""
    await register_verified(api, client, username)
    access = (await login(client, username))["access_token"]
    return access, await enrol_totp(api, client, access)


def is_problem(response: httpx.Response, status: int, slug: str) -> bool:
    return (
        response.status_code == status
        and response.headers["content-type"].startswith("application/problem+json")
        and response.json()["type"] == PROBLEMS + slug
    )
