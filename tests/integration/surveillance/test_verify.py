"""Finding 6: the surveillance tables checked against the ledger (SQLite and PostgreSQL).
Rows edited, deleted or inserted with direct SQL (a case closed, evidence deleted, an alert
dismissed, an action reversed, a case's alert or timeline entry removed, a row with no
event) are each reported by `verify`; the untouched tables verify clean; the periodic check
records a `surveillance:verify:mismatch` event and mails compliance."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import MONDAY_OPEN, chain, surveillance_of
from tests.integration.surveillance.test_actions import set_policy
from tests.integration.surveillance.test_api import surveil
from tests.support.access import staff
from tests.support.api import Api, audit_events, running_api
from tradeguard.access.domain import Role
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.surveillance.models import SurveillanceAction, SurveillanceAlert
from tradeguard.surveillance.tasks import verify_once
from tradeguard.surveillance.verify import VerifyResult

CASES = "/api/v1/surveillance/cases"
_COLUMNS = (
    "alert_type, detector, symbol, owner, accounts, score, status, summary, first_trigger_ns, "
    "latest_trigger_seq, latest_trigger_ns, window_start_ns, window_end_ns, occurrences, "
    "order_ids, execution_ids, evidence, latency_ns, created_ns, updated_ns"
)
# A copy of an alert's row under a new id and trigger, as someone with database access
# would forge one.
FORGE_ALERT = (
    "INSERT INTO surveillance_alerts (id, first_trigger_seq, " + _COLUMNS + ") "
    "SELECT :forged, first_trigger_seq + 1000000, " + _COLUMNS + " "
    "FROM surveillance_alerts WHERE id = :id"
)
ALERTS = "/api/v1/surveillance/alerts"


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with running_api(settings, engine, FrozenClock(MONDAY_OPEN)) as running:
        yield running


async def verify(api: Api) -> VerifyResult:
    await chain(api)
    services = surveillance_of(api)
    assert services.verifier is not None
    async with services.unit_of_work() as session:
        return await services.verifier.verify(session)


async def worked_market(api: Api) -> dict[str, str]:
    """The morning market with a closing-only policy for spoofing, a case on the wash
    alert (assigned, annotated), and the spoofing alert dismissed."""
    async with api.client() as client:
        carol = await staff(api, client, "carol", Role.COMPLIANCE)
        await set_policy(carol, ("SPOOFING", 0, "closing_only"))
        await surveil(api)
        alerts = {a["alert_type"]: a["id"] for a in (await carol.get(ALERTS)).json()}
        case = await carol.post(CASES, {"alert_ids": [alerts["WASH_TRADE"]], "title": "wash"})
        assert case.status_code == 201, case.text
        case_id = case.json()["id"]
        await carol.post(f"{CASES}/{case_id}/assign", {"assignee": carol.user_id})
        await carol.post(f"{CASES}/{case_id}/notes", {"text": "crosses at 50.00"})
        dismissed = await carol.post(
            f"{ALERTS}/{alerts['SPOOFING']}/dismiss", {"reason": "reviewed: re-quoting"}
        )
        assert dismissed.status_code == 200, dismissed.text
    return {"case": case_id, "wash": alerts["WASH_TRADE"], "spoof": alerts["SPOOFING"]}


@pytest.mark.spec("MAN-5")
class TestVerify:
    async def test_untouched_tables_agree_with_the_ledger(self, api: Api) -> None:
        await worked_market(api)
        result = await verify(api)
        assert result.ok, [m.line() for m in result.mismatches]
        assert (result.alerts, result.cases) == (2, 1)
        assert result.actions >= 1
        assert result.events > 5

    async def test_every_row_edited_with_sql_is_reported(self, api: Api) -> None:
        ids = await worked_market(api)
        async with api.engine.begin() as conn:
            # Close the case as a false positive, take its alert out and a timeline line.
            await conn.execute(
                text(
                    "UPDATE surveillance_cases SET status = 'closed', "
                    "disposition = 'false_positive' WHERE id = :id"
                ),
                {"id": ids["case"]},
            )
            await conn.execute(
                text("DELETE FROM surveillance_case_alerts WHERE case_id = :id"),
                {"id": ids["case"]},
            )
            await conn.execute(
                text(
                    "DELETE FROM surveillance_case_entries WHERE id IN (SELECT id FROM "
                    "surveillance_case_entries WHERE case_id = :id AND kind = 'note_added')"
                ),
                {"id": ids["case"]},
            )
            # Delete the wash alert's evidence and an order id; reopen the dismissed spoof.
            await conn.execute(
                text(
                    "UPDATE surveillance_alerts SET evidence = '{}', order_ids = '[]' "
                    "WHERE id = :id"
                ),
                {"id": ids["wash"]},
            )
            await conn.execute(
                text("UPDATE surveillance_alerts SET status = 'new' WHERE id = :id"),
                {"id": ids["spoof"]},
            )
            # Mark the automatic action reversed without a reversal.
            await conn.execute(text("UPDATE surveillance_actions SET status = 'reversed'"))
        result = await verify(api)
        found = {(m.table, m.row_id, m.field) for m in result.mismatches}
        assert ("surveillance_cases", ids["case"], "status") in found
        assert ("surveillance_cases", ids["case"], "disposition") in found
        assert ("surveillance_cases", ids["case"], "alerts") in found
        assert ("surveillance_cases", ids["case"], "timeline") in found
        assert ("surveillance_alerts", ids["wash"], "evidence") in found
        assert ("surveillance_alerts", ids["wash"], "order_ids") in found
        assert ("surveillance_alerts", ids["spoof"], "status") in found
        assert any(t == "surveillance_actions" and f == "status" for t, _, f in found)
        spoof = next(m for m in result.mismatches if m.row_id == ids["spoof"])
        assert (spoof.stored, spoof.derived) == ("new", "dismissed")

    async def test_edits_of_an_alerts_other_fields_are_reported(self, api: Api) -> None:
        """The second outside review: score, summary, accounts, window start, latency and
        creation time edited with SQL went unseen; each now changes the row digest its
        events record."""
        ids = await worked_market(api)
        clean = await verify(api)
        assert clean.ok, [m.line() for m in clean.mismatches]
        assert clean.unverifiable == []
        services = surveillance_of(api)
        edits: list[tuple[str, Callable[[Any], Any]]] = [
            ("score", lambda v: v + 1),
            ("summary", lambda _: "nothing to see"),
            ("accounts", lambda _: []),
            ("window_start_ns", lambda v: v - 1),
            ("latency_ns", lambda v: v + 1),
            ("created_ns", lambda v: v - 1),
        ]
        for name, change in edits:
            async with services.unit_of_work() as session:
                row = await session.get(SurveillanceAlert, ids["wash"])
                assert row is not None
                before = getattr(row, name)
                setattr(row, name, change(before))
            result = await verify(api)
            assert [(m.row_id, m.field.split(" ")[0]) for m in result.mismatches] == [
                (ids["wash"], "row_digest")
            ], name
            async with services.unit_of_work() as session:
                row = await session.get(SurveillanceAlert, ids["wash"])
                assert row is not None
                setattr(row, name, before)
            assert (await verify(api)).ok, name

    async def test_a_cases_title_and_creator_edited_with_sql_are_reported(self, api: Api) -> None:
        ids = await worked_market(api)
        async with api.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE surveillance_cases SET title = 'routine', created_by = 'staff:x', "
                    "closed_ns = 1 WHERE id = :id"
                ),
                {"id": ids["case"]},
            )
        result = await verify(api)
        found = {(m.table, m.row_id, m.field) for m in result.mismatches}
        assert found == {
            ("surveillance_cases", ids["case"], "title"),
            ("surveillance_cases", ids["case"], "created_by"),
            ("surveillance_cases", ids["case"], "closed"),
        }

    async def test_an_actions_detail_edited_is_reported(self, api: Api) -> None:
        await worked_market(api)
        services = surveillance_of(api)
        async with services.unit_of_work() as session:
            row = (await session.execute(select(SurveillanceAction))).scalars().first()
            assert row is not None
            row.detail = {**row.detail, "from": "closed"}
            action_id = row.id
        result = await verify(api)
        found = {(m.table, m.row_id, m.field) for m in result.mismatches}
        assert found == {("surveillance_actions", action_id, "detail")}

    async def test_rows_without_events_and_events_without_rows_are_reported(self, api: Api) -> None:
        ids = await worked_market(api)
        forged = "0190c5a0-0000-7000-8000-00000000f00d"
        async with api.engine.begin() as conn:
            # A forged alert: a copy of the wash alert's row under a new id and trigger.
            await conn.execute(
                text(FORGE_ALERT),
                {"forged": forged, "id": ids["wash"]},
            )
            await conn.execute(
                text("DELETE FROM surveillance_alerts WHERE id = :id"), {"id": ids["spoof"]}
            )
        result = await verify(api)
        rows = {(m.row_id, m.field, m.stored) for m in result.mismatches}
        assert (forged, "row", "present") in rows
        assert (ids["spoof"], "row", "missing") in rows

    async def test_the_periodic_check_records_the_mismatch_and_mails_compliance(
        self, api: Api
    ) -> None:
        ids = await worked_market(api)
        services = surveillance_of(api)
        await chain(api)
        assert await verify_once(services, settle_ns=0) == 0
        assert await audit_events(api, "surveillance:verify:mismatch") == []
        async with api.engine.begin() as conn:
            await conn.execute(
                text("UPDATE surveillance_cases SET status = 'closed' WHERE id = :id"),
                {"id": ids["case"]},
            )
        await chain(api)
        # Changed within the settle time: not judged yet.
        assert await verify_once(services) == 0
        api.clock.advance(seconds=600)
        assert await verify_once(services) == 1
        [event] = await audit_events(api, "surveillance:verify:mismatch")
        assert event["data"]["mismatches"] == 1
        assert event["data"]["rows"] == [
            {
                "table": "surveillance_cases",
                "row_id": ids["case"],
                "field": "status",
                "stored": "closed",
                "derived": "assigned",
            }
        ]
        # Compliance is mailed (carol, the officer of the worked market).
        mails = [m for m in await api.outbox() if "disagree with the ledger" in m["subject"]]
        assert [m["to"] for m in mails] == ["carol@example.com"]
        assert ids["case"] in mails[0]["body"]
