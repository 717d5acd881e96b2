"""API keys end to end over the real app: creation with a fresh factor, scopes, the IP
allowlist, signed requests (window, replay, tampering), revocation, expiry, rotation,
secrecy, and the secret-scanning leak report (API-1, API-3, ACCT-3, PRE-1)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from tests.integration.apikeys.conftest import (
    BOT_NETWORK,
    OTHER_IP,
    Owner,
    bot_client,
    create_key,
    owner,
    signed,
)
from tests.support.api import Api, audit_events, step_up
from tests.support.trading import add_instrument, funded_account
from tradeguard.apikeys.models import ApiKey
from tradeguard.crypto.columns import SealedField
from tradeguard.ledger.models import AuditEventRow

ORDER = {
    "client_order_id": "bot-1",
    "symbol": "AAPL",
    "side": "buy",
    "type": "limit",
    "quantity": 10,
    "limit_price": "199.50",
    "time_in_force": "day",
}


def refused(response: Any, reason: str) -> bool:
    return bool(
        response.status_code == 401
        and response.headers["content-type"].startswith("application/problem+json")
        and response.json()["reason"] == reason
    )


async def trading_setup(api: Api, alice: Owner) -> str:
    await add_instrument(api, "AAPL", "200.00")
    return await funded_account(api, alice.trader, "10000.00")


@pytest.mark.spec("API-1", "API-3")
class TestKeysPlaceOrders:
    async def test_a_trade_key_places_an_order_through_the_real_pre_trade_path(
        self, api: Api
    ) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            account = await trading_setup(api, alice)
            key = await create_key(alice)
            assert key["secret"].startswith("tgk_live_")
            assert key["key"]["id"].startswith("tgk_id_")
            path = f"/api/v1/accounts/{account}/orders"
            response = await signed(api, bot, key, "POST", path, ORDER)
            assert response.status_code == 201, response.text
            order = response.json()
            # The same pre-trade checks: an order beyond buying power is refused with its code.
            too_big = {**ORDER, "client_order_id": "bot-2", "quantity": 1000}
            refused_order = await signed(api, bot, key, "POST", path, too_big)
            assert refused_order.status_code == 422, refused_order.text
            assert refused_order.json()["code"] == "RISK_BUYING_POWER"
            listed = await signed(api, bot, key, "GET", path)
            assert listed.status_code == 200
            assert order["id"] in {o["id"] for o in listed.json()}
        placed = await audit_events(api, "trading:order:placed")
        assert placed[-1]["data"]["order_id"] == order["id"]
        checks = [
            e
            for e in await audit_events(api, "access:permission:checked")
            if e["data"].get("api_key_id") == key["key"]["id"]
        ]
        # Every use is audited once, by the guard's own check event, naming the key.
        assert [c["data"]["permission"] for c in checks] == [
            "order:place",
            "order:place",
            "account:view",
        ]

    async def test_a_read_key_reads_but_cannot_place_orders(self, api: Api) -> None:
        async with api.client() as client, bot_client(api, OTHER_IP) as bot:
            alice = await owner(api, client)
            account = await trading_setup(api, alice)
            key = await create_key(alice, "read", [])
            path = f"/api/v1/accounts/{account}/orders"
            assert (await signed(api, bot, key, "GET", f"/api/v1/accounts/{account}")).is_success
            assert (await signed(api, bot, key, "GET", "/api/v1/instruments")).is_success
            placed = await signed(api, bot, key, "POST", path, ORDER)
            assert placed.status_code == 403, placed.text

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/v1/apikeys"),  # its own keys: security settings
            ("POST", "/api/v1/apikeys"),
            ("GET", "/api/v1/auth/mfa"),  # factors
            ("POST", "/api/v1/funds/withdrawals"),  # money movement
        ],
    )
    async def test_a_trade_key_reaches_nothing_outside_its_scope(
        self, api: Api, method: str, path: str
    ) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            body: dict[str, object] | None = {} if method == "POST" else None
            response = await signed(api, bot, key, method, path, body)
            assert response.status_code == 403, response.text


@pytest.mark.spec("ACCT-3")
class TestAllowlist:
    async def test_a_trade_key_needs_an_allowlist(self, api: Api) -> None:
        async with api.client() as client:
            alice = await owner(api, client)
            response = await alice.trader.post(
                "/api/v1/apikeys", {"name": "bot", "scope": "trade", "ip_allowlist": []}
            )
            assert response.status_code == 422, response.text

    async def test_a_trade_key_from_outside_its_allowlist_is_refused_and_audited(
        self, api: Api
    ) -> None:
        async with api.client() as client, bot_client(api, OTHER_IP) as stranger:
            alice = await owner(api, client)
            account = await trading_setup(api, alice)
            key = await create_key(alice)
            path = f"/api/v1/accounts/{account}/orders"
            response = await signed(api, stranger, key, "POST", path, ORDER)
            assert refused(response, "ip_not_allowed")
        [event] = await audit_events(api, "apikeys:request:refused")
        assert event["data"] == {"reason": "ip_not_allowed", "key_id": key["key"]["id"]}

    async def test_an_ipv6_allowlist_and_its_change(self, api: Api) -> None:
        async with (
            api.client() as client,
            bot_client(api, "2001:db8::7") as v6,
            bot_client(api) as v4,
        ):
            alice = await owner(api, client)
            key = await create_key(alice, allowlist=["2001:db8::/32"])
            assert (await signed(api, v6, key, "GET", "/api/v1/accounts")).is_success
            assert refused(await signed(api, v4, key, "GET", "/api/v1/accounts"), "ip_not_allowed")
            changed = await alice.trader.patch(
                f"/api/v1/apikeys/{key['key']['id']}", {"ip_allowlist": [BOT_NETWORK]}
            )
            assert changed.status_code == 200, changed.text
            assert (await signed(api, v4, key, "GET", "/api/v1/accounts")).is_success


@pytest.mark.spec("API-3")
class TestSignedRequests:
    async def test_a_replay_within_the_window_is_refused(self, api: Api) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            first = await signed(api, bot, key, "GET", "/api/v1/accounts", nonce="n" * 20)
            assert first.status_code == 200, first.text
            again = await signed(api, bot, key, "GET", "/api/v1/accounts", nonce="n" * 20)
            assert refused(again, "replayed_nonce")

    @pytest.mark.parametrize(
        ("skew_ms", "ok"), [(5000, True), (-5000, True), (5001, False), (-5001, False)]
    )
    async def test_clock_skew_at_and_just_past_the_window(
        self, api: Api, skew_ms: int, ok: bool
    ) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            stamp = api.clock.now_ns() // 10**6 + skew_ms
            response = await signed(api, bot, key, "GET", "/api/v1/accounts", timestamp_ms=stamp)
            assert response.status_code == 200 if ok else refused(response, "stale_timestamp")

    @pytest.mark.parametrize(
        "tamper", ["method", "path", "query", "body", "timestamp", "nonce", "key", "signature"]
    )
    async def test_a_change_to_any_signed_component_is_refused(self, api: Api, tamper: str) -> None:
        from tradeguard.apikeys.signing import sign_headers  # noqa: PLC0415

        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            account = await trading_setup(api, alice)
            key = await create_key(alice)
            other = await create_key(alice)
            path = f"/api/v1/accounts/{account}/orders"
            body = json.dumps(ORDER).encode()
            headers = sign_headers(
                key_id=key["key"]["id"],
                secret=key["secret"],
                method="POST",
                path=path,
                query="",
                body=body,
                timestamp_ms=api.clock.now_ns() // 10**6,
            )
            method, url = "POST", path
            if tamper == "method":
                method = "PUT"
                url = f"{path}/0190c5a0-0000-7000-8000-000000000001"
            elif tamper == "path":
                url = f"/api/v1/accounts/{account}/locates"
            elif tamper == "query":
                url = f"{path}?x=1"
            elif tamper == "body":
                body = body.replace(b"10", b"11")
            elif tamper == "timestamp":
                headers["TG-TIMESTAMP"] = str(int(headers["TG-TIMESTAMP"]) + 1)
            elif tamper == "nonce":
                headers["TG-NONCE"] = headers["TG-NONCE"][:-1] + (
                    "A" if headers["TG-NONCE"][-1] != "A" else "B"
                )
            elif tamper == "key":
                headers["TG-API-KEY"] = other["key"]["id"]
            else:
                sig = headers["TG-SIGNATURE"]
                headers["TG-SIGNATURE"] = ("0" if sig[0] != "0" else "1") + sig[1:]
            headers["content-type"] = "application/json"
            response = await bot.request(method, url, content=body, headers=headers)
            assert refused(response, "bad_signature"), response.text
        assert not await audit_events(api, "trading:order:placed")

    async def test_an_unknown_key_and_a_wrong_secret_say_only_their_reason(self, api: Api) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            unknown = {**key, "key": {**key["key"], "id": "tgk_id_" + "0" * 24}}
            response = await signed(api, bot, unknown, "GET", "/api/v1/accounts")
            assert refused(response, "unknown_key")
            wrong = await signed(
                api, bot, key, "GET", "/api/v1/accounts", secret="tgk_live_" + "x" * 46
            )
            assert refused(wrong, "bad_signature")
            assert "secret" not in wrong.text.lower()


@pytest.mark.spec("API-3")
class TestConcurrentReplays:
    """Against the in-process store and the Redis one that replicas share."""

    @pytest.fixture
    def redis_url(self, nonce_backend: str | None) -> str | None:
        return nonce_backend

    async def test_concurrent_replays_of_one_nonce_let_exactly_one_through(
        self, api: Api, nonce_backend: str | None
    ) -> None:
        del nonce_backend  # the parametrized app below uses it
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            stamp = api.clock.now_ns() // 10**6
            nonce = "concurrent-" + key["key"]["id"][-12:]
            responses = await asyncio.gather(
                *(
                    signed(
                        api, bot, key, "GET", "/api/v1/accounts", nonce=nonce, timestamp_ms=stamp
                    )
                    for _ in range(8)
                )
            )
            assert sorted(r.status_code for r in responses) == [200] + [401] * 7
            assert all(refused(r, "replayed_nonce") for r in responses if r.status_code == 401)


@pytest.mark.spec("API-1")
class TestLifecycle:
    async def test_creation_without_a_fresh_factor_is_refused(self, api: Api) -> None:
        async with api.client() as client:
            alice = await owner(api, client)
            api.clock.advance(seconds=601)
            response = await alice.trader.post(
                "/api/v1/apikeys", {"name": "bot", "scope": "read", "ip_allowlist": []}
            )
            assert response.status_code == 403, response.text
            assert response.json()["type"].endswith("step-up-required")
            await step_up(api, client, alice.trader.access, alice.totp)
            again = await alice.trader.post(
                "/api/v1/apikeys", {"name": "bot", "scope": "read", "ip_allowlist": []}
            )
            assert again.status_code == 201, again.text

    async def test_rotation_and_scope_changes_need_a_fresh_factor_too(self, api: Api) -> None:
        async with api.client() as client:
            alice = await owner(api, client)
            key = await create_key(alice, "read", [])
            key_path = f"/api/v1/apikeys/{key['key']['id']}"
            api.clock.advance(seconds=601)
            rotated = await alice.trader.post(f"{key_path}/rotate")
            changed = await alice.trader.patch(key_path, {"scope": "trade"})
            for response in (rotated, changed):
                assert response.status_code == 403, response.text
                assert response.json()["type"].endswith("step-up-required")
            await step_up(api, client, alice.trader.access, alice.totp)
            # A read key becomes a trade key only with an allowlist.
            unlisted = await alice.trader.patch(key_path, {"scope": "trade"})
            assert unlisted.status_code == 422, unlisted.text
            listed = await alice.trader.patch(
                key_path, {"scope": "trade", "ip_allowlist": [BOT_NETWORK]}
            )
            assert listed.status_code == 200, listed.text
            assert listed.json()["scope"] == "trade"
        changes = await audit_events(api, "apikeys:key:changed")
        assert [c["data"]["scope"] for c in changes] == ["trade"]

    async def test_a_key_and_a_bearer_token_together_are_refused(self, api: Api) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            from tradeguard.apikeys.signing import sign_headers  # noqa: PLC0415

            headers = sign_headers(
                key_id=key["key"]["id"],
                secret=key["secret"],
                method="GET",
                path="/api/v1/accounts",
                timestamp_ms=api.clock.now_ns() // 10**6,
            )
            both = await bot.get("/api/v1/accounts", headers={**headers, **alice.trader.headers})
            assert both.status_code == 401, both.text
            # The bearer token alone still works as before.
            assert (await alice.trader.get("/api/v1/accounts")).status_code == 200

    async def test_a_revoked_key_fails_on_the_next_request(self, api: Api) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            assert (await signed(api, bot, key, "GET", "/api/v1/accounts")).is_success
            revoked = await alice.trader.delete(f"/api/v1/apikeys/{key['key']['id']}")
            assert revoked.status_code == 200
            assert revoked.json()["status"] == "revoked"
            assert refused(await signed(api, bot, key, "GET", "/api/v1/accounts"), "revoked_key")

    async def test_an_expired_key_fails(self, api: Api) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            api.clock.advance(seconds=90 * 86_400 + 1)
            assert refused(await signed(api, bot, key, "GET", "/api/v1/accounts"), "expired_key")

    async def test_rotation_keeps_the_old_key_for_the_overlap_only(self, api: Api) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            old = await create_key(alice)
            rotated = await alice.trader.post(f"/api/v1/apikeys/{old['key']['id']}/rotate")
            assert rotated.status_code == 201, rotated.text
            new = rotated.json()
            assert new["key"]["ip_allowlist"] == [BOT_NETWORK]
            assert (await signed(api, bot, old, "GET", "/api/v1/accounts")).is_success
            assert (await signed(api, bot, new, "GET", "/api/v1/accounts")).is_success
            api.clock.advance(seconds=24 * 3600 + 1)
            assert refused(await signed(api, bot, old, "GET", "/api/v1/accounts"), "expired_key")
            assert (await signed(api, bot, new, "GET", "/api/v1/accounts")).is_success

    async def test_last_used_is_visible_and_written_at_most_once_a_minute(self, api: Api) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            first_use = api.clock.now_ns()
            for _ in range(3):
                assert (await signed(api, bot, key, "GET", "/api/v1/accounts")).is_success
            api.clock.advance(seconds=30)
            assert (await signed(api, bot, key, "GET", "/api/v1/accounts")).is_success
            listed = (await alice.trader.get("/api/v1/apikeys")).json()
            async with api.services.unit_of_work() as session:
                row = await session.get(ApiKey, key["key"]["id"])
                assert row is not None
                assert row.last_used_ns == first_use
            assert listed[0]["last_used_at"] is not None
            assert listed[0]["expires_at"] > listed[0]["created_at"]

    async def test_staff_list_and_revoke_any_key(self, api: Api) -> None:
        from tests.support.trading import signed_in_staff  # noqa: PLC0415
        from tradeguard.access.domain import Role  # noqa: PLC0415

        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            admin = await signed_in_staff(api, client, "root", Role.ADMIN)
            listed = await admin.get("/api/v1/admin/apikeys")
            assert listed.status_code == 200, listed.text
            assert [k["id"] for k in listed.json()] == [key["key"]["id"]]
            gone = await admin.delete(f"/api/v1/admin/apikeys/{key['key']['id']}")
            assert gone.status_code == 200, gone.text
            assert refused(await signed(api, bot, key, "GET", "/api/v1/accounts"), "revoked_key")
            # A customer cannot use the staff route.
            assert (await alice.trader.get("/api/v1/admin/apikeys")).status_code == 403


@pytest.mark.spec("API-1")
class TestSecrecy:
    async def test_the_secret_appears_once_and_never_in_logs_or_the_ledger(
        self, api: Api, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            secret = key["secret"]
            assert (await signed(api, bot, key, "GET", "/api/v1/accounts")).is_success
            await signed(api, bot, key, "GET", "/api/v1/accounts", secret=secret[:-1] + "x")
            listed = await alice.trader.get("/api/v1/apikeys")
            changed = await alice.trader.patch(
                f"/api/v1/apikeys/{key['key']['id']}", {"scope": "read"}
            )
            revoked = await alice.trader.delete(f"/api/v1/apikeys/{key['key']['id']}")
            for response in (listed, changed, revoked):
                assert secret not in response.text
                assert "tgk_live_" not in response.text
        assert secret not in caplog.text
        async with api.services.unit_of_work() as session:
            bodies = (await session.execute(select(AuditEventRow.body))).scalars().all()
            row = await session.get(ApiKey, key["key"]["id"])
        assert all(secret not in str(body) for body in bodies)
        # Stored encrypted (class api_key_secret): the ciphertext holds no part of it.
        assert row is not None
        assert isinstance(row.secret_enc, SealedField)
        assert secret.encode() not in row.secret_enc.blob
        assert secret.split("_")[-1][:20].encode() not in row.secret_enc.blob


def sign_report(private: ec.EllipticCurvePrivateKey, body: bytes) -> dict[str, str]:
    der = private.sign(body, ec.ECDSA(hashes.SHA256()))
    return {
        "Github-Public-Key-Identifier": "test-key-1",
        "Github-Public-Key-Signature": base64.b64encode(der).decode(),
        "content-type": "application/json",
    }


@pytest.mark.spec("API-1")
class TestLeakReports:
    async def test_a_signed_report_revokes_the_key_and_emails_its_owner(
        self, api: Api, leak_key: ec.EllipticCurvePrivateKey
    ) -> None:
        async with (
            api.client() as client,
            bot_client(api) as bot,
            api.client("140.82.115.1") as github,
        ):
            alice = await owner(api, client)
            key = await create_key(alice)
            report = [
                {
                    "token": key["secret"],
                    "type": "tradeguard_api_secret",
                    "url": "https://github.com/someone/repo/blob/main/bot.py",
                    "source": "content",
                },
                {
                    "token": "tgk_live_" + "A" * 46,
                    "type": "tradeguard_api_secret",
                    "url": "",
                    "source": "content",
                },
            ]
            body = json.dumps(report).encode()
            response = await github.post(
                "/api/v1/apikeys/leaked", content=body, headers=sign_report(leak_key, body)
            )
            assert response.status_code == 200, response.text
            assert [a["label"] for a in response.json()] == ["true_positive", "false_positive"]
            assert key["secret"] not in response.text
            assert refused(await signed(api, bot, key, "GET", "/api/v1/accounts"), "revoked_key")
        [mail] = [
            m for m in await api.outbox(to="alice@example.com") if m["template"] == "apikey_leaked"
        ]
        assert key["key"]["id"] in mail["body"]
        assert "someone/repo" in mail["body"]

    async def test_a_badly_signed_report_is_refused_and_changes_nothing(
        self, api: Api, leak_key: ec.EllipticCurvePrivateKey
    ) -> None:
        async with api.client() as client, bot_client(api) as bot:
            alice = await owner(api, client)
            key = await create_key(alice)
            body = json.dumps(
                [{"token": key["secret"], "type": "t", "url": "", "source": "x"}]
            ).encode()
            forged = sign_report(ec.generate_private_key(ec.SECP256R1()), body)
            response = await client.post("/api/v1/apikeys/leaked", content=body, headers=forged)
            assert response.status_code == 401, response.text
            unsigned = await client.post(
                "/api/v1/apikeys/leaked", content=body, headers={"content-type": "application/json"}
            )
            assert unsigned.status_code == 401
            tampered = sign_report(leak_key, body)
            response = await client.post(
                "/api/v1/apikeys/leaked", content=body + b" ", headers=tampered
            )
            assert response.status_code == 401
            assert (await signed(api, bot, key, "GET", "/api/v1/accounts")).is_success

    async def test_unknown_tokens_are_false_positives(
        self, api: Api, leak_key: ec.EllipticCurvePrivateKey
    ) -> None:
        async with api.client() as client:
            body = json.dumps(
                [{"token": "not-ours", "type": "x", "url": "u", "source": "s"}]
            ).encode()
            response = await client.post(
                "/api/v1/apikeys/leaked", content=body, headers=sign_report(leak_key, body)
            )
            assert response.status_code == 200, response.text
            [answer] = response.json()
            assert answer["label"] == "false_positive"
            assert answer["token_type"] == "x"


class TestReminders:
    async def test_owners_are_reminded_7_days_and_1_day_before_expiry_once_each(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            alice = await owner(api, client)
            await create_key(alice)
        services = api.app.state.apikeys
        from tradeguard.apikeys.tasks import run_reminders_once  # noqa: PLC0415

        assert await run_reminders_once(services) == 0
        api.clock.advance(seconds=83 * 86_400 + 60)
        assert await run_reminders_once(services) == 1
        assert await run_reminders_once(services) == 0
        api.clock.advance(seconds=6 * 86_400)
        assert await run_reminders_once(services) == 1
        assert await run_reminders_once(services) == 0
        mails = [
            m
            for m in await api.outbox(to="alice@example.com")
            if m["template"] == "apikey_expiring"
        ]
        assert len(mails) == 2
        assert "7 days" in mails[0]["body"]
        assert "1 day" in mails[1]["body"]
