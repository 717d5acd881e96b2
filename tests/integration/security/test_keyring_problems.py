"""Keyring errors reach a client as a generic problem: no key name, version or data class in
any body (the detail, which names them, is logged under the request id). SQLite and
PostgreSQL: the found case, a TOTP secret put back after its key version retired, answered
an unauthenticated POST /api/v1/auth/mfa/verify with "sealed under retired key totp_secret
v1"."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.api import login, running_api, user_with_totp
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.keyring import DecryptionFailed, NoActiveKey
from tradeguard.crypto.tasks import rewrap_class
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.vault.server import problem_response as vault_problem_response

OPERATOR = Party("operator", "test")
LEAKS = ("totp_secret", "retired", "sealed under", " v1", "card_vault", "master.key", "kek")


async def test_a_retired_key_behind_mfa_verify_is_a_generic_500(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_api(settings, engine, clock) as api, api.client() as client:
        _, totp = await user_with_totp(api, client)
        async with engine.connect() as conn:
            factor, old = (
                await conn.execute(
                    text("SELECT id, secret_enc FROM mfa_factors WHERE secret_enc IS NOT NULL")
                )
            ).one()
        # The TOTP class rotates, its values are rewrapped and v1 retires; then the old
        # ciphertext is put back (a restore of an old copy, an attacker with write access).
        management = api.services.key_management
        async with unit_of_work(sessions) as session:
            await management.rotate(session, DataClass.TOTP_SECRET, actor=OPERATOR)
        clock.advance(ns=management.policy.activation_delay_ns)
        async with sessions() as session:
            await management.keyring.refresh(session)
        run = await rewrap_class(management, sessions, DataClass.TOTP_SECRET, actor=OPERATOR)
        assert run.finished
        clock.advance(ns=management.policy.retire_grace_ns)
        async with unit_of_work(sessions) as session:
            retired = await management.retire_unused(session, DataClass.TOTP_SECRET, actor=OPERATOR)
        assert 1 in retired
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE mfa_factors SET secret_enc = :old WHERE id = :id"),
                {"old": old, "id": factor},
            )
        first = await login(client)
        assert first["status"] == "mfa_required", first
        clock.advance(seconds=30)
        with caplog.at_level(logging.ERROR):
            response = await client.post(
                "/api/v1/auth/mfa/verify",
                json={
                    "ticket": first["ticket"],
                    "method": "totp",
                    "code": totp.at(clock.now_ns() // 10**9),
                },
            )
    assert response.status_code == 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/decryption-failed")
    assert body["detail"] == DecryptionFailed.title
    assert not [leak for leak in LEAKS if leak in response.text.lower()], response.text
    # The operator still learns which key: the log line keeps the detail.
    assert "retired key totp_secret v1" in caplog.text


@pytest.mark.parametrize(
    "error",
    [
        DecryptionFailed("sealed under retired key card_vault v1"),
        NoActiveKey("no active key version for card_vault"),
    ],
)
def test_the_vault_server_answers_keyring_errors_generically(
    error: DecryptionFailed | NoActiveKey, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = vault_problem_response(error, "/v1/detokenize")
    text_body = bytes(response.body).decode()
    assert "card_vault" not in text_body
    assert error.title in text_body
    assert "card_vault" in caplog.text
