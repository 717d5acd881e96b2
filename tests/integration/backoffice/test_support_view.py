"""The support view over HTTP: masked by default, one field revealed per stated reason, every
access in the ledger and in the customer's own access log; support assists, never acts."""

from __future__ import annotations

import json

import pytest

from tests.support.api import Api, bearer, is_problem
from tests.support.backoffice import (
    BACKOFFICE,
    PHONE,
    REASON,
    UNKNOWN_ID,
    access_log,
    customer,
    events_of,
    staff,
    token_works,
)
from tests.support.cases import Cases
from tradeguard.access.domain import Role
from tradeguard.identity.guard import PERMISSION_CHECKED
from tradeguard.web.route_policy import route_permissions

CUSTOMERS = f"{BACKOFFICE}/customers"


class TestMaskedProfile:
    @pytest.mark.spec("RBAC-1", "IAC-1")
    async def test_support_sees_a_customers_profile_with_personal_data_masked(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client)
            sam = await staff(api, desk, "sam")
            response = await sam.get(f"{CUSTOMERS}/{alice.user_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["username"] == "alice"
        assert body["email"] == {"field": "email", "masked": "a***@e***.com"}
        assert body["phones"] == [
            {
                "factor_id": alice.phone_factor_id,
                "label": "SMS to …23",
                "number": {"field": f"phone:{alice.phone_factor_id}", "masked": "+1******0123"},
            }
        ]
        assert {f["kind"] for f in body["factors"]} == {"totp", "sms"}
        [account] = body["accounts"]
        assert account["id"] == alice.account_id
        assert account["status"] == "active"
        assert account["number"]["masked"].startswith("TG****")
        assert account["number"]["field"] == f"account_number:{alice.account_id}"
        assert body["devices"]
        assert body["devices"][0]["last_ip"]["masked"] == "203.0.*.*"
        assert body["recent_sign_ins"][0]["ip"]["masked"] == "203.0.*.*"
        assert body["recent_sign_ins"][0]["active"] is True
        # Nothing personal in the clear anywhere in the document.
        text = response.text
        for secret in ("alice@example.com", PHONE, "203.0.113.7", PHONE[-7:]):
            assert secret not in text

    @pytest.mark.spec("IAC-4", "IAC-1")
    async def test_a_masked_view_is_audited_and_shown_to_the_customer(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            sam = await staff(api, desk, "sam")
            assert (await sam.get(f"{CUSTOMERS}/{alice.user_id}")).status_code == 200
            log = await access_log(alice.trader)
        [event] = await events_of(api, "backoffice:customer:viewed")
        assert event["actor"] == {"kind": "staff", "id": sam.user_id}
        assert event["subject"] == {"kind": "user", "id": alice.user_id}
        [entry] = log["items"]
        assert entry["action"] == "profile_viewed"
        assert entry["staff_role"] == "SUPPORT"
        assert len(entry["staff_pseudonym"]) == 8
        assert entry["field"] is None
        assert entry["reason"] is None
        assert sam.user_id not in json.dumps(log)
        assert log["next_cursor"] is None


BAD_UNMASKS: dict[str, dict[str, str]] = {
    "unknown-field": {"field": "password", "reason": REASON},
    "another-customers-factor": {"field": f"phone:{UNKNOWN_ID}", "reason": REASON},
    "malformed-field": {"field": "email:extra", "reason": REASON},
    "empty-reason": {"field": "email", "reason": ""},
    "blank-reason": {"field": "email", "reason": "   \t  "},
    "short-reason": {"field": "email", "reason": "because"},
    "markup-only-reason": {"field": "email", "reason": "<b></b><i></i><u></u>"},
    "oversized-reason": {"field": "email", "reason": "x" * 501},
    "extra-member": {"field": "email", "reason": REASON, "value": "x"},
    "no-field": {"reason": REASON},
}


class TestUnmask:
    @pytest.mark.spec("IAC-1", "IAC-4", "RBAC-1")
    async def test_unmasking_needs_a_reason_is_audited_and_shows_in_the_customers_log(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client)
            sam = await staff(api, desk, "sam")
            no_reason = await sam.post(f"{CUSTOMERS}/{alice.user_id}/unmask", {"field": "email"})
            email = await sam.post(
                f"{CUSTOMERS}/{alice.user_id}/unmask", {"field": "email", "reason": REASON}
            )
            phone_field = f"phone:{alice.phone_factor_id}"
            phone = await sam.post(
                f"{CUSTOMERS}/{alice.user_id}/unmask", {"field": phone_field, "reason": REASON}
            )
            log = await access_log(alice.trader)
        assert is_problem(no_reason, 422, "invalid-input")
        assert email.status_code == 200, email.text
        assert email.json() == {"field": "email", "value": "alice@example.com"}
        assert phone.json() == {"field": phone_field, "value": PHONE}
        events = await events_of(api, "backoffice:customer:unmasked")
        assert [e["data"]["field"] for e in events] == ["email", phone_field]
        assert {e["data"]["reason"] for e in events} == {REASON}
        # The ledger names the field and the reason, never the value revealed.
        assert "alice@example.com" not in json.dumps(events)
        assert PHONE not in json.dumps(events)
        unmasked = [i for i in log["items"] if i["action"] == "field_unmasked"]
        assert [i["field"] for i in unmasked] == [phone_field, "email"]  # newest first
        assert unmasked[1]["field_description"] == "your email address"
        assert {i["reason"] for i in unmasked} == {REASON}
        assert {i["staff_role"] for i in unmasked} == {"SUPPORT"}
        assert len({i["staff_pseudonym"] for i in unmasked}) == 1

    async def test_the_reason_is_stored_as_plain_text(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            sam = await staff(api, desk, "sam")
            response = await sam.post(
                f"{CUSTOMERS}/{alice.user_id}/unmask",
                {
                    "field": "email",
                    "reason": "<script>alert(1)</script>Ticket\u202e 4711:\n confirm address",
                },
            )
            log = await access_log(alice.trader)
        assert response.status_code == 200, response.text
        # Tags, bidirectional overrides and line breaks are gone; the words stay.
        assert log["items"][0]["reason"] == "alert(1) Ticket 4711: confirm address"

    async def test_bad_input_is_a_problem_and_reveals_and_records_nothing(self, api: Api) -> None:
        cases = Cases()
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            sam = await staff(api, desk, "sam")
            for case_id, body in BAD_UNMASKS.items():
                response = await sam.post(f"{CUSTOMERS}/{alice.user_id}/unmask", body)
                log = await access_log(alice.trader)
                unmasked = await events_of(api, "backoffice:customer:unmasked")
                with cases.case(case_id):
                    assert is_problem(response, 422, "invalid-input"), response.text
                    assert "alice@example.com" not in response.text
                    assert unmasked == []
                    assert log["items"] == []
        cases.check()

    async def test_an_admin_reads_masked_but_cannot_unmask(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            ada = await staff(api, desk, "ada", Role.ADMIN)
            viewed = await ada.get(f"{CUSTOMERS}/{alice.user_id}")
            unmask = await ada.post(
                f"{CUSTOMERS}/{alice.user_id}/unmask", {"field": "email", "reason": REASON}
            )
        assert viewed.status_code == 200
        assert is_problem(unmask, 403, "forbidden")


class TestWhoMayLook:
    @pytest.mark.spec("RBAC-1", "RBAC-6")
    async def test_traders_cannot_use_backoffice_routes_and_each_refusal_is_audited(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.9") as other:
            alice = await customer(api, client, phone=False)
            bob = (await customer(api, other, "bob", phone=False)).trader
            attempts = [
                await bob.get(f"{CUSTOMERS}/{alice.user_id}"),
                await bob.get(CUSTOMERS, params={"q": "alice"}),
                await bob.post(
                    f"{CUSTOMERS}/{alice.user_id}/unmask", {"field": "email", "reason": REASON}
                ),
                await bob.get(f"{BACKOFFICE}/users"),
                await bob.post(f"{BACKOFFICE}/users/{alice.user_id}/lock", {"reason": REASON}),
                await bob.get(f"{BACKOFFICE}/factor-resets"),
            ]
            alice_log = await access_log(alice.trader)
        assert [r.status_code for r in attempts] == [403] * len(attempts)
        assert "alice@example.com" not in "".join(r.text for r in attempts)
        denied = [
            e
            for e in await events_of(api, PERMISSION_CHECKED)
            if e["actor"]["id"] == bob.user_id and not e["data"]["allowed"]
        ]
        assert {e["data"]["permission"] for e in denied} == {
            "customer:read",
            "customer:unmask",
            "admin:users",
        }
        assert len(denied) == len(attempts)
        assert alice_log["items"] == []

    async def test_unknown_ids_and_staff_ids_answer_the_same_404(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            await customer(api, client, phone=False)
            sam = await staff(api, desk, "sam")
            ada = await staff(api, desk, "ada", Role.ADMIN)
            unknown = await sam.get(f"{CUSTOMERS}/{UNKNOWN_ID}")
            staff_member = await sam.get(f"{CUSTOMERS}/{ada.user_id}")
            unmask_unknown = await sam.post(
                f"{CUSTOMERS}/{UNKNOWN_ID}/unmask", {"field": "email", "reason": REASON}
            )
            malformed = await sam.get(f"{CUSTOMERS}/not-an-id")
        for response in (unknown, staff_member, unmask_unknown):
            assert is_problem(response, 404, "not-found")
        assert unknown.json()["detail"] == staff_member.json()["detail"]
        # Nothing about the staff member (name, email) comes back; the request path echoed
        # in `instance` holds her random id, which may contain the letters "ada" by chance.
        shown = {k: v for k, v in staff_member.json().items() if k != "instance"}
        assert "ada" not in json.dumps(shown)
        assert is_problem(malformed, 422, "invalid-input")
        assert await events_of(api, "backoffice:customer:viewed") == []

    async def test_staff_cannot_open_their_own_account_as_a_customer(self, api: Api) -> None:
        async with api.client("198.51.100.20") as desk:
            sam = await staff(api, desk, "sam")
            response = await sam.get(f"{CUSTOMERS}/{sam.user_id}")
        assert is_problem(response, 403, "self-action-refused")

    @pytest.mark.spec("IAC-1", "RBAC-1")
    async def test_support_cannot_change_security_settings_trade_move_money_or_administer(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client)
            sam = await staff(api, desk, "sam")
            factors_before = (await alice.trader.get("/api/v1/auth/mfa")).json()
            devices = (await alice.trader.get("/api/v1/auth/devices")).json()
            sessions = (await alice.trader.get("/api/v1/auth/sessions")).json()
            account = f"/api/v1/accounts/{alice.account_id}"
            order = {
                "client_order_id": "s1",
                "symbol": "AAPL",
                "side": "buy",
                "type": "limit",
                "quantity": 1,
                "limit_price": "1.00",
            }
            refused = {
                "place an order": await sam.post(f"{account}/orders", order),
                "move money": await sam.post(
                    f"/api/v1/admin/accounts/{alice.account_id}/adjustments",
                    {"amount": "-1000.00", "reason": REASON},
                ),
                "read the account": await sam.get(account),
                "lock": await sam.post(
                    f"{BACKOFFICE}/users/{alice.user_id}/lock", {"reason": REASON}
                ),
                "change role": await sam.put(
                    f"{BACKOFFICE}/users/{alice.user_id}/role",
                    {"role": "SUPPORT", "reason": REASON},
                ),
                "sign out": await sam.post(
                    f"{BACKOFFICE}/users/{alice.user_id}/sign-out", {"reason": REASON}
                ),
                "reset factors": await sam.post(
                    f"{BACKOFFICE}/users/{alice.user_id}/factor-resets", {"reason": REASON}
                ),
                # The security routes act on the caller's own account only: a customer's
                # factor, device or session id is not theirs.
                "remove a factor": await sam.delete(f"/api/v1/auth/mfa/{alice.phone_factor_id}"),
                "revoke a device": await sam.delete(f"/api/v1/auth/devices/{devices[0]['id']}"),
                "end a session": await sam.delete(f"/api/v1/auth/sessions/{sessions[0]['id']}"),
            }
            factors_after = (await alice.trader.get("/api/v1/auth/mfa")).json()
            still_signed_in = await token_works(client, alice.trader.access)
            balance = (await alice.trader.get(account)).json()["balances"]["cash_settled"]
        statuses = {what: r.status_code for what, r in refused.items()}
        assert statuses == {
            "place an order": 403,
            "move money": 403,
            "read the account": 404,
            "lock": 403,
            "change role": 403,
            "sign out": 403,
            "reset factors": 403,
            "remove a factor": 404,
            "revoke a device": 404,
            "end a session": 404,
        }
        assert factors_after == factors_before
        assert still_signed_in
        assert balance == "1000.00"

    @pytest.mark.spec("IAC-1")
    async def test_the_customer_permissions_open_no_route_that_changes_anything(
        self, api: Api
    ) -> None:
        # What support may do beyond reading is exactly one thing: reveal a field, which
        # itself only reads. A new route under these permissions must be reviewed here.
        routes = {
            (method, route.path)
            for route in route_permissions(api.app)
            if route.permission in {"customer:read", "customer:unmask"}
            for method in route.methods - {"HEAD", "OPTIONS"}
        }
        assert routes == {
            ("GET", "/api/v1/backoffice/customers"),
            ("GET", "/api/v1/backoffice/customers/{user_id}"),
            ("POST", "/api/v1/backoffice/customers/{user_id}/unmask"),
        }


class TestSearch:
    async def test_support_finds_customers_by_exact_email_or_username_prefix_only(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            sam = await staff(api, desk, "sam")

            async def search(q: str) -> list[str]:
                response = await sam.get(CUSTOMERS, params={"q": q})
                assert response.status_code == 200, response.text
                return [hit["username"] for hit in response.json()]

            by_email = await sam.get(CUSTOMERS, params={"q": " Alice@Example.com "})
            prefix = await search("ali")
            email_prefix = await search("alice@example.co")
            staff_by_prefix = await search("sam")
            partial_domain = await sam.get(CUSTOMERS, params={"q": "alice@exa"})
            wildcard = await sam.get(CUSTOMERS, params={"q": "a%_"})
            too_short = await sam.get(CUSTOMERS, params={"q": "al"})
        assert by_email.status_code == 200
        assert by_email.json() == [
            {
                "id": alice.user_id,
                "username": "alice",
                "email": {"field": "email", "masked": "a***@e***.com"},
                "status": "active",
                "created_at": by_email.json()[0]["created_at"],
            }
        ]
        assert prefix == ["alice"]
        assert email_prefix == []  # a prefix of an address matches nothing
        assert staff_by_prefix == []  # staff accounts are not customers
        assert is_problem(partial_domain, 422, "invalid-input")
        assert is_problem(wildcard, 422, "invalid-input")
        assert is_problem(too_short, 422, "invalid-input")
        events = await events_of(api, "backoffice:customer:searched")
        assert [e["data"]["kind"] for e in events] == [
            "email",
            "username_prefix",
            "email",
            "username_prefix",
        ]
        # The ledger keeps a keyed digest of what was searched, not the address.
        assert "alice@example.com" not in json.dumps(events)

    async def test_searches_are_limited_per_staff_member_and_refusals_count(self, api: Api) -> None:
        async with api.client("198.51.100.20") as desk:
            sam = await staff(api, desk, "sam")
            statuses = [
                (await sam.get(CUSTOMERS, params={"q": f"user{i:02d}"})).status_code
                for i in range(60)
            ]
            refused = await sam.get(CUSTOMERS, params={"q": "alice"})
            again = await sam.get(CUSTOMERS, params={"q": "alice"})
            api.clock.advance(seconds=601)
            later = await sam.get(CUSTOMERS, params={"q": "alice"})
        assert statuses == [200] * 60
        assert is_problem(refused, 429, "too-many-requests")
        assert int(refused.headers["Retry-After"]) > 0
        assert again.status_code == 429
        assert later.status_code == 200
        assert len(await events_of(api, "backoffice:customer:search_throttled")) == 2


class TestAccessLog:
    @pytest.mark.spec("IAC-4")
    async def test_a_customer_sees_only_their_own_log_page_by_page(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.9") as other:
            alice = await customer(api, client, phone=False)
            bob = await customer(api, other, "bob", phone=False)
            async with api.client("198.51.100.20") as desk:
                sam = await staff(api, desk, "sam")
                for _ in range(3):
                    assert (await sam.get(f"{CUSTOMERS}/{alice.user_id}")).status_code == 200
                    api.clock.advance(seconds=1)
                await sam.post(
                    f"{CUSTOMERS}/{bob.user_id}/unmask", {"field": "email", "reason": REASON}
                )
                sam_log = await access_log(sam)
            first = await access_log(alice.trader, limit=2)
            second = await access_log(alice.trader, limit=2, cursor=first["next_cursor"])
            bobs = await access_log(bob.trader)
            bad_cursor = await alice.trader.get(
                "/api/v1/me/access-log", params={"cursor": "not-a-cursor"}
            )
            over_limit = await alice.trader.get("/api/v1/me/access-log", params={"limit": 101})
        assert len(first["items"]) == 2
        assert first["next_cursor"]
        assert len(second["items"]) == 1
        assert second["next_cursor"] is None
        entries = first["items"] + second["items"]
        assert [e["action"] for e in entries] == ["profile_viewed"] * 3
        assert entries == sorted(entries, key=lambda e: e["at"], reverse=True)
        assert [e["action"] for e in bobs["items"]] == ["field_unmasked"]
        assert bobs["items"][0]["reason"] == REASON
        assert sam_log["items"] == []  # what staff did to others is not in their own log
        assert is_problem(bad_cursor, 422, "invalid-input")
        assert is_problem(over_limit, 422, "invalid-input")

    async def test_unknown_query_parameters_are_refused_like_the_other_filtered_lists(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            alice = await customer(api, client, phone=False)
            misspelt = await alice.trader.get("/api/v1/me/access-log", params={"limits": 1})
            extra = await alice.trader.get(
                "/api/v1/me/access-log", params={"limit": 1, "customer_id": alice.user_id}
            )
            fine = await alice.trader.get("/api/v1/me/access-log", params={"limit": 1})

        assert is_problem(misspelt, 422, "invalid-input")
        assert is_problem(extra, 422, "invalid-input")
        assert fine.status_code == 200, fine.text

    async def test_the_log_needs_a_session(self, api: Api) -> None:
        async with api.client() as client:
            response = await client.get("/api/v1/me/access-log", headers=bearer("x.y.z"))
        assert response.status_code == 401
