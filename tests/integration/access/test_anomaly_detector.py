"""The access anomaly detector end to end (IAC-4): real staff requests and passkey sign-ins
through the app, the ledger sequenced, the detector run, alerts stored once, each a ledger
event, mailed to compliance and administrators (the development mailbox)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event

from tests.integration.access.support import (
    alert_mail,
    alert_services,
    customer_accounts,
    enrol_staff,
    scan,
    stored_alerts,
)
from tests.support.api import Api, audit_events, bearer, login, register_verified, running_api
from tests.support.ledger import settle
from tradeguard.access.alerts_container import build_access_alerts
from tradeguard.access.alerts_tasks import detector_tracker, run_detector
from tradeguard.access.anomalies import GRANT_USED, PERMISSION_CHECKED, AnomalyRule
from tradeguard.access.domain import Role
from tradeguard.ledger.domain import LedgerEvent, Party

ADMIN_ACCOUNT = "/api/v1/admin/accounts/{}"
HALTS = "/api/v1/admin/halts"


class TestManyCustomers:
    @pytest.mark.spec("IAC-4")
    async def test_one_customer_past_the_limit_raises_one_alert_mailed_to_compliance_and_admins(
        self, api: Api
    ) -> None:
        async with (
            api.client("198.51.100.20") as ada_client,
            api.client("198.51.100.21") as bob_client,
            api.client("198.51.100.22") as carol_client,
        ):
            ada = await enrol_staff(api, ada_client, "ada", Role.ADMIN)
            await enrol_staff(api, bob_client, "bob", Role.ADMIN)
            await enrol_staff(api, carol_client, "carol", Role.COMPLIANCE)
            accounts = await customer_accounts(api, 5)
            for account in accounts[:3]:
                assert (await ada.get(ADMIN_ACCOUNT.format(account))).status_code == 200
            at_limit = await scan(api)
            assert await stored_alerts(api) == []

            assert (await ada.get(ADMIN_ACCOUNT.format(accounts[3]))).status_code == 200
            past_limit = await scan(api)
            # More reads inside the window fold into the same alert.
            for account in (accounts[0], accounts[4]):
                assert (await ada.get(ADMIN_ACCOUNT.format(account))).status_code == 200
            await scan(api)

        assert at_limit.alerts == 0
        assert past_limit.alerts == 1
        [alert] = await stored_alerts(api)
        assert alert.rule == AnomalyRule.MANY_CUSTOMERS
        assert alert.severity == "high"
        assert alert.staff_user_id == ada.user_id
        assert alert.status == "open"
        assert alert.occurrences == 3
        assert alert.summary == "5 distinct customer records within 600 s (limit 3)"
        reads = [
            e
            for e in await audit_events(api, PERMISSION_CHECKED)
            if e["actor"]["id"] == ada.user_id and "params" in e["data"]
        ]
        assert len(reads) == 6
        # The evidence is the permission checks of the reads, by their ledger positions.
        assert len(alert.evidence_seqs) == 6
        [raised] = await audit_events(api, "access:alert:raised")
        assert raised["data"]["alert_id"] == alert.id
        assert raised["subject"] == {"kind": "user", "id": ada.user_id}
        assert raised["data"]["evidence_seqs"] == alert.evidence_seqs[:4]
        mails = await alert_mail(api)
        assert sorted(entry.to for entry, _ in mails) == ["bob@example.com", "carol@example.com"]
        entry, body = mails[0]
        assert entry.subject == "tradeguard access alert: many_customers (high)"
        assert alert.id in body
        # Nothing that names a customer leaves in the email.
        assert not any(account in body for account in accounts)


class TestRepeatedDenials:
    @pytest.mark.spec("IAC-4")
    async def test_denials_past_the_limit_raise_one_alert_per_window(self, api: Api) -> None:
        async with api.client("198.51.100.30") as client:
            sam = await enrol_staff(api, client, "sam", Role.SUPPORT)
            for _ in range(2):
                assert (await sam.get(HALTS)).status_code == 403
            await scan(api)
            at_limit = await stored_alerts(api)
            assert (await sam.get(HALTS)).status_code == 403
            assert (await sam.get(HALTS)).status_code == 403
            await scan(api)
            first_window = await stored_alerts(api)
            # Past the window (300 s) the count starts again: a second alert.
            api.clock.advance(seconds=301)
            for _ in range(3):
                assert (await sam.get(HALTS)).status_code == 403
            await scan(api)

        assert at_limit == []
        assert [(a.rule, a.occurrences) for a in first_window] == [("repeated_denials", 2)]
        alerts = await stored_alerts(api)
        assert [a.rule for a in alerts] == ["repeated_denials", "repeated_denials"]
        assert alerts[1].summary == "3 denied permission checks within 300 s (limit 2)"
        assert len(alerts[1].evidence_seqs) == 3


class TestOffHours:
    @pytest.mark.spec("IAC-4")
    async def test_a_sign_in_after_hours_raises_one_alert_per_evening(self, api: Api) -> None:
        async with api.client("198.51.100.40") as client:
            ada = await enrol_staff(api, client, "ada", Role.ADMIN)
            await scan(api)
            during_the_day = await stored_alerts(api)
            api.clock.advance(seconds=9 * 3600)  # 19:00 in New York: after 18:00
            await ada.sign_in(api)
            assert (await ada.get(HALTS)).status_code == 200
            api.clock.advance(seconds=3600)
            assert (await ada.get(HALTS)).status_code == 401  # signed out after 15 minutes
            await ada.sign_in(api)
            await scan(api)
            one_evening = await stored_alerts(api)
            api.clock.advance(seconds=24 * 3600)  # Tuesday 20:00
            await ada.sign_in(api)
            await scan(api)

        assert during_the_day == []
        [evening] = one_evening
        assert evening.rule == "off_hours"
        assert evening.occurrences > 2
        assert "outside working hours (Mon,Tue,Wed,Thu,Fri 08:00-18:00" in evening.summary
        alerts = await stored_alerts(api)
        assert [a.rule for a in alerts] == ["off_hours", "off_hours"]


class TestNewNetwork:
    @pytest.mark.spec("IAC-4")
    async def test_a_new_network_alerts_and_the_same_slash_24_does_not(self, api: Api) -> None:
        async with (
            api.client("198.51.100.50") as office,
            api.client("198.51.100.99") as office_wifi,
            api.client("203.0.113.77") as elsewhere,
            api.client("2001:db8:5:6::1") as v6_home,
            api.client("2001:db8:5:6::abcd") as v6_same_64,
        ):
            ada = await enrol_staff(api, office, "ada", Role.ADMIN)
            await ada.sign_in(api, office_wifi)
            await scan(api)
            known = await stored_alerts(api)
            await ada.sign_in(api, elsewhere)
            assert (await ada.get(HALTS)).status_code == 200
            await scan(api)
            after_elsewhere = await stored_alerts(api)
            await ada.sign_in(api, v6_home)
            await ada.sign_in(api, v6_same_64)
            await scan(api)

        assert known == []
        assert [(a.rule, a.occurrences) for a in after_elsewhere] == [("new_network", 1)]
        assert "203.0.113" not in after_elsewhere[0].summary
        alerts = await stored_alerts(api)
        assert [a.rule for a in alerts] == ["new_network", "new_network"]

    @pytest.mark.spec("IAC-4")
    async def test_a_network_unused_for_the_look_back_alerts_again(self, api: Api) -> None:
        async with api.client("198.51.100.60") as office:
            ada = await enrol_staff(api, office, "ada", Role.ADMIN)
            await scan(api)
            api.clock.advance(seconds=30 * 86_400)  # exactly the look-back: still known
            await ada.sign_in(api)
            await scan(api)
            at_look_back = await stored_alerts(api)
            api.clock.advance(seconds=30 * 86_400 + 1)
            await ada.sign_in(api)
            await scan(api)

        assert at_look_back == []
        [alert] = await stored_alerts(api)
        assert alert.rule == "new_network"
        assert alert.summary.endswith("(seen before that)")


class TestCheckpoint:
    @pytest.mark.spec("IAC-4")
    async def test_a_restarted_detector_resumes_from_its_checkpoint_without_repeating_alerts(
        self, api: Api
    ) -> None:
        async with api.client("198.51.100.70") as client:
            sam = await enrol_staff(api, client, "sam", Role.SUPPORT)
            for _ in range(3):
                await sam.get(HALTS)
            first = await scan(api)
        async with running_api(api.app.state.runtime.settings, api.engine, api.clock) as again:
            # A new process: new caches, the same database.
            resumed = await scan(again)
            async with again.client("198.51.100.70") as client:
                sam.client = client
                await sam.get(HALTS)
            continued = await scan(again)

        assert first.alerts == 1
        assert resumed.events <= 2  # only what was appended since: the raise itself
        assert resumed.alerts == 0
        assert continued.alerts == 0
        [alert] = await stored_alerts(api)
        assert alert.occurrences == 2
        assert len(await audit_events(api, "access:alert:raised")) == 1

    async def test_two_detectors_at_once_raise_each_alert_once(self, api: Api) -> None:
        async with api.client("198.51.100.71") as client:
            sam = await enrol_staff(api, client, "sam", Role.SUPPORT)
            for _ in range(3):
                await sam.get(HALTS)
        await settle(api.engine)
        other = build_access_alerts(api.app.state.runtime.settings, identity=api.services)
        results = await asyncio.gather(alert_services(api).detector.scan(), other.detector.scan())

        assert sum(r.alerts for r in results) == 1
        assert len(await stored_alerts(api)) == 1


class TestCustomersEvents:
    async def test_customers_events_are_passed_over_without_reading_their_documents(
        self, api: Api
    ) -> None:
        async with api.client("198.51.100.80") as client:
            sam = await enrol_staff(api, client, "sam", Role.SUPPORT)
            await scan(api)  # caught up
            await customer_accounts(api, 3)  # events of customers and of the setup, no staff
            await settle(api.engine)
            statements: list[str] = []

            def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
                statements.append(statement)

            event.listen(api.engine.sync_engine, "before_cursor_execute", note)
            try:
                passed = await alert_services(api).detector.scan()  # already chained: settled
            finally:
                event.remove(api.engine.sync_engine, "before_cursor_execute", note)
            assert passed.events > 0
            assert passed.observations == 0
            assert not [s for s in statements if "audit_event.body" in s]

            # A staff member's events among them are read and judged as before.
            for _ in range(3):
                await sam.get(HALTS)
            await customer_accounts(api, 2, prefix="more")
            judged = await scan(api)
        assert judged.observations == 3
        assert judged.events > judged.observations


class TestGrantUse:
    @pytest.mark.spec("IAC-4")
    async def test_a_grant_used_outside_its_scope_raises_an_alert(self, api: Api) -> None:
        async with api.client("198.51.100.80") as client:
            sam = await enrol_staff(api, client, "sam", Role.SUPPORT)

        async def grant_used(customer: str) -> None:
            # What the just-in-time grants record when a grant is used (the extension point).
            async with api.services.unit_of_work() as session:
                await api.services.deps.ledger.append(
                    session,
                    LedgerEvent(
                        type=GRANT_USED,
                        actor=Party("user", sam.user_id),
                        data={
                            "grant_id": "0190c5a0-0000-7000-8000-0000000000g1",
                            "permission": "customer:unmask",
                            "granted_permissions": ["customer:unmask"],
                            "customer": customer,
                            "scope_customers": ["user:c1"],
                        },
                    ),
                )

        await grant_used("user:c1")
        await scan(api)
        inside = await stored_alerts(api)
        await grant_used("user:c2")
        await scan(api)

        assert inside == []
        [alert] = await stored_alerts(api)
        assert alert.rule == "grant_out_of_scope"
        assert alert.staff_user_id == sam.user_id


class TestBackgroundWorker:
    async def test_the_worker_raises_alerts_until_stopped(self, api: Api) -> None:
        async with api.client("198.51.100.90") as client:
            sam = await enrol_staff(api, client, "sam", Role.SUPPORT)
            for _ in range(3):
                await sam.get(HALTS)
        await settle(api.engine)
        stop = asyncio.Event()
        detector = alert_services(api).detector
        worker = asyncio.create_task(
            run_detector(
                detector,
                interval_seconds=0.01,
                stop=stop,
                tracker=detector_tracker(api.clock, 0.01),
            )
        )
        for _ in range(500):
            if await stored_alerts(api):
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(worker, timeout=10)

        assert [a.rule for a in await stored_alerts(api)] == ["repeated_denials"]


class TestStaffChecksCarryContext:
    async def test_a_staff_check_records_address_and_customer_while_a_traders_does_not(
        self, api: Api
    ) -> None:
        async with api.client("198.51.100.95") as client:
            ada = await enrol_staff(api, client, "ada", Role.ADMIN)
            [account] = await customer_accounts(api, 1)
            await ada.get(ADMIN_ACCOUNT.format(account))
            await ada.get("/api/v1/admin/accounts", params={"user_id": "x" * 100})
        async with api.client("203.0.113.5") as client:
            await register_verified(api, client, "tina")
            tina = (await login(client, "tina"))["access_token"]
            assert (await client.get("/api/v1/accounts", headers=bearer(tina))).status_code == 200
        events = await audit_events(api, PERMISSION_CHECKED)
        checks = [e["data"] for e in events]
        staff_reads = [d for d in checks if "params" in d]
        trader_check = [d for d in checks if d["route"] == "/api/v1/accounts"]
        staff_addresses = [e["personal"] for e in events if "params" in e["data"]]
        trader_events = [e for e in events if e["data"]["route"] == "/api/v1/accounts"]

        assert staff_reads[0]["params"] == {"account_id": account}
        # The address is the staff member's personal data: sealed under their subject key.
        assert staff_addresses[0] == {"ip": "198.51.100.95"}
        assert "ip" not in staff_reads[0]
        assert "personal" not in trader_events[0]
        assert staff_reads[0]["route"] == "/api/v1/admin/accounts/{account_id}"
        # Query parameters that name a customer count too, bounded in length.
        assert staff_reads[1]["params"] == {"user_id": "x" * 64}
        assert set(trader_check[0]) == {"permission", "allowed", "route", "method"}
