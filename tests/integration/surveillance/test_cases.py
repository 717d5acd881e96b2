"""Surveillance cases over the API (MAN-5), SQLite and PostgreSQL: compliance opens a case
from alerts, assigns, annotates, escalates and closes it with a disposition; every step is
a ledger event and a line of the case's timeline naming it; illegal steps are a 409 that
changes nothing; a case closed as "reported" gets a suspicious-activity report draft (JSON
and Markdown) with its filing deadline and an overdue listing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    Market,
    chain,
    fresh_surveillance,
    order,
    surveillance_of,
    trade_a_market,
)
from tests.support.access import staff
from tests.support.api import Api, audit_events, is_problem, running_api
from tests.support.cases import Cases
from tests.support.trading import Trader, signed_in_trader, trading_of
from tradeguard.access.domain import AccessLevel, Role
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock, ns_to_datetime
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import PERMISSION_CHECKED
from tradeguard.surveillance.domain import AlertType, Finding
from tradeguard.surveillance.repository import AlertFilter

CASES = "/api/v1/surveillance/cases"
ALERTS = "/api/v1/surveillance/alerts"
ACTIONS = "/api/v1/surveillance/actions"
POLICY = "/api/v1/surveillance/policy"
REPORTS = "/api/v1/surveillance/reports"
UNKNOWN = "0190c5a0-0000-7000-8000-000000000000"
CASE_EVENTS = "surveillance:case:"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_OPEN)


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        yield running


async def surveil(api: Api) -> tuple[Market, dict[str, str]]:
    """The morning market run through the stream; its alerts by type."""
    market = await trade_a_market(api)
    await chain(api)
    await surveillance_of(api).consumer.run()
    async with surveillance_of(api).unit_of_work() as session:
        alerts = await surveillance_of(api).alerts.search(session, AlertFilter())
    return market, {a.alert_type: a.id for a in alerts}


async def alert_of_unknown_account(api: Api) -> str:
    """An alert (recorded as the stream records one) naming an account nobody owns here."""
    finding = Finding(
        alert_type=AlertType.SPOOFING,
        symbol="ACME",
        owner=UNKNOWN,
        accounts=(UNKNOWN,),
        score=60,
        trigger_seq=10**9,
        trigger_ns=api.clock.now_ns(),
        window_start_ns=api.clock.now_ns(),
        window_end_ns=api.clock.now_ns(),
        summary="a spoof from an account of another firm's feed",
        order_ids=(),
        execution_ids=(),
        evidence={"executed_quantity": 300, "execution_price": "49.98"},
    )
    async with surveillance_of(api).unit_of_work() as session:
        alert = await surveillance_of(api).alerts.record(session, finding)
    assert alert is not None
    return alert.id


async def case_events(api: Api) -> list[dict[str, Any]]:
    return [e for e in await audit_events(api) if e["type"].startswith(CASE_EVENTS)]


async def open_case(carol: Trader, *alert_ids: str, title: str = "ACME review") -> str:
    response = await carol.post(CASES, {"alert_ids": list(alert_ids), "title": title})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def two_officers(api: Api, client: Any) -> tuple[Trader, Trader]:
    """Two compliance officers, carol and dora (four eyes)."""
    return (
        await staff(api, client, "carol", Role.COMPLIANCE),
        await staff(api, client, "dora", Role.COMPLIANCE),
    )


async def cross_again(api: Api, market: Market) -> None:
    """Ursula crosses her two accounts once more, half a minute on, and the ledger is chained."""
    a1, a2 = market.ursula.accounts
    api.clock.advance(seconds=30)
    await order(api, market.ursula, a1, "sell", 500, "50.00")
    api.clock.advance(seconds=1)
    await order(api, market.ursula, a2, "buy", 500, "50.00")
    await chain(api)


async def escalated_case(carol: Trader, dora: Trader, *alert_ids: str) -> str:
    """A case carol opens and reviews, escalated by dora (so carol may close it as reported:
    the escalation and the close are two people's decisions)."""
    case_id = await open_case(carol, *alert_ids)
    assigned = await carol.post(f"{CASES}/{case_id}/assign", {"assignee": carol.user_id})
    assert assigned.status_code == 200, assigned.text
    escalated = await dora.post(f"{CASES}/{case_id}/escalate", {"reason": "looks deliberate"})
    assert escalated.status_code == 200, escalated.text
    return case_id


class TestCaseLifecycle:
    @pytest.mark.spec("MAN-5")
    async def test_a_case_is_opened_assigned_annotated_escalated_and_closed_with_its_timeline_audited(
        self, api: Api
    ) -> None:
        _, alerts = await surveil(api)
        async with api.client() as client:
            carol, dora = await two_officers(api, client)
            case_id = await open_case(carol, alerts["WASH_TRADE"])
            added = await carol.post(
                f"{CASES}/{case_id}/alerts", {"alert_ids": [alerts["SPOOFING"]]}
            )
            assigned = await carol.post(f"{CASES}/{case_id}/assign", {"assignee": dora.user_id})
            noted = await dora.post(
                f"{CASES}/{case_id}/notes", {"text": "orders 1 s apart, same owner"}
            )
            escalated = await dora.post(
                f"{CASES}/{case_id}/escalate", {"reason": "repeated crosses"}
            )
            closed = await carol.post(
                f"{CASES}/{case_id}/close",
                {"disposition": "warning", "reason": "first occurrence: warning letter"},
            )
            shown = await carol.get(f"{CASES}/{case_id}")
            listed = await carol.get(CASES, params={"status": "closed"})
            mine = await carol.get(CASES, params={"assignee": dora.user_id})
        assert added.status_code == 200, added.text
        assert sorted(added.json()["alert_ids"]) == sorted(alerts.values())
        assert assigned.json()["status"] == "assigned"
        assert assigned.json()["assignee"] == dora.user_id
        assert noted.status_code == 201, noted.text
        assert escalated.json()["status"] == "escalated"
        assert closed.json()["status"] == "closed"
        assert closed.json()["disposition"] == "warning"
        assert closed.json()["report_id"] is None
        body = shown.json()
        assert [e["kind"] for e in body["timeline"]] == [
            "opened",
            "alert_added",
            "assigned",
            "note_added",
            "escalated",
            "closed",
        ]
        assert [e["actor"] for e in body["timeline"]] == [
            f"staff:{carol.user_id}",
            f"staff:{carol.user_id}",
            f"staff:{carol.user_id}",
            f"staff:{dora.user_id}",
            f"staff:{dora.user_id}",
            f"staff:{carol.user_id}",
        ]
        assert body["timeline"][3]["detail"]["text"] == "orders 1 s apart, same owner"
        assert [c["id"] for c in listed.json()] == [case_id]
        assert [c["id"] for c in mine.json()] == [case_id]
        # Every timeline line is a ledger event of the same step, by the same actor.
        events = {e["id"]: e for e in await case_events(api)}
        for entry in body["timeline"]:
            event = events[entry["event_id"]]
            assert event["type"] == CASE_EVENTS + entry["kind"]
            assert f"{event['actor']['kind']}:{event['actor']['id']}" == entry["actor"]
            assert event["data"]["case_id"] == case_id
        assert len(events) == len(body["timeline"])

    @pytest.mark.spec("MAN-5")
    async def test_closing_as_reported_drafts_a_report_with_its_deadline_and_overdue_listing(
        self, api: Api
    ) -> None:
        market, alerts = await surveil(api)
        async with api.client() as client:
            carol, dora = await two_officers(api, client)
            case_id = await escalated_case(carol, dora, *alerts.values())
            closed = await carol.post(
                f"{CASES}/{case_id}/close",
                {"disposition": "reported", "reason": "wash crosses and a spoof: report"},
            )
            draft = await carol.get(f"{CASES}/{case_id}/report")
            document = await carol.get(f"{CASES}/{case_id}/report.md")
            not_yet = await carol.get(REPORTS, params={"overdue": "true"})
            api.clock.advance(seconds=31 * 86_400)
            await carol.sign_in_again()
            overdue = await carol.get(REPORTS, params={"overdue": "true"})
            filed = await carol.post(
                f"{CASES}/{case_id}/report/filed", {"reference": "BSA-31000012345678"}
            )
            again = await carol.post(f"{CASES}/{case_id}/report/filed", {"reference": "BSA-2"})
            after = await carol.get(REPORTS, params={"overdue": "true"})
            every = await carol.get(REPORTS)
        assert closed.status_code == 200, closed.text
        assert closed.json()["report_id"]
        assert draft.status_code == 200, draft.text
        body = draft.json()
        assert body["format"] == "tradeguard-sar-draft/1"
        assert body["case_id"] == case_id
        # 30 calendar days from the first alert (a suspect is identified: the account owner).
        first_alert = ns_to_datetime(MONDAY_OPEN).date()
        assert body["filing"]["due_date"] == (first_alert + timedelta(days=30)).isoformat()
        assert body["filing"]["regulation"] == "31 CFR 1023.320"
        assert body["filing"]["threshold_met"] is True
        assert body["activity"]["alert_types"] == ["SPOOFING", "WASH_TRADE"]
        # Amounts are decimal strings: the spoofer's 300-share sale at 49.98; the wash
        # trader's volume in the window at its average prices.
        amounts = {a["alert_type"]: a["amount"] for a in body["alerts"]}
        assert amounts["SPOOFING"] == "14994.00"
        async with surveillance_of(api).unit_of_work() as session:
            wash = await surveillance_of(api).alerts.get(session, alerts["WASH_TRADE"])
        # The wash is Ursula's two crosses (both sides of each: 4 x 500 at 50.00); her
        # 1,000 shares bought from the street at 50.02 before them are in the evidence as
        # context, and not counted.
        evidence = wash.evidence
        assert any(x["price"] == "50.02" for x in evidence["executions"])
        assert Decimal(amounts["WASH_TRADE"]) == Decimal("100000.00")
        counted = {t["execution_id"] for t in body["trades"]}
        in_wash = {x["execution_id"] for x in evidence["executions"]}
        assert counted & in_wash == set(evidence["pattern_execution_ids"])
        assert {t["price"] for t in body["trades"] if t["symbol"] == "ACME"} == {
            "50.00",
            "49.98",
        }
        assert len(body["trades"]) == 5  # four cross fills and the spoofer's sale
        assert "bought 1000 and sold 1000 shares" in body["narrative"]
        assert body["activity"]["total_amount"] == str(
            Decimal(amounts["WASH_TRADE"]) + Decimal(amounts["SPOOFING"])
        )
        assert {i["symbol"] for i in body["instruments"]} == {"ACME"}
        subjects = {p["beneficial_owner_ref"] for p in body["parties"]}
        assert subjects == {market.ursula.user_id, market.sam.user_id}
        numbers = []
        async with unit_of_work(trading_of(api).sessions) as session:
            for account in [*market.ursula.accounts, *market.sam.accounts]:
                numbers.append((await trading_of(api).accounts.get(session, account)).number)
        shown = [a["account_number"] for p in body["parties"] for a in p["accounts"]]
        assert len(shown) == 3
        assert all("******" in n for n in shown)
        for number in numbers:
            # Masked: never the whole account number, in either form.
            assert number not in draft.text
            assert number not in document.text
        assert "ACME" in body["narrative"]
        assert "wash crosses and a spoof: report" in body["narrative"]
        assert document.headers["content-type"].startswith("text/markdown")
        assert document.text.startswith("# Suspicious activity report")
        assert "## Narrative" in document.text
        assert not_yet.json() == []
        assert [r["case_id"] for r in overdue.json()] == [case_id]
        assert overdue.json()[0]["overdue"] is True
        assert filed.status_code == 200, filed.text
        assert filed.json()["filing_reference"] == "BSA-31000012345678"
        assert is_problem(again, 409, "case-transition-refused"), again.text
        assert after.json() == []
        assert every.json()[0]["status"] == "filed"
        drafted = await audit_events(api, "surveillance:report:drafted")
        assert [e["data"]["case_id"] for e in drafted] == [case_id]
        assert [
            e["data"]["reference"] for e in await audit_events(api, CASE_EVENTS + "report_filed")
        ] == ["BSA-31000012345678"]

    async def test_without_a_suspect_identified_the_deadline_is_sixty_days(self, api: Api) -> None:
        # An alert naming only an account the firm cannot tie to an owner.
        alert_id = await alert_of_unknown_account(api)
        async with api.client() as client:
            carol, dora = await two_officers(api, client)
            case_id = await escalated_case(carol, dora, alert_id)
            api.clock.advance(seconds=2 * 86_400)
            await carol.sign_in_again()
            detected = ns_to_datetime(api.clock.now_ns()).isoformat()
            closed = await carol.post(
                f"{CASES}/{case_id}/close",
                {
                    "disposition": "reported",
                    "reason": "a spoof by an account we cannot tie to a person yet",
                    "detected_at": detected,
                    "suspect_identified": False,
                },
            )
            draft = await carol.get(f"{CASES}/{case_id}/report")
        assert closed.status_code == 200, closed.text
        filing = draft.json()["filing"]
        due = ns_to_datetime(api.clock.now_ns()).date() + timedelta(days=60)
        assert filing["due_date"] == due.isoformat()
        assert filing["suspect_identified"] is False

    async def test_no_suspect_is_refused_when_the_alerts_name_a_known_owner(self, api: Api) -> None:
        _, alerts = await surveil(api)
        async with api.client() as client:
            carol, dora = await two_officers(api, client)
            case_id = await escalated_case(carol, dora, alerts["SPOOFING"])
            before = (await carol.get(f"{CASES}/{case_id}")).json()
            refused = await carol.post(
                f"{CASES}/{case_id}/close",
                {
                    "disposition": "reported",
                    "reason": "a spoof: give us sixty days",
                    "suspect_identified": False,
                },
            )
            after = (await carol.get(f"{CASES}/{case_id}")).json()
            report = await carol.get(f"{CASES}/{case_id}/report")
        assert is_problem(refused, 422, "invalid-input"), refused.text
        assert "suspect_identified" in refused.json()["detail"]
        assert "30 days" in refused.json()["detail"]
        assert after == before
        assert after["status"] == "escalated"
        assert is_problem(report, 404, "report-not-found")
        assert await audit_events(api, "surveillance:report:drafted") == []

    @pytest.mark.spec("MAN-5")
    async def test_who_escalated_a_case_cannot_also_close_it_as_reported_or_restricted(
        self, api: Api
    ) -> None:
        _, alerts = await surveil(api)
        async with api.client() as client:
            carol, dora = await two_officers(api, client)
            case_id = await open_case(carol, alerts["SPOOFING"])
            await carol.post(f"{CASES}/{case_id}/assign", {"assignee": carol.user_id})
            await carol.post(f"{CASES}/{case_id}/escalate", {"reason": "looks deliberate"})
            before = (await carol.get(f"{CASES}/{case_id}")).json()
            alone = {
                disposition: await carol.post(
                    f"{CASES}/{case_id}/close",
                    {"disposition": disposition, "reason": "my own decision alone"},
                )
                for disposition in ["reported", "restricted"]
            }
            after = (await carol.get(f"{CASES}/{case_id}")).json()
            # The second officer may close it as reported.
            closed = await dora.post(
                f"{CASES}/{case_id}/close",
                {"disposition": "reported", "reason": "second look: report it"},
            )
        for disposition, response in alone.items():
            assert is_problem(response, 409, "second-reviewer-required"), (disposition, response)
            assert "another compliance officer" in response.json()["detail"]
        assert after == before
        assert closed.status_code == 200, closed.text
        assert closed.json()["disposition"] == "reported"
        drafted = await audit_events(api, "surveillance:report:drafted")
        assert [e["actor"]["id"] for e in drafted] == [dora.user_id]

    @pytest.mark.spec("MAN-5")
    async def test_an_escalation_row_edited_in_the_table_does_not_let_its_escalator_close_alone(
        self, api: Api
    ) -> None:
        """The second outside review: an insider rewrites the "escalated" timeline row's
        actor to another officer, then closes the case as reported alone. The escalator is
        the ledger's, so it is refused; and `verify` reports the edited row."""
        _, alerts = await surveil(api)
        async with api.client() as client:
            carol, dora = await two_officers(api, client)
            case_id = await open_case(carol, alerts["SPOOFING"])
            await carol.post(f"{CASES}/{case_id}/assign", {"assignee": carol.user_id})
            await carol.post(f"{CASES}/{case_id}/escalate", {"reason": "looks deliberate"})
            async with api.engine.begin() as conn:
                edited = await conn.execute(
                    text(
                        "UPDATE surveillance_case_entries SET actor = :dora, "
                        "detail = :detail WHERE case_id = :id AND kind = 'escalated'"
                    ),
                    {
                        "dora": f"user:{dora.user_id}",
                        "detail": '{"status": "escalated", "reason": "dora thinks so"}',
                        "id": case_id,
                    },
                )
                assert edited.rowcount == 1
            alone = await carol.post(
                f"{CASES}/{case_id}/close",
                {"disposition": "reported", "reason": "my own decision alone"},
            )
        assert is_problem(alone, 409, "second-reviewer-required"), alone.text
        await chain(api)
        services = surveillance_of(api)
        assert services.verifier is not None
        async with services.unit_of_work() as session:
            result = await services.verifier.verify(session)
        found = {(m.table, m.field) for m in result.mismatches}
        assert ("surveillance_case_entries", "actor") in found
        assert ("surveillance_case_entries", "detail") in found


class TestDecidedAlerts:
    @pytest.mark.spec("MAN-5")
    async def test_repeat_offending_after_a_case_is_closed_raises_a_new_alert_the_policy_sees(
        self, api: Api
    ) -> None:
        market, alerts = await surveil(api)
        wash_id = alerts["WASH_TRADE"]
        a1, a2 = market.ursula.accounts
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            case_id = await open_case(carol, wash_id)
            await carol.post(f"{CASES}/{case_id}/assign", {"assignee": carol.user_id})
            closed = await carol.post(
                f"{CASES}/{case_id}/close",
                {"disposition": "false_positive", "reason": "a broker error, corrected"},
            )
            assert closed.status_code == 200, closed.text
            before = (await carol.get(f"{ALERTS}/{wash_id}")).json()
            shown_before = (await carol.get(f"{CASES}/{case_id}")).json()
            policy = await carol.put(
                POLICY,
                {
                    "rules": [
                        {"alert_type": "WASH_TRADE", "min_score": 0, "action": "cancel_orders"}
                    ],
                    "reason": "cancel a wash trader's orders",
                },
            )
            assert policy.status_code == 200, policy.text
            # Ursula crosses her accounts again, within the fold window of the old alert.
            await cross_again(api, market)
            # A restarted stream (a new process) judges the new events: the decision is made
            # once, when the finding is recorded, and the replay of the lookback records none.
            result = await fresh_surveillance(api, batch_size=7).consumer.run()
            after = (await carol.get(f"{ALERTS}/{wash_id}")).json()
            listed = (await carol.get(ALERTS, params={"alert_type": "WASH_TRADE"})).json()
            shown_after = (await carol.get(f"{CASES}/{case_id}")).json()
            new_ids = [a["id"] for a in listed if a["id"] != wash_id]
            assert len(new_ids) == 1, listed
            actions = (await carol.get(ACTIONS, params={"alert_id": new_ids[0]})).json()
            # The new alert is free: it goes into a case of its own.
            second = await carol.post(
                CASES, {"alert_ids": new_ids, "title": "ursula crosses again"}
            )
        # One new alert (the second cross folds into it, not into the decided one).
        assert result.alerts == 1
        assert [a["occurrences"] for a in listed if a["id"] in new_ids] == [1 + result.folded]
        # The decided alert is as the case closed it.
        assert after == before
        assert shown_after == shown_before
        # The action policy saw the new alert: one action for each of its accounts.
        assert sorted((a["action"], a["account_id"]) for a in actions) == [
            ("cancel_orders", account) for account in sorted([a1, a2])
        ]
        assert second.status_code == 201, second.text

    async def test_a_finding_still_folds_into_an_alert_in_a_live_case(self, api: Api) -> None:
        market, alerts = await surveil(api)
        wash_id = alerts["WASH_TRADE"]
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            await open_case(carol, wash_id)
            before = (await carol.get(f"{ALERTS}/{wash_id}")).json()
            await cross_again(api, market)
            result = await surveillance_of(api).consumer.run()
            after = (await carol.get(f"{ALERTS}/{wash_id}")).json()
        assert result.alerts == 0
        assert result.folded >= 1
        assert after["occurrences"] == before["occurrences"] + result.folded


class TestIllegalSteps:
    @pytest.mark.spec("MAN-5")
    async def test_illegal_transitions_are_a_409_problem_and_change_nothing(self, api: Api) -> None:
        _, alerts = await surveil(api)
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            case_id = await open_case(carol, alerts["WASH_TRADE"])
            before_open = await case_events(api)
            on_open = [
                await carol.post(f"{CASES}/{case_id}/escalate", {"reason": "too early"}),
                await carol.post(
                    f"{CASES}/{case_id}/close",
                    {"disposition": "no_action", "reason": "nobody looked"},
                ),
                await carol.get(f"{CASES}/{case_id}/report"),
            ]
            assert [e["id"] for e in await case_events(api)] == [e["id"] for e in before_open]
            await carol.post(f"{CASES}/{case_id}/assign", {"assignee": carol.user_id})
            on_assigned = [
                # Restricting or reporting a customer needs an escalated case.
                await carol.post(
                    f"{CASES}/{case_id}/close",
                    {"disposition": "reported", "reason": "one reviewer alone"},
                ),
                await carol.post(
                    f"{CASES}/{case_id}/close",
                    {"disposition": "restricted", "reason": "one reviewer alone"},
                ),
                await carol.post(f"{CASES}/{case_id}/assign", {"assignee": carol.user_id}),
            ]
            await carol.post(f"{CASES}/{case_id}/escalate", {"reason": "senior look"})
            twice = await carol.post(f"{CASES}/{case_id}/escalate", {"reason": "again"})
            await carol.post(
                f"{CASES}/{case_id}/close",
                {"disposition": "false_positive", "reason": "fine after all"},
            )
            before_closed = await case_events(api)
            shown_before = (await carol.get(f"{CASES}/{case_id}")).json()
            on_closed = [
                await carol.post(f"{CASES}/{case_id}/notes", {"text": "late note"}),
                await carol.post(f"{CASES}/{case_id}/assign", {"assignee": carol.user_id}),
                await carol.post(f"{CASES}/{case_id}/escalate", {"reason": "reopen?"}),
                await carol.post(
                    f"{CASES}/{case_id}/close", {"disposition": "reported", "reason": "again"}
                ),
                await carol.post(f"{CASES}/{case_id}/alerts", {"alert_ids": [alerts["SPOOFING"]]}),
                await carol.post(f"{CASES}/{case_id}/report/filed", {"reference": "BSA-1"}),
            ]
            shown_after = (await carol.get(f"{CASES}/{case_id}")).json()
        for response in [*on_open[:2], *on_assigned, twice, *on_closed[:5]]:
            assert is_problem(response, 409, "case-transition-refused"), response.text
        assert is_problem(on_open[2], 404, "report-not-found")
        assert is_problem(on_closed[5], 404, "report-not-found")
        assert "escalate" in on_assigned[0].json()["detail"]
        assert "closed" in on_closed[0].json()["detail"]
        assert shown_after == shown_before
        assert [e["id"] for e in await case_events(api)] == [e["id"] for e in before_closed]

    async def test_an_alert_is_in_one_case_at_a_time_and_a_case_keeps_at_least_one(
        self, api: Api
    ) -> None:
        _, alerts = await surveil(api)
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            case_id = await open_case(carol, alerts["WASH_TRADE"])
            taken = await carol.post(
                CASES, {"alert_ids": [alerts["WASH_TRADE"]], "title": "second look"}
            )
            last = await carol.post(
                f"{CASES}/{case_id}/alerts/remove",
                {"alert_id": alerts["WASH_TRADE"], "reason": "wrong case"},
            )
            await carol.post(f"{CASES}/{case_id}/alerts", {"alert_ids": [alerts["SPOOFING"]]})
            no_reason = await carol.post(
                f"{CASES}/{case_id}/alerts/remove", {"alert_id": alerts["SPOOFING"]}
            )
            removed = await carol.post(
                f"{CASES}/{case_id}/alerts/remove",
                {"alert_id": alerts["SPOOFING"], "reason": "another trader, another case"},
            )
            # Once out, the alert may go into a case of its own.
            other = await carol.post(
                CASES, {"alert_ids": [alerts["SPOOFING"]], "title": "spoof on its own"}
            )
        assert is_problem(taken, 409, "alert-in-case"), taken.text
        assert case_id in taken.json()["detail"]
        assert is_problem(last, 409, "case-transition-refused"), last.text
        assert is_problem(no_reason, 422, "invalid-input")
        assert removed.status_code == 200, removed.text
        assert removed.json()["alert_ids"] == [alerts["WASH_TRADE"]]
        assert removed.json()["timeline"][-1]["detail"]["reason"] == "another trader, another case"
        assert other.status_code == 201, other.text


BAD_CASE_BODIES: list[dict[str, Any]] = [
    {"alert_ids": [], "title": "empty"},
    {"alert_ids": ["not-a-uuid"], "title": "bad id"},
    {"alert_ids": [UNKNOWN], "title": "x"},
    {"alert_ids": [UNKNOWN], "title": "ok title", "status": "closed"},
    {"title": "no alerts"},
    {"alert_ids": [UNKNOWN] * 51, "title": "too many"},
    {"alert_ids": [UNKNOWN], "title": "line\u202eevil"},
]


class TestBadInput:
    async def test_a_bad_case_body_is_a_422_problem_and_opens_nothing(self, api: Api) -> None:
        cases = Cases()
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            for index, body in enumerate(BAD_CASE_BODIES):
                response = await carol.post(CASES, body)
                listed = await carol.get(CASES)
                events = await case_events(api)
                with cases.case(f"body{index}"):
                    assert is_problem(response, 422, "invalid-input"), response.text
                    assert listed.json() == []
                    assert events == []
        cases.check()

    async def test_a_bad_title_is_refused_naming_the_title(self, api: Api) -> None:
        _, alerts = await surveil(api)
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            refused = await carol.post(
                CASES, {"alert_ids": [alerts["SPOOFING"]], "title": "ACME \x1b[2J review"}
            )
            listed = await carol.get(CASES)
        assert is_problem(refused, 422, "invalid-input"), refused.text
        assert refused.json()["detail"] == "title must be printable text"
        assert listed.json() == []

    async def test_unknown_alerts_and_cases_are_a_404(self, api: Api) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            alert = await carol.post(CASES, {"alert_ids": [UNKNOWN], "title": "ghost"})
            case = await carol.get(f"{CASES}/{UNKNOWN}")
            note = await carol.post(f"{CASES}/{UNKNOWN}/notes", {"text": "hello"})
        assert is_problem(alert, 404, "alert-not-found")
        assert is_problem(case, 404, "case-not-found")
        assert is_problem(note, 404, "case-not-found")
        assert await case_events(api) == []

    async def test_bad_steps_are_refused_and_change_nothing(self, api: Api) -> None:
        market, alerts = await surveil(api)
        async with api.client() as client:
            carol, dora = await two_officers(api, client)
            ada = await staff(api, client, "ada", Role.ADMIN)
            trader = await signed_in_trader(api, client, "tess")
            case_id = await open_case(carol, alerts["SPOOFING"])
            before = (await carol.get(f"{CASES}/{case_id}")).json()
            refused = {
                "admin assignee": await carol.post(
                    f"{CASES}/{case_id}/assign", {"assignee": ada.user_id}
                ),
                "trader assignee": await carol.post(
                    f"{CASES}/{case_id}/assign", {"assignee": trader.user_id}
                ),
                "unknown assignee": await carol.post(
                    f"{CASES}/{case_id}/assign", {"assignee": UNKNOWN}
                ),
                "short note": await carol.post(f"{CASES}/{case_id}/notes", {"text": "x"}),
                "control note": await carol.post(
                    f"{CASES}/{case_id}/notes", {"text": "hi \x1b[2J there"}
                ),
                "no reason": await carol.post(f"{CASES}/{case_id}/escalate", {}),
            }
            await carol.post(f"{CASES}/{case_id}/assign", {"assignee": carol.user_id})
            await dora.post(f"{CASES}/{case_id}/escalate", {"reason": "senior look"})
            middle = (await carol.get(f"{CASES}/{case_id}")).json()
            closing = {
                "bad disposition": await carol.post(
                    f"{CASES}/{case_id}/close", {"disposition": "fine", "reason": "ok then"}
                ),
                "no zone": await carol.post(
                    f"{CASES}/{case_id}/close",
                    {
                        "disposition": "reported",
                        "reason": "report it",
                        "detected_at": "2026-01-05T15:00:00",
                    },
                ),
                "before the alert": await carol.post(
                    f"{CASES}/{case_id}/close",
                    {
                        "disposition": "reported",
                        "reason": "report it",
                        "detected_at": "2025-12-01T15:00:00Z",
                    },
                ),
                "suspect on a warning": await carol.post(
                    f"{CASES}/{case_id}/close",
                    {"disposition": "warning", "reason": "warn", "suspect_identified": False},
                ),
            }
            after = (await carol.get(f"{CASES}/{case_id}")).json()
        for name, response in {**refused, **closing}.items():
            assert is_problem(response, 422, "invalid-input"), (name, response.text)
        # The same answer for a user of another role and for nobody at all.
        assert (
            refused["admin assignee"].json()["detail"]
            == refused["unknown assignee"].json()["detail"]
        )
        assert [e["kind"] for e in before["timeline"]] == ["opened"]
        assert [e["kind"] for e in middle["timeline"]] == ["opened", "assigned", "escalated"]
        assert after == middle
        assert market.sam.accounts


class TestAccess:
    @pytest.mark.spec("MAN-5", "RBAC-4")
    async def test_staff_without_the_case_permission_are_refused_and_the_refusal_audited(
        self, api: Api
    ) -> None:
        _, alerts = await surveil(api)
        async with api.client() as client:
            ada = await staff(api, client, "ada", Role.ADMIN)
            # Reading cases is a view; working them is an operate permission (IAC-2).
            viewer = await staff(api, client, "vera", Role.COMPLIANCE, AccessLevel.READ_ONLY)
            trader = await signed_in_trader(api, client, "tess")
            by_admin = await ada.post(CASES, {"alert_ids": [alerts["SPOOFING"]], "title": "x y"})
            by_viewer = await viewer.post(
                CASES, {"alert_ids": [alerts["SPOOFING"]], "title": "x y"}
            )
            viewer_reads = await viewer.get(CASES)
            by_trader = await trader.get(REPORTS)
        assert is_problem(by_admin, 403, "forbidden")
        assert is_problem(by_viewer, 403, "forbidden")
        assert viewer_reads.status_code == 200
        assert is_problem(by_trader, 403, "forbidden")
        checks = [
            (e["actor"]["id"], e["data"]["permission"], e["data"]["allowed"])
            for e in await audit_events(api, PERMISSION_CHECKED)
            if e["data"]["permission"] in {"compliance:cases", "compliance:report"}
        ]
        assert (ada.user_id, "compliance:cases", False) in checks
        assert (viewer.user_id, "compliance:cases", False) in checks
        assert (trader.user_id, "compliance:report", False) in checks
        assert await case_events(api) == []
