"""The access alert API (IAC-4): compliance lists, reads, acknowledges and closes alerts with
a note; nobody clears an alert about themselves; bad input is refused and changes nothing."""

from __future__ import annotations

import pytest

from tests.integration.access.support import (
    ALERTS,
    Staff,
    alert_mail,
    enrol_staff,
    scan,
    stored_alerts,
)
from tests.support.api import Api, audit_events, bearer, is_problem, login, register_verified
from tests.support.cases import Cases
from tradeguard.access.domain import Role

HALTS = "/api/v1/admin/halts"
UNKNOWN = "0190c5a0-0000-7000-8000-000000000000"


async def denied_past_the_limit(api: Api, staff: Staff) -> str:
    """Three denied checks (the limit is two): an alert about `staff`; returns its id."""
    before = {a.id for a in await stored_alerts(api)}
    for _ in range(3):
        assert (await staff.get(HALTS)).status_code == 403
    await scan(api)
    [new] = [a.id for a in await stored_alerts(api) if a.id not in before]
    return new


class TestReview:
    @pytest.mark.spec("IAC-4")
    async def test_compliance_acknowledges_and_closes_an_alert_with_a_note(self, api: Api) -> None:
        async with (
            api.client("198.51.100.10") as sam_client,
            api.client("198.51.100.11") as carol_client,
        ):
            sam = await enrol_staff(api, sam_client, "sam", Role.SUPPORT)
            carol = await enrol_staff(api, carol_client, "carol", Role.COMPLIANCE)
            alert_id = await denied_past_the_limit(api, sam)
            listed = await carol.get(ALERTS, params={"status": "open"})
            shown = await carol.get(f"{ALERTS}/{alert_id}")
            acknowledged = await carol.post(f"{ALERTS}/{alert_id}/acknowledge")
            again = await carol.post(f"{ALERTS}/{alert_id}/acknowledge")
            closed = await carol.post(
                f"{ALERTS}/{alert_id}/close", {"note": "Sam was testing a new runbook; briefed."}
            )
            closed_again = await carol.post(f"{ALERTS}/{alert_id}/close", {"note": "again"})
            # A closed alert absorbs nothing more: the same behaviour raises a new alert.
            next_alert = await denied_past_the_limit(api, sam)

        assert [a["id"] for a in listed.json()] == [alert_id]
        assert shown.status_code == 200
        body = shown.json()
        assert body["rule"] == "repeated_denials"
        assert body["severity"] == "high"
        assert body["staff_user_id"] == sam.user_id
        assert body["status"] == "open"
        assert len(body["evidence_seqs"]) == 3
        assert body["window_start"].endswith("Z")
        assert acknowledged.status_code == 200
        assert acknowledged.json()["status"] == "acknowledged"
        assert acknowledged.json()["acknowledged_by"] == carol.user_id
        assert is_problem(again, 409, "alert-state")
        assert closed.status_code == 200
        assert closed.json()["status"] == "closed"
        assert closed.json()["closed_by"] == carol.user_id
        assert closed.json()["note"] == "Sam was testing a new runbook; briefed."
        assert is_problem(closed_again, 409, "alert-state")
        assert next_alert != alert_id
        [ack_event] = await audit_events(api, "access:alert:acknowledged")
        [close_event] = await audit_events(api, "access:alert:closed")
        assert ack_event["actor"] == {"kind": "staff", "id": carol.user_id}
        assert close_event["data"] == {
            "alert_id": alert_id,
            "rule": "repeated_denials",
            "note": "Sam was testing a new runbook; briefed.",
        }

    @pytest.mark.spec("IAC-4")
    async def test_nobody_acknowledges_or_closes_an_alert_about_themselves(self, api: Api) -> None:
        async with (
            api.client("198.51.100.12") as carol_client,
            api.client("198.51.100.13") as dave_client,
        ):
            carol = await enrol_staff(api, carol_client, "carol", Role.COMPLIANCE)
            dave = await enrol_staff(api, dave_client, "dave", Role.COMPLIANCE)
            about_carol = await denied_past_the_limit(api, carol)
            ack = await carol.post(f"{ALERTS}/{about_carol}/acknowledge")
            close = await carol.post(f"{ALERTS}/{about_carol}/close", {"note": "nothing to see"})
            still_open = (await carol.get(f"{ALERTS}/{about_carol}")).json()["status"]
            by_dave = await dave.post(f"{ALERTS}/{about_carol}/close", {"note": "Reviewed: fine."})

        assert is_problem(ack, 403, "self-review")
        assert is_problem(close, 403, "self-review")
        assert close.json()["detail"] == "you cannot close an alert about yourself"
        assert still_open == "open"
        assert by_dave.status_code == 200
        refusals = await audit_events(api, "access:alert:self_review_refused")
        assert [r["actor"] for r in refusals] == [{"kind": "staff", "id": carol.user_id}] * 2
        assert {r["data"]["alert_id"] for r in refusals} == {about_carol}
        # Compliance is told, but never the compliance officer the alert is about.
        assert [entry.to for entry, _ in await alert_mail(api)] == ["dave@example.com"]

    async def test_filters_and_pages(self, api: Api) -> None:
        async with (
            api.client("198.51.100.14") as sam_client,
            api.client("198.51.100.15") as tom_client,
            api.client("198.51.100.16") as carol_client,
        ):
            sam = await enrol_staff(api, sam_client, "sam", Role.SUPPORT)
            tom = await enrol_staff(api, tom_client, "tom", Role.SUPPORT)
            carol = await enrol_staff(api, carol_client, "carol", Role.COMPLIANCE)
            about_sam = await denied_past_the_limit(api, sam)
            about_tom = await denied_past_the_limit(api, tom)

            async def ids(**params: object) -> list[str]:
                response = await carol.get(ALERTS, params=params)
                assert response.status_code == 200, response.text
                return [a["id"] for a in response.json()]

            everything = await ids()
            of_sam = await ids(staff_user_id=sam.user_id)
            by_rule = await ids(rule="repeated_denials", severity="high")
            other_rule = await ids(rule="off_hours")
            closed = await ids(status="closed")
            first_page = await ids(limit=1)
            second_page = await ids(limit=1, before=first_page[0])

        assert everything == [about_tom, about_sam]
        assert of_sam == [about_sam]
        assert by_rule == [about_tom, about_sam]
        assert other_rule == closed == []
        assert first_page == [about_tom]
        assert second_page == [about_sam]


BAD_LIST_FILTERS: list[dict[str, object]] = [
    {"status": "bogus"},
    {"rule": "everything"},
    {"severity": "critical"},
    {"limit": 0},
    {"limit": 501},
    {"limit": "ten"},
    {"staff_user_id": "not-a-uuid"},
    {"before": "0190C5A0-0000-7000-8000-000000000000"},
    {"colour": "red"},
]


class TestRefusals:
    async def test_only_compliance_may_read_alerts(self, api: Api) -> None:
        async with (
            api.client("198.51.100.17") as ada_client,
            api.client("203.0.113.9") as trader_client,
        ):
            ada = await enrol_staff(api, ada_client, "ada", Role.ADMIN)
            await register_verified(api, trader_client, "tina")
            tina = (await login(trader_client, "tina"))["access_token"]
            by_admin = await ada.get(ALERTS)
            by_trader = await trader_client.get(ALERTS, headers=bearer(tina))
            anonymous = await trader_client.get(ALERTS)
            close_by_admin = await ada.post(f"{ALERTS}/{UNKNOWN}/close", {"note": "closing"})

        assert is_problem(by_admin, 403, "forbidden")
        assert is_problem(by_trader, 403, "forbidden")
        assert is_problem(anonymous, 401, "unauthorized")
        assert is_problem(close_by_admin, 403, "forbidden")

    async def test_bad_list_filters_are_refused(self, api: Api) -> None:
        cases = Cases()
        async with api.client("198.51.100.18") as client:
            carol = await enrol_staff(api, client, "carol", Role.COMPLIANCE)
            for params in BAD_LIST_FILTERS:
                response = await carol.get(ALERTS, params=params)
                with cases.case(repr(params)):
                    assert is_problem(response, 422, "invalid-input"), response.text
        cases.check()

    async def test_bad_ids_bodies_and_notes_are_refused_and_change_nothing(self, api: Api) -> None:
        async with (
            api.client("198.51.100.19") as sam_client,
            api.client("198.51.100.20") as carol_client,
        ):
            sam = await enrol_staff(api, sam_client, "sam", Role.SUPPORT)
            carol = await enrol_staff(api, carol_client, "carol", Role.COMPLIANCE)
            alert_id = await denied_past_the_limit(api, sam)
            close = f"{ALERTS}/{alert_id}/close"
            responses = {
                "malformed id": await carol.get(f"{ALERTS}/not-an-id"),
                "unknown id": await carol.get(f"{ALERTS}/{UNKNOWN}"),
                "unknown acknowledge": await carol.post(f"{ALERTS}/{UNKNOWN}/acknowledge"),
                "unknown close": await carol.post(f"{ALERTS}/{UNKNOWN}/close", {"note": "ok ok"}),
                "no note": await carol.post(close, {}),
                "short note": await carol.post(close, {"note": "ok"}),
                "blank note": await carol.post(close, {"note": "  x  "}),
                "long note": await carol.post(close, {"note": "x" * 2001}),
                "control characters": await carol.post(close, {"note": "fine\x00\x1b[2J"}),
                "bidi override": await carol.post(close, {"note": "fine \u202etxt.exe"}),
                "note not a string": await carol.post(close, {"note": ["a", "b", "c"]}),
                "extra field": await carol.post(close, {"note": "fine", "status": "open"}),
                "not json": await carol.client.post(
                    close,
                    content=b"note=fine",
                    headers={**carol.headers, "content-type": "application/json"},
                ),
            }
            after = (await carol.get(f"{ALERTS}/{alert_id}")).json()

        statuses = {name: r.status_code for name, r in responses.items()}
        assert statuses == {
            "malformed id": 422,
            "unknown id": 404,
            "unknown acknowledge": 404,
            "unknown close": 404,
            "no note": 422,
            "short note": 422,
            "blank note": 422,
            "long note": 422,
            "control characters": 422,
            "bidi override": 422,
            "note not a string": 422,
            "extra field": 422,
            "not json": 400,
        }
        assert all(
            r.headers["content-type"].startswith("application/problem+json")
            for r in responses.values()
        )
        assert is_problem(responses["unknown id"], 404, "alert-not-found")
        # Nothing personal or secret is echoed back.
        assert "\x1b" not in responses["control characters"].text
        assert after["status"] == "open"
        assert after["note"] is None
        assert await audit_events(api, "access:alert:closed") == []
