"""The access review over the API (IAC-4): who holds what, granted by whom, last used, unused
permissions flagged; JSON and CSV. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io

import pytest

from tests.support.access import ACCESS, ask, decide, staff
from tests.support.api import Api, audit_events, is_problem
from tests.support.trading import signed_in_trader
from tradeguard.access.domain import AccessEvent, AccessLevel, Role

RESTRICTED = "/api/v1/admin/restricted-list"
DAY = 86_400


def held(line: dict[str, object]) -> dict[str, dict[str, object]]:
    return {p["permission"]: p for p in line["permissions"]}  # type: ignore[attr-defined,index]


class TestAccessReview:
    @pytest.mark.spec("IAC-4")
    async def test_lists_every_staff_member_their_grants_and_flags_unused_permissions(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.OPERATOR)
            bob = await staff(api, client, "bob")
            await staff(api, client, "cora", role=Role.COMPLIANCE, level=AccessLevel.READ_ONLY)
            await signed_in_trader(api, client, "tina")
            assert (await bob.get(RESTRICTED)).status_code == 200
            api.clock.advance(seconds=2 * DAY)
            await bob.sign_in_again()
            await ada.sign_in_again()
            assert (await bob.get(f"{ACCESS}/requests")).status_code == 200  # access:review
            fresh = await ask(ada, "admin:config", minutes=60)
            await decide(bob, fresh["id"], "approve")
            report = await bob.get(f"{ACCESS}/review", params={"unused_days": 1})
        assert report.status_code == 200, report.text
        document = report.json()
        assert document["unused_days"] == 1
        lines = {line["username"]: line for line in document["staff"]}
        assert set(lines) == {"ada", "bob", "cora"}  # staff only: no trader
        assert lines["ada"]["level"] == "operator"
        [grant] = lines["ada"]["grants"]
        assert grant["grant_id"] == fresh["id"]
        assert grant["granted_by_username"] == "bob"
        ada_held = held(lines["ada"])
        assert ada_held["admin:config"]["source"] == "grant"
        assert ada_held["admin:config"]["flag_for_removal"] is False
        bob_held = held(lines["bob"])
        # bob used admin:config two days ago and access:review today.
        assert bob_held["admin:config"]["last_used_at"] is not None
        assert bob_held["admin:config"]["days_unused"] == 2
        assert bob_held["admin:config"]["flag_for_removal"] is True
        assert bob_held["access:review"]["days_unused"] == 0
        assert bob_held["access:review"]["flag_for_removal"] is False
        assert bob_held["admin:users"]["last_used_at"] is None
        assert bob_held["admin:users"]["flag_for_removal"] is True  # since he was created
        assert bob_held["access:breakglass"]["flag_for_removal"] is False  # elevate: never
        assert "admin:config" not in held(lines["cora"])
        produced = await audit_events(api, AccessEvent.REVIEW_PRODUCED)
        assert produced[-1]["actor"]["id"] == bob.user_id

    @pytest.mark.spec("IAC-4")
    async def test_csv_by_query_or_accept_header_with_formula_cells_neutralized(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.OPERATOR)
            bob = await staff(api, client, "bob")
            asked = await ask(ada, "admin:config", reason="=HYPERLINK(evil)")
            await decide(bob, asked["id"], "approve")
            by_query = await bob.get(f"{ACCESS}/review", params={"format": "csv"})
            by_accept = await bob.client.get(
                f"{ACCESS}/review", headers={**bob.headers, "Accept": "text/csv"}
            )
            bad_days = await bob.get(f"{ACCESS}/review", params={"unused_days": 0})
        for response in (by_query, by_accept):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(by_query.text)))
        granted = [r for r in rows if r["username"] == "ada" and r["source"] == "grant"]
        assert [(r["permission"], r["granted_by"]) for r in granted] == [("admin:config", "bob")]
        assert granted[0]["grant_reason"] == "'=HYPERLINK(evil)"
        assert {r["username"] for r in rows} == {"ada", "bob"}
        assert is_problem(bad_days, 422, "invalid-input")

    @pytest.mark.spec("IAC-4", "RBAC-4")
    async def test_traders_and_support_cannot_read_the_review(self, api: Api) -> None:
        async with api.client() as client:
            tina = await signed_in_trader(api, client, "tina")
            sam = await staff(api, client, "sam", role=Role.SUPPORT)
            for outsider in (tina, sam):
                response = await outsider.get(f"{ACCESS}/review")
                assert is_problem(response, 403, "forbidden")
