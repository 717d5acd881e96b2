"""A just-in-time grant asked for named customers (IAC-1, IAC-4): the scope is stored, shown
and carried by each check through the grant; a use for another customer is an access alert
raised by the detector and mailed to compliance. Bad scopes are refused and change nothing.
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.access.support import alert_mail, scan, stored_alerts
from tests.support.access import ACCESS, ask, decide, snapshot, staff
from tests.support.api import PASSWORD, Api, audit_events
from tradeguard.access.anomalies import PERMISSION_CHECKED, AnomalyRule
from tradeguard.access.domain import AccessLevel, Role

UNMASK = "/api/v1/backoffice/customers/{}/unmask"
REASON = "ticket 7: the customer cannot receive mail"


async def customers(api: Api, *names: str) -> list[str]:
    ids = []
    for name in names:
        async with api.services.unit_of_work() as session:
            user = await api.services.accounts.create_user(
                session,
                username=name,
                email=f"{name}@example.com",
                password=PASSWORD,
                role=Role.TRADER,
                email_verified=True,
            )
        ids.append(user.id)
    return ids


def scoped(customer_ids: list[str]) -> dict[str, Any]:
    return {
        "permission": "customer:unmask",
        "reason": REASON,
        "minutes": 30,
        "customers": customer_ids,
    }


class TestScopedGrants:
    @pytest.mark.spec("IAC-1", "IAC-4")
    async def test_a_read_outside_the_grants_customers_raises_an_alert_mailed_to_compliance(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            sam = await staff(api, client, "sam", Role.SUPPORT, AccessLevel.READ_ONLY)
            bob = await staff(api, client, "bob")
            await staff(api, client, "cora", Role.COMPLIANCE)
            alice, carl = await customers(api, "alice", "carl")
            assert (
                await sam.post(UNMASK.format(alice), {"field": "email", "reason": REASON})
            ).status_code == 403

            asked = await sam.post(f"{ACCESS}/requests", scoped([alice]))
            assert asked.status_code == 201, asked.text
            assert asked.json()["customers"] == [alice]
            approved = await decide(bob, asked.json()["id"], "approve")
            assert approved.status_code == 200, approved.text
            assert approved.json()["customers"] == [alice]

            inside = await sam.post(UNMASK.format(alice), {"field": "email", "reason": REASON})
            assert inside.status_code == 200, inside.text
            assert (await scan(api)).alerts == 0
            assert await stored_alerts(api) == []

            # Monitored, not enforced: the read succeeds, and is an alert.
            outside = await sam.post(UNMASK.format(carl), {"field": "email", "reason": REASON})
            assert outside.status_code == 200, outside.text
            assert (await scan(api)).alerts == 1
            # A second use outside the scope folds into the same alert (one per grant).
            await sam.post(UNMASK.format(carl), {"field": "email", "reason": REASON})
            assert (await scan(api)).alerts == 0

            listed = await bob.get(f"{ACCESS}/requests", params={"status": "approved"})
            assert [g["customers"] for g in listed.json()] == [[alice]]
            review = (await bob.get(f"{ACCESS}/review")).json()
            [sams] = [line for line in review["staff"] if line["username"] == "sam"]
            assert [g["customers"] for g in sams["grants"]] == [[alice]]

        checks = [
            e["data"]
            for e in await audit_events(api, PERMISSION_CHECKED)
            if e["data"].get("grant_id") == asked.json()["id"]
        ]
        assert [(c["params"]["user_id"], c["grant_scope"]) for c in checks] == [
            (alice, [alice]),
            (carl, [alice]),
            (carl, [alice]),
        ]
        [alert] = await stored_alerts(api)
        assert alert.rule == AnomalyRule.GRANT_OUT_OF_SCOPE
        assert alert.severity == "high"
        assert alert.staff_user_id == sam.user_id
        assert alert.occurrences == 2
        assert alice not in alert.summary
        assert carl not in alert.summary
        mailed = sorted(entry.to for entry, _ in await alert_mail(api))
        assert "cora@example.com" in mailed
        assert "sam@example.com" not in mailed

    async def test_an_unscoped_grant_names_no_scope_and_raises_no_alert(self, api: Api) -> None:
        async with api.client() as client:
            sam = await staff(api, client, "sam", Role.SUPPORT, AccessLevel.READ_ONLY)
            bob = await staff(api, client, "bob")
            alice, carl = await customers(api, "alice", "carl")
            asked = await ask(sam, "customer:unmask", reason=REASON)
            assert asked["customers"] == []
            assert (await decide(bob, asked["id"], "approve")).status_code == 200
            for customer in (alice, carl):
                read = await sam.post(UNMASK.format(customer), {"field": "email", "reason": REASON})
                assert read.status_code == 200, read.text
            assert (await scan(api)).alerts == 0
        checks = [
            e["data"]
            for e in await audit_events(api, PERMISSION_CHECKED)
            if e["data"].get("grant_id") == asked["id"]
        ]
        assert len(checks) == 2
        assert all("grant_scope" not in c for c in checks)
        assert await stored_alerts(api) == []

    @pytest.mark.spec("IAC-1")
    async def test_bad_scopes_are_problems_that_change_nothing(self, api: Api) -> None:
        async with api.client() as client:
            sam = await staff(api, client, "sam", Role.SUPPORT, AccessLevel.READ_ONLY)
            bob = await staff(api, client, "bob")
            many = await customers(api, *(f"cust{n}" for n in range(21)))
            bad = [
                (many, "at most 20"),  # one too many
                (["0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"], "existing customer"),  # unknown
                ([bob.user_id], "existing customer"),  # staff
                ([sam.user_id], "existing customer"),  # oneself
                ([many[0], ""], "user id"),
                (["x" * 65], ""),  # longer than any id: refused by the body's bounds
            ]
            for customer_ids, message in bad:
                before = await snapshot(api)
                response = await sam.post(f"{ACCESS}/requests", scoped(customer_ids))
                assert response.status_code == 422, (customer_ids, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                assert message in response.json()["detail"]
                assert await snapshot(api) == before
            # Twenty, repeated ids counted once, is the most a scope names.
            fine = await sam.post(f"{ACCESS}/requests", scoped([*many[:20], many[0]]))
            assert fine.status_code == 201, fine.text
            assert fine.json()["customers"] == many[:20]
            # Break-glass takes no scope.
            glass = await bob.post(
                f"{ACCESS}/break-glass",
                {"permission": "admin:users", "reason": "outage", "customers": [many[0]]},
            )
            assert glass.status_code == 422, glass.text
            assert glass.headers["content-type"].startswith("application/problem+json")


class TestIndirectCustomers:
    """Attack (M1): a grant scoped to alice used on a change whose route names its customer
    only in the body (opening an account with `user_id`, a halt with `target`) raised no
    alert: the detector judged only the route's parameters."""

    @pytest.mark.spec("IAC-4")
    async def test_a_scoped_change_naming_no_customer_raises_an_alert_a_scoped_read_none(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", Role.ADMIN, AccessLevel.READ_ONLY)
            bob = await staff(api, client, "bob")
            alice, carl = await customers(api, "alice", "carl")
            asked = await ada.post(
                f"{ACCESS}/requests",
                {
                    "permission": "admin:config",
                    "reason": REASON,
                    "minutes": 30,
                    "customers": [alice],
                },
            )
            assert asked.status_code == 201, asked.text
            assert (await decide(bob, asked.json()["id"], "approve")).status_code == 200
            # Reads: one naming alice, one naming nobody (a list): no alert.
            inside = await ada.get("/api/v1/admin/accounts", params={"user_id": alice})
            assert inside.status_code == 200, inside.text
            halts = await ada.get("/api/v1/admin/halts")
            assert halts.status_code == 200, halts.text
            assert (await scan(api)).alerts == 0
            # A change whose customer (carl) is only in the body.
            opened = await ada.post("/api/v1/admin/accounts", {"user_id": carl})
            assert opened.status_code == 201, opened.text
            assert (await scan(api)).alerts == 1
        checks = [
            e["data"]
            for e in await audit_events(api, PERMISSION_CHECKED)
            if e["data"].get("grant_id") == asked.json()["id"]
        ]
        assert [(c["method"], "params" in c) for c in checks] == [
            ("GET", True),
            ("GET", False),
            ("POST", False),
        ]
        [alert] = await stored_alerts(api)
        assert alert.rule == AnomalyRule.GRANT_OUT_OF_SCOPE
        assert alert.staff_user_id == ada.user_id
        assert carl not in alert.summary
