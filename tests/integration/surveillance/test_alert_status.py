"""An alert's own status (MAN-5): new when raised, in_case while a case holds it, dismissed
(with a reason) or escalated by compliance outside a case, reopened from a dismissal; each
change a ledger event; lists filter by status; refusals are problems that change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import MONDAY_OPEN
from tests.integration.surveillance.test_api import surveil
from tests.support.access import staff
from tests.support.api import Api, audit_events, is_problem, running_api
from tradeguard.access.domain import AccessLevel, Role
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock

ALERTS = "/api/v1/surveillance/alerts"
CASES = "/api/v1/surveillance/cases"


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


@pytest.mark.spec("MAN-5")
class TestAlertStatus:
    async def test_compliance_dismisses_escalates_and_reopens_alerts_with_reasons_audited(
        self, api: Api
    ) -> None:
        await surveil(api)
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            listed = (await carol.get(ALERTS)).json()
            by_type = {a["alert_type"]: a["id"] for a in listed}
            spoof, wash = by_type["SPOOFING"], by_type["WASH_TRADE"]
            assert {a["status"] for a in listed} == {"new"}
            no_reason = await carol.post(f"{ALERTS}/{spoof}/dismiss", {"reason": ""})
            extra = await carol.post(f"{ALERTS}/{spoof}/dismiss", {"reason": "x" * 5, "a": 1})
            dismissed = await carol.post(
                f"{ALERTS}/{spoof}/dismiss", {"reason": "market maker re-quoting"}
            )
            twice = await carol.post(f"{ALERTS}/{spoof}/dismiss", {"reason": "again, again"})
            escalate_dismissed = await carol.post(
                f"{ALERTS}/{spoof}/escalate", {"reason": "second look"}
            )
            into_case = await carol.post(CASES, {"alert_ids": [spoof], "title": "spoof"})
            only_dismissed = (await carol.get(ALERTS, params={"status": "dismissed"})).json()
            reopened = await carol.post(f"{ALERTS}/{spoof}/reopen", {"reason": "new facts came in"})
            escalated = await carol.post(f"{ALERTS}/{wash}/escalate", {"reason": "big volume"})
            case = await carol.post(CASES, {"alert_ids": [wash], "title": "wash review"})
            in_case = (await carol.get(f"{ALERTS}/{wash}")).json()
            dismiss_in_case = await carol.post(f"{ALERTS}/{wash}/dismiss", {"reason": "no no no"})
            filtered = (await carol.get(ALERTS, params={"status": "in_case"})).json()
            bad_filter = await carol.get(ALERTS, params={"status": "closed"})
        assert is_problem(no_reason, 422, "invalid-input"), no_reason.text
        assert is_problem(extra, 422, "invalid-input"), extra.text
        assert dismissed.status_code == 200, dismissed.text
        assert dismissed.json()["status"] == "dismissed"
        assert is_problem(twice, 409, "alert-status-refused"), twice.text
        assert is_problem(escalate_dismissed, 409, "alert-status-refused")
        assert is_problem(into_case, 409, "alert-status-refused"), into_case.text
        assert [a["id"] for a in only_dismissed] == [spoof]
        assert reopened.json()["status"] == "new"
        assert escalated.json()["status"] == "escalated"
        assert case.status_code == 201, case.text
        assert in_case["status"] == "in_case"
        assert is_problem(dismiss_in_case, 409, "alert-status-refused")
        assert "its case decides it" in dismiss_in_case.json()["detail"]
        assert [a["id"] for a in filtered] == [wash]
        assert is_problem(bad_filter, 422, "invalid-input")
        # Each change is a ledger event with the staff member, the reason and both states.
        dismissals = await audit_events(api, "surveillance:alert:dismissed")
        assert [(e["data"]["alert_id"], e["data"]["reason"]) for e in dismissals] == [
            (spoof, "market maker re-quoting")
        ]
        assert dismissals[0]["actor"] == {"kind": "staff", "id": carol.user_id}
        assert dismissals[0]["data"]["from"] == "new"
        reopens = await audit_events(api, "surveillance:alert:reopened")
        assert [e["data"]["status"] for e in reopens] == ["new"]
        escalations = await audit_events(api, "surveillance:alert:escalated")
        assert [e["data"]["alert_id"] for e in escalations] == [wash]

    async def test_unknown_alerts_and_read_only_staff_are_refused(self, api: Api) -> None:
        await surveil(api)
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            viewer = await staff(api, client, "vera", Role.COMPLIANCE, AccessLevel.READ_ONLY)
            alert_id = (await carol.get(ALERTS)).json()[0]["id"]
            unknown = await carol.post(
                f"{ALERTS}/0190c5a0-0000-7000-8000-000000000000/dismiss", {"reason": "why not"}
            )
            malformed = await carol.post(f"{ALERTS}/not-an-id/dismiss", {"reason": "why not"})
            refused = await viewer.post(f"{ALERTS}/{alert_id}/dismiss", {"reason": "why not"})
            after = (await carol.get(f"{ALERTS}/{alert_id}")).json()
        assert is_problem(unknown, 404, "alert-not-found"), unknown.text
        assert is_problem(malformed, 422, "invalid-input")
        assert refused.status_code == 403
        assert after["status"] == "new"
        assert await audit_events(api, "surveillance:alert:dismissed") == []
