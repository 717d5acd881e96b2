"""AML monitoring end to end: deposits made through funds' API, the monitor tailing the
ledger, CTRs per person per business day, alerts, cases with SAR deadlines and reminders,
FinCEN exports, permissions and bad input."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from tests.support.access import staff
from tests.support.api import Api, audit_events
from tests.support.funds import (
    Customer,
    add_bank,
    confirm,
    customer,
    past_cooling,
    request_withdrawal,
)
from tests.support.kyc import imported
from tests.support.kyc_applications import SSN, application
from tests.support.trading import funded_account
from tradeguard.access.domain import Role
from tradeguard.aml import fincen
from tradeguard.aml.consumer import AmlConsumer
from tradeguard.aml.container import AmlServices
from tradeguard.aml.models import AmlAlert, AmlCase, AmlCtr, AmlFiling, AmlMovement
from tradeguard.aml.tasks import run_deadlines_once
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.notify.models import OutboxMessage

NY = ZoneInfo("America/New_York")
AML = "/api/v1/admin/aml"
DAY = 86_400


def aml_of(api: Api) -> AmlServices:
    services: AmlServices = api.app.state.aml
    return services


def move_to(api: Api, y: int, m: int, d: int, hh: int, mm: int) -> None:
    target = int(datetime(y, m, d, hh, mm, tzinfo=NY).timestamp()) * NS_PER_SECOND
    now = api.clock.now_ns()
    assert target >= now, "the clock only moves forward"
    api.clock.advance(ns=target - now)


async def deposit(who: Customer, account_id: str, amount: str, key: str) -> None:
    response = await who.post(
        "/api/v1/funds/deposits",
        {
            "account_id": account_id,
            "bank_account_id": who.bank_account_id,
            "rail": "ach",
            "amount": amount,
            "idempotency_key": key,
        },
    )
    assert response.status_code in (200, 201), response.text


async def monitor(api: Api) -> Any:
    await LedgerSequencer(api.engine, clock=api.clock).drain()
    return await aml_of(api).consumer.run()


async def rows(api: Api, model: Any) -> list[Any]:
    async with unit_of_work(aml_of(api).sessions) as session:
        return list((await session.execute(select(model))).scalars().all())


# Jane's KYC record: an approved application (onboarding's audited import path), read by
# AML for filings (the subject's identity and tax id) through the app's wiring.
JANE = {"given_names": "Jane", "family_name": "Doe", "birth_date": "1980-02-14"}
JANE_TIN = SSN.replace("-", "").encode()


async def jane_on_file(api: Api, user_id: str) -> None:
    await imported(api, user_id, application(identity=JANE))


async def two_accounts_over_midnight(api: Api, client: Any) -> tuple[Customer, str]:
    """Jane's two accounts: 9000 at 23:59 on Monday into one, 9500 at 00:01 on Tuesday into
    the other, 9900 on Tuesday morning into the first."""
    jane = await customer(api, client, "jane", phone="+14155550111", cash="0")
    await add_bank(api, jane)
    second = await funded_account(api, jane.trader, "0")
    move_to(api, 2026, 1, 5, 23, 59)
    await jane.trader.sign_in_again()
    await deposit(jane, jane.account_id, "9000.00", "d1")
    move_to(api, 2026, 1, 6, 0, 1)
    await deposit(jane, second, "9500.00", "d2")
    move_to(api, 2026, 1, 6, 9, 30)
    await jane.trader.sign_in_again()
    await deposit(jane, jane.account_id, "9900.00", "d3")
    return jane, second


class TestCtrAndStructuringAcrossAccountsAndMidnight:
    @pytest.mark.spec("AML-1")
    @pytest.mark.spec("AML-3")
    async def test_two_accounts_of_one_person_across_a_day_boundary(self, api: Api) -> None:
        async with api.client() as client:
            jane, second = await two_accounts_over_midnight(api, client)
            result = await monitor(api)
            assert result.movements == 3
            ctrs = await rows(api, AmlCtr)
            # Monday holds 9000 only; Tuesday 9500 + 9900 across both accounts.
            (ctr,) = ctrs
            assert (ctr.user_id, ctr.day, ctr.direction) == (
                jane.trader.user_id,
                "2026-01-06",
                "in",
            )
            assert ctr.total == Decimal("19400.00")
            assert sorted(ctr.accounts) == sorted([jane.account_id, second])
            assert ctr.due_day == "2026-01-21"
            alerts = {a.rule: a for a in await rows(api, AmlAlert)}
            assert set(alerts) == {"structuring", "structuring_accounts"}
            facts = alerts["structuring"].facts
            assert facts["count"] == 3
            assert [m["day"] for m in facts["movements"]] == [
                "2026-01-05",
                "2026-01-06",
                "2026-01-06",
            ]
            # Masked accounts in the facts.
            assert all(m["account"].startswith("***") for m in facts["movements"])
            assert jane.account_id not in str(facts)
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            listed = await carol.get(f"{AML}/ctrs")
            assert listed.status_code == 200, listed.text
            assert [c["total"] for c in listed.json()] == ["19400.00"]

    async def test_a_restart_resumes_from_the_checkpoint_without_duplicates(self, api: Api) -> None:
        async with api.client() as client:
            jane, _ = await two_accounts_over_midnight(api, client)
            await LedgerSequencer(api.engine, clock=api.clock).drain()
            services = aml_of(api)
            # A first monitor reads part of the ledger, then "crashes".
            small = AmlConsumer(
                sessions=services.sessions, clock=api.clock, monitor=services.monitor, batch_size=5
            )
            await small.run_once()
            # A new process: a fresh consumer from the stored checkpoint.
            fresh = AmlConsumer(
                sessions=services.sessions, clock=api.clock, monitor=services.monitor
            )
            await fresh.run()
            again = await fresh.run()
            assert again.events == 0
            # A further deposit folds into the same structuring window's alert.
            await deposit(jane, jane.account_id, "9100.00", "d4")
            await monitor(api)
        alerts = await rows(api, AmlAlert)
        assert sorted(a.rule for a in alerts) == ["structuring", "structuring_accounts"]
        structuring = next(a for a in alerts if a.rule == "structuring")
        assert structuring.occurrences == 2
        assert len(structuring.movement_ids) == 4
        assert len(await rows(api, AmlMovement)) == 4
        assert len(await rows(api, AmlCtr)) == 1


class TestCases:
    async def _case(
        self, api: Api, client: Any, *, suspect: bool = True
    ) -> tuple[Any, dict[str, Any]]:
        await two_accounts_over_midnight(api, client)
        await monitor(api)
        carol = await staff(api, client, "carol", Role.COMPLIANCE)
        alerts = (await carol.get(f"{AML}/alerts")).json()
        opened = await carol.post(
            f"{AML}/cases",
            {
                "alert_ids": [a["id"] for a in alerts],
                "suspect_identified": suspect,
                "assignee": carol.user_id,
            },
        )
        assert opened.status_code == 201, opened.text
        return carol, opened.json()

    @pytest.mark.spec("AML-3")
    async def test_the_sar_clock_runs_30_days_from_detection_with_reminders_once(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol, case = await self._case(api, client)
            detected = datetime.fromisoformat(case["detected_at"])
            due = datetime.fromisoformat(case["sar_due"])
            assert (due - detected).days == 30
            assert len(case["alerts"]) == 2
            assert len(case["movements"]) == 3
            services = aml_of(api)

            async def remind() -> int:
                # The deadline job's pass over every open case.
                return await run_deadlines_once(services)

            api.clock.advance(seconds=22 * DAY)  # 8 days before
            assert await remind() == 0
            api.clock.advance(seconds=1 * DAY + 60)  # 7 days before
            assert await remind() == 1
            assert await remind() == 0  # once
            api.clock.advance(seconds=5 * DAY)  # 2 days before
            assert await remind() == 1
            assert await remind() == 0
            api.clock.advance(seconds=3 * DAY)  # past the deadline
            assert await remind() == 1
            assert await remind() == 0
            await carol.sign_in_again()
            got = (await carol.get(f"{AML}/cases/{case['id']}")).json()
            assert got["overdue"] is True
            assert got["reminders_sent"] == [7, 2]
        async with unit_of_work(services.sessions) as session:
            mails = (
                await session.execute(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.template == "aml_sar_deadline")
                )
            ).scalar_one()
        assert mails == 3

    @pytest.mark.spec("AML-3")
    async def test_without_a_suspect_the_deadline_is_60_days(self, api: Api) -> None:
        async with api.client() as client:
            carol, case = await self._case(api, client, suspect=False)
            path = f"{AML}/cases/{case['id']}"
            noted = await carol.post(f"{path}/notes", {"text": "Asked the customer for payslips."})
            assert noted.status_code == 201, noted.text
            assert [n["text"] for n in noted.json()["notes"]] == [
                "Asked the customer for payslips."
            ]
            empty = await carol.post(f"{path}/notes", {"text": "   "})
            assert empty.status_code == 422
            unknown = await carol.post(f"{path}/evidence", {"movement_ids": ["deposit:nope"]})
            assert unknown.status_code == 404
            malformed = await carol.post(f"{path}/evidence", {"movement_ids": ["x' OR 1=1"]})
            assert malformed.status_code == 422
            mine = [m["id"] for m in case["movements"]][:1]
            attached = await carol.post(f"{path}/evidence", {"movement_ids": mine})
            assert attached.status_code == 200, attached.text
            assert len(attached.json()["movements"]) == 3
        detected = datetime.fromisoformat(case["detected_at"])
        assert (datetime.fromisoformat(case["sar_due"]) - detected).days == 60
        notes = await audit_events(api, "aml:case:noted")
        assert "payslips" not in str(notes)  # the ledger names the note, not its text

    async def test_closing_a_high_scoring_case_without_sar_takes_two_people(self, api: Api) -> None:
        async with api.client() as client:
            carol, case = await self._case(api, client)
            dave = await staff(api, client, "dave", Role.COMPLIANCE)
            path = f"{AML}/cases/{case['id']}/decide"
            first = await carol.post(path, {"decision": "no_sar", "reason": "salary and bonus"})
            assert first.json()["status"] == "pending_second"
            same = await carol.post(path, {"decision": "no_sar", "reason": "again"})
            assert same.status_code == 409
            second = await dave.post(path, {"decision": "no_sar", "reason": "agreed: payroll"})
            assert second.status_code == 200, second.text
            assert second.json()["status"] == "closed"
            assert second.json()["first_decider"] == carol.user_id
            assert second.json()["decided_by"] == dave.user_id
            again = await dave.post(path, {"decision": "sar", "reason": "changed my mind"})
            assert again.status_code == 409
        # Every change is a ledger event, naming who did it.
        opened = await audit_events(api, "aml:case:opened")
        first_decision = await audit_events(api, "aml:case:first_decision")
        decided = await audit_events(api, "aml:case:decided")
        assert [e["data"]["case_id"] for e in opened] == [case["id"]]
        assert [e["actor"]["id"] for e in first_decision] == [carol.user_id]
        assert [(e["actor"]["id"], e["data"]["decision"]) for e in decided] == [
            (dave.user_id, "no_sar")
        ]

    @pytest.mark.spec("AML-1")
    async def test_a_sar_is_exported_as_valid_fincen_xml_and_refused_when_incomplete(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol, case = await self._case(api, client)
            decided = await carol.post(
                f"{AML}/cases/{case['id']}/decide", {"decision": "sar", "reason": "structuring"}
            )
            assert decided.json()["status"] == "sar_required"
            # No KYC record on file yet: a final export names what is missing and stores nothing.
            refused = await carol.post(f"{AML}/cases/{case['id']}/sar", {"final": True})
            assert refused.status_code == 422
            assert "subject.tin" in refused.json()["missing"]
            assert await rows(api, AmlFiling) == []
            await jane_on_file(api, case["user_id"])
            done = await carol.post(
                f"{AML}/cases/{case['id']}/sar", {"final": True, "narrative": "Three deposits."}
            )
            assert done.status_code == 201, done.text
            document = await carol.post(
                f"{AML}/filings/{done.json()['id']}/download",
                {"reason": "checking the SAR export"},
            )
            root = fincen.parse(document.content)
            assert fincen.validate(root) == []
            assert root.find(fincen.q("FormTypeCode")).text == "SARX"  # type: ignore[union-attr]
            # The tax id is in the (encrypted) export, never in the ledger or the table.
            assert JANE_TIN in document.content
            (stored,) = await rows(api, AmlFiling)
            assert JANE_TIN not in stored.document_enc.blob
            assert all(JANE_TIN.decode() not in str(e) for e in await audit_events(api))
            # Kept five years: deletion refused.
            gone = await carol.delete(f"{AML}/filings/{done.json()['id']}")
            assert gone.status_code == 409
        assert (await rows(api, AmlCase))[0].status == "sar_filed"

    @pytest.mark.spec("AML-1")
    async def test_a_final_sar_needs_a_us_tin_on_the_kyc_record(self, api: Api) -> None:
        async with api.client() as client:
            carol, case = await self._case(api, client)
            await carol.post(
                f"{AML}/cases/{case['id']}/decide", {"decision": "sar", "reason": "structuring"}
            )
            # Jane's approved application is a German resident's, with a German tax number:
            # not the nine-digit TIN a FinCEN SAR needs, so the final export is refused.
            foreign = application(
                identity={**JANE, "nationality": "DE", "tax_id_country": "DE", "tax_id": "12345"},
                address={
                    "line1": "Hauptstrasse 5",
                    "line2": None,
                    "city": "Berlin",
                    "region": None,
                    "postal_code": "10115",
                    "country": "DE",
                },
            )
            await imported(api, case["user_id"], foreign)
            bad = await carol.post(f"{AML}/cases/{case['id']}/sar", {"final": True})
            assert bad.status_code == 422, bad.text
            assert any("TIN" in p for p in bad.json()["problems"])
        assert await rows(api, AmlFiling) == []
        assert (await rows(api, AmlCase))[0].status == "sar_required"

    @pytest.mark.spec("AML-3")
    async def test_a_ctr_exports_as_valid_fincen_xml(self, api: Api) -> None:
        async with api.client() as client:
            jane, _ = await two_accounts_over_midnight(api, client)
            await monitor(api)
            await jane_on_file(api, jane.trader.user_id)
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            (ctr,) = (await carol.get(f"{AML}/ctrs")).json()
            done = await carol.post(f"{AML}/ctrs/{ctr['id']}/export", {"final": True})
            assert done.status_code == 201, done.text
            xml = (
                await carol.post(
                    f"{AML}/filings/{done.json()['id']}/download",
                    {"reason": "checking the CTR export"},
                )
            ).content
            root = fincen.parse(xml)
            assert fincen.validate(root) == []
            assert root.get("TotalAmount") == "19400"
            assert (await carol.get(f"{AML}/ctrs/{ctr['id']}")).json()["status"] == "filed"
            # A later deposit of that same day: an amended CTR is owed.
            await deposit(jane, jane.account_id, "100.00", "d-late")
            await monitor(api)
            late = (await carol.get(f"{AML}/ctrs/{ctr['id']}")).json()
            assert late["total"] == "19500.00"
            assert late["amended"] is True


class TestPermissionsAndBadInput:
    async def test_a_customer_is_denied_and_bad_input_changes_nothing(self, api: Api) -> None:
        async with api.client() as client:
            jane, _ = await two_accounts_over_midnight(api, client)
            await monitor(api)
            assert (await jane.get(f"{AML}/alerts")).status_code in (403, 404)
            assert (await jane.post(f"{AML}/cases", {"alert_ids": []})).status_code in (403, 404)
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            alerts = (await carol.get(f"{AML}/alerts")).json()
            for body in (
                {"alert_ids": []},
                {"alert_ids": ["not-an-id"]},
                {"alert_ids": [alerts[0]["id"]], "extra": 1},
                {"alert_ids": [alerts[0]["id"]], "assignee": jane.trader.user_id},
            ):
                response = await carol.post(f"{AML}/cases", body)
                assert response.status_code == 422, response.text
                assert response.headers["content-type"].startswith("application/problem+json")
            missing = await carol.post(
                f"{AML}/cases", {"alert_ids": ["0" * 8 + "-0000-7000-8000-" + "0" * 12]}
            )
            assert missing.status_code == 404
            assert (await carol.get(f"{AML}/alerts", params={"status": "bogus"})).status_code == 422
            # Support staff hold none of the AML permissions.
            sam = await staff(api, client, "sam", Role.SUPPORT)
            assert (await sam.get(f"{AML}/alerts")).status_code == 403
            assert (await sam.get(f"{AML}/ctrs")).status_code == 403
            assert (await sam.get(f"{AML}/cases")).status_code == 403
            denied = await audit_events(api, "access:permission:checked")
            assert any(
                e["actor"]["id"] == sam.user_id and e["data"].get("allowed") is False
                for e in denied
            )
        assert await rows(api, AmlCase) == []
        assert all(a.case_id is None for a in await rows(api, AmlAlert))


class TestWithdrawalsAndProfiles:
    @pytest.mark.spec("AML-1")
    @pytest.mark.spec("AML-2")
    async def test_money_in_and_straight_out_by_a_high_risk_customer_alerts(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone="+14155550131")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            # Her approved application: a US citizen living in Iran who expects to move
            # 1000 USD a month (800 in, 200 out).
            await imported(
                api,
                alice.trader.user_id,
                application(
                    address={
                        "line1": "12 Vali Asr Street",
                        "line2": None,
                        "city": "Tehran",
                        "region": None,
                        "postal_code": "1511733111",
                        "country": "IR",
                    },
                    profile={
                        "expected_monthly_deposits": "800",
                        "expected_monthly_withdrawals": "200",
                    },
                ),
            )
            await deposit(alice, alice.account_id, "6000.00", "in-1")
            asked = await request_withdrawal(alice, "5000.00")
            assert asked.status_code == 202, asked.text
            sent = await confirm(api, alice, asked.json()["id"])
            assert sent.json()["status"] == "sent", sent.text
            result = await monitor(api)
        assert result.movements == 2
        alerts = {a.rule: a for a in await rows(api, AmlAlert)}
        assert set(alerts) == {"rapid_in_out", "high_risk_geography", "profile_deviation"}
        rapid = alerts["rapid_in_out"].facts
        assert (rapid["deposited"], rapid["withdrawn"], rapid["traded"]) == (
            "6000.00",
            "5000.00",
            "0.00",
        )
        assert alerts["high_risk_geography"].facts["countries"] == ["IR"]
        assert alerts["profile_deviation"].facts["expected_from"] == "profile"
        moved = {m.kind: m for m in await rows(api, AmlMovement)}
        assert moved["withdrawal"].rail == "ach"
        assert moved["withdrawal"].amount == Decimal("5000.00")


class TestRetention:
    @pytest.mark.spec("AML-3")
    async def test_records_are_kept_five_years_then_purged(self, api: Api) -> None:
        async with api.client() as client:
            await two_accounts_over_midnight(api, client)
            await monitor(api)
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            (ctr,) = (await carol.get(f"{AML}/ctrs")).json()
            draft = await carol.post(f"{AML}/ctrs/{ctr['id']}/export", {"final": False})
            assert draft.status_code == 201, draft.text
            assert "subject.tin" in draft.json()["missing"]
            services = aml_of(api)

            async def purge() -> dict[str, int]:
                async with unit_of_work(services.sessions) as session:
                    return await services.filings.purge(session, actor=Party("system", "test"))

            api.clock.advance(seconds=(5 * 365) * DAY)  # 5 years less the leap day
            assert (await purge())["filings"] == 0
            await carol.sign_in_again()
            refused = await carol.delete(f"{AML}/filings/{draft.json()['id']}")
            assert refused.status_code == 409
            assert refused.headers["content-type"].startswith("application/problem+json")
            api.clock.advance(seconds=2 * DAY)
            counts = await purge()
        assert counts["filings"] == 1
        assert counts["ctrs"] == 1
        assert counts["movements"] == 3
        assert counts["alerts"] == 2
        assert await rows(api, AmlFiling) == []
