"""Automatic surveillance actions (MAN-5), SQLite and PostgreSQL: the policy maps alert
type and score to actions applied in the stream's own transaction when an alert is raised
(exactly once, whatever restarts), each audited; an automatic suspension refuses the
account's next order at once; compliance reverses an action with a reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    chain,
    expected_alerts,
    fresh_surveillance,
    surveillance_of,
    trade_a_market,
)
from tests.support.access import staff
from tests.support.api import Api, audit_events, is_problem, running_api
from tests.support.cases import Cases
from tests.support.trading import Trader, signed_in_trader, trading_of
from tradeguard.access.domain import AccessLevel, Role
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import PERMISSION_CHECKED
from tradeguard.ledger.domain import Party
from tradeguard.risk.domain import AccountStatus
from tradeguard.surveillance.models import SurveillanceAction, SurveillanceAlert

ACTIONS = "/api/v1/surveillance/actions"
POLICY = "/api/v1/surveillance/policy"
UNKNOWN = "0190c5a0-0000-7000-8000-000000000000"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_OPEN)


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        yield running


async def set_policy(member: Trader, *rules: tuple[str, int, str]) -> None:
    response = await member.put(
        POLICY,
        {
            "rules": [{"alert_type": t, "min_score": s, "action": a} for t, s, a in rules],
            "reason": "surveillance policy v1",
        },
    )
    assert response.status_code == 200, response.text


async def stored_actions(api: Api) -> list[SurveillanceAction]:
    async with surveillance_of(api).unit_of_work() as session:
        query = select(SurveillanceAction).order_by(SurveillanceAction.id)
        return list((await session.execute(query)).scalars().all())


async def account_status(api: Api, account_id: str) -> str:
    async with unit_of_work(trading_of(api).sessions) as session:
        return (await trading_of(api).accounts.get(session, account_id)).status


async def spoofer_put_closing_only(api: Api, carol: Trader) -> tuple[str, dict[str, Any]]:
    """The morning market through the stream with a closing-only policy for spoofing: the
    spoofer's account and the action that put it closing-only."""
    await set_policy(carol, ("SPOOFING", 0, "closing_only"))
    market = await trade_a_market(api)
    await chain(api)
    await surveillance_of(api).consumer.run()
    (sam,) = market.sam.accounts
    (action,) = (await carol.get(ACTIONS, params={"account_id": sam})).json()
    return sam, action


def order_body(side: str = "buy", price: str = "48.00", quantity: int = 10) -> dict[str, Any]:
    return {
        "client_order_id": f"o-{side}-{price}-{quantity}",
        "symbol": "ACME",
        "side": side,
        "type": "limit",
        "quantity": quantity,
        "limit_price": Decimal(price),
    }


class TestAutomaticSuspension:
    @pytest.mark.spec("MAN-5")
    async def test_an_automatic_suspension_refuses_the_next_order_at_once_is_audited_and_reversible(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            await set_policy(carol, ("WASH_TRADE", 50, "suspend"), ("WASH_TRADE", 0, "notify"))
            ursula = await signed_in_trader(api, client, "ursula")
            market = await trade_a_market(api, ursula_id=ursula.user_id)
            a1, a2 = market.ursula.accounts
            # A bid resting far from the market: the suspension must cancel it.
            resting = await ursula.order(a1, **order_body("buy", "48.00"))
            assert resting.status_code == 201, resting.text
            before = await ursula.order(
                a2, **{**order_body("buy", "48.01"), "client_order_id": "x"}
            )
            assert before.status_code == 201, before.text
            await chain(api)
            result = await surveillance_of(api).consumer.run()
            # The very next order call is refused, with a stable code.
            refused = await ursula.order(a1, **{**order_body(), "client_order_id": "after-1"})
            refused_other = await ursula.order(a2, **{**order_body(), "client_order_id": "after-2"})
            resting_now = await ursula.get(f"/api/v1/accounts/{a1}/orders/{resting.json()['id']}")
            listed = await carol.get(ACTIONS, params={"account_id": a1})
            suspension = next(a for a in listed.json() if a["action"] == "suspend")
            no_reason = await carol.post(f"{ACTIONS}/{suspension['id']}/reverse", {})
            short = await carol.post(f"{ACTIONS}/{suspension['id']}/reverse", {"reason": "ok"})
            still = await ursula.order(a1, **{**order_body(), "client_order_id": "after-3"})
            reversed_ = await carol.post(
                f"{ACTIONS}/{suspension['id']}/reverse",
                {"reason": "reviewed: crosses were a broker error, not the client"},
            )
            twice = await carol.post(
                f"{ACTIONS}/{suspension['id']}/reverse", {"reason": "once more please"}
            )
            restored = await ursula.order(
                a1, **{**order_body(quantity=11), "client_order_id": "after-4"}
            )
            other_still = await ursula.order(a2, **{**order_body(), "client_order_id": "after-5"})
        assert result.alerts >= 1
        # Both of the owner's accounts, notify and suspend each.
        assert result.actions == 4
        assert is_problem(refused, 422, "order-rejected"), refused.text
        assert refused.json()["code"] == "ACCOUNT_NOT_ACTIVE"
        assert refused_other.json()["code"] == "ACCOUNT_NOT_ACTIVE"
        assert resting_now.json()["status"] == "cancelled"
        assert {(a["action"], a["status"]) for a in listed.json()} == {
            ("notify", "applied"),
            ("suspend", "applied"),
        }
        assert suspension["detail"]["from"] == "active"
        assert suspension["detail"]["to"] == "suspended"
        assert resting.json()["id"] in suspension["detail"]["cancelled_order_ids"]
        # Audited: the action by the surveillance system, the status change it made.
        applied = await audit_events(api, "surveillance:action:applied")
        assert {(e["data"]["account_id"], e["data"]["action"]) for e in applied} == {
            (a1, "notify"),
            (a1, "suspend"),
            (a2, "notify"),
            (a2, "suspend"),
        }
        assert all(e["actor"] == {"kind": "system", "id": "surveillance"} for e in applied)
        changed = [
            e
            for e in await audit_events(api, "trading:account:status_changed")
            if e["subject"]["id"] == a1
        ]
        assert [(e["data"]["from"], e["data"]["to"]) for e in changed] == [
            ("active", "suspended"),
            ("suspended", "active"),
        ]
        assert changed[0]["actor"] == {"kind": "system", "id": "surveillance"}
        assert suspension["alert_id"] in changed[0]["data"]["reason"]
        # Reversal: a reason is required; then trading is back for that account only.
        assert is_problem(no_reason, 422, "invalid-input")
        assert is_problem(short, 422, "invalid-input")
        assert still.json()["code"] == "ACCOUNT_NOT_ACTIVE"
        assert reversed_.status_code == 200, reversed_.text
        assert reversed_.json()["status"] == "reversed"
        assert reversed_.json()["reversed_by"] == f"staff:{carol.user_id}"
        assert is_problem(twice, 409, "action-not-reversible")
        assert restored.status_code == 201, restored.text
        assert other_still.json()["code"] == "ACCOUNT_NOT_ACTIVE"
        reversal = await audit_events(api, "surveillance:action:reversed")
        assert [(e["data"]["action_id"], e["data"]["reason"]) for e in reversal] == [
            (suspension["id"], "reviewed: crosses were a broker error, not the client")
        ]
        assert reversal[0]["actor"] == {"kind": "staff", "id": carol.user_id}

    async def test_a_reversal_does_not_undo_a_later_decision_about_the_account(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            sam, action = await spoofer_put_closing_only(api, carol)
            # Somebody suspends the account through trading afterwards.
            await trading_of(api).desk.set_account_status(
                account_id=sam,
                status=AccountStatus.SUSPENDED,
                trading_state=None,
                reason="legal hold",
                actor=Party("staff", "someone"),
            )
            refused = await carol.post(
                f"{ACTIONS}/{action['id']}/reverse", {"reason": "closing-only no longer needed"}
            )
            unknown = await carol.post(f"{ACTIONS}/{UNKNOWN}/reverse", {"reason": "no such"})
        assert action["action"] == "closing_only"
        assert is_problem(refused, 409, "action-not-reversible"), refused.text
        assert "suspended" in refused.json()["detail"]
        assert await account_status(api, sam) == "suspended"
        assert is_problem(unknown, 404, "action-not-found")
        assert await audit_events(api, "surveillance:action:reversed") == []

    async def test_a_reversal_refuses_when_the_status_changed_and_changed_back_since(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            sam, action = await spoofer_put_closing_only(api, carol)
            # A human decides after the action: suspended, then closing-only again, a
            # decision of their own that merely looks like the action's status.
            for status, reason in [
                (AccountStatus.SUSPENDED, "legal hold"),
                (AccountStatus.CLOSING_ONLY, "hold lifted, keep closing-only: our call"),
            ]:
                await trading_of(api).desk.set_account_status(
                    account_id=sam,
                    status=status,
                    trading_state=None,
                    reason=reason,
                    actor=Party("staff", "someone"),
                )
            refused = await carol.post(
                f"{ACTIONS}/{action['id']}/reverse", {"reason": "closing-only no longer needed"}
            )
            shown = await carol.get(ACTIONS, params={"account_id": sam})
        assert action["action"] == "closing_only"
        assert action["detail"]["status_event_id"]
        assert is_problem(refused, 409, "action-not-reversible"), refused.text
        assert "changed since" in refused.json()["detail"]
        assert await account_status(api, sam) == "closing_only"
        assert [a["status"] for a in shown.json()] == ["applied"]
        assert await audit_events(api, "surveillance:action:reversed") == []

    async def test_a_reversal_takes_the_previous_status_from_the_ledger_not_the_row(
        self, api: Api
    ) -> None:
        """The second outside review: `detail.from` edited in the table (to `closed`) made
        a reversal set the wrong status. The ledger's status change disagrees: refused."""
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            sam, action = await spoofer_put_closing_only(api, carol)
            async with surveillance_of(api).unit_of_work() as session:
                row = await session.get(SurveillanceAction, action["id"])
                assert row is not None
                row.detail = {**row.detail, "from": "closed"}
            refused = await carol.post(
                f"{ACTIONS}/{action['id']}/reverse", {"reason": "closing-only no longer needed"}
            )
            async with surveillance_of(api).unit_of_work() as session:
                row = await session.get(SurveillanceAction, action["id"])
                assert row is not None
                row.detail = {**row.detail, "from": action["detail"]["from"]}
            reversed_ = await carol.post(
                f"{ACTIONS}/{action['id']}/reverse", {"reason": "closing-only no longer needed"}
            )
        assert is_problem(refused, 409, "action-not-reversible"), refused.text
        assert "disagrees with the ledger" in refused.json()["detail"]
        assert reversed_.status_code == 200, reversed_.text
        assert await account_status(api, sam) == action["detail"]["from"]


class TestNotify:
    @pytest.mark.spec("MAN-5")
    async def test_a_notify_rule_mails_compliance_once_per_alert_with_the_alert(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            ada = await staff(api, client, "ada", Role.ADMIN)
            await set_policy(carol, ("WASH_TRADE", 0, "notify"))
        await trade_a_market(api)
        await chain(api)
        await surveillance_of(api).consumer.run()
        async with surveillance_of(api).unit_of_work() as session:
            wash = [
                a
                for a in (await session.execute(select(SurveillanceAlert))).scalars().all()
                if a.alert_type == "WASH_TRADE"
            ]
        mails = [m for m in await api.outbox() if m["template"] == "surveillance_alert"]
        rows = await stored_actions(api)
        assert wash
        # One email per alert, to compliance only (not the admin, not the traders).
        assert sorted(m["to"] for m in mails) == ["carol@example.com"] * len(wash)
        assert {m["body"].split("Alert:", 1)[1].split()[0] for m in mails} == {a.id for a in wash}
        assert all(
            m["subject"].startswith("tradeguard surveillance alert: WASH_TRADE") for m in mails
        )
        # Each of an alert's accounts has its notify action; only the first mailed.
        emailed = sorted(r.detail["emailed"] for r in rows if r.action == "notify")
        assert sum(emailed) == len(wash)
        assert len(emailed) == sum(len(set(a.accounts)) for a in wash)
        assert ada.user_id not in {m["to"] for m in mails}


class TestExactlyOnce:
    @pytest.mark.spec("MAN-5")
    async def test_actions_are_applied_once_when_the_stream_restarts_at_every_batch(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            await set_policy(
                carol,
                ("WASH_TRADE", 0, "notify"),
                ("WASH_TRADE", 0, "closing_only"),
                ("SPOOFING", 0, "cancel_orders"),
                ("SPOOFING", 0, "suspend"),
            )
        market = await trade_a_market(api)
        await chain(api)
        expected = await expected_alerts(api)
        while True:
            # A new process each pass (nothing in memory), a few events at a time.
            result = await fresh_surveillance(api, batch_size=3).consumer.run_once()
            if result.events == 0:
                break
        # And once more from the start of what is already judged: nothing new.
        again = await fresh_surveillance(api, batch_size=3).consumer.run()
        rows = await stored_actions(api)
        keys = [(r.alert_id, r.account_id, r.action) for r in rows]
        assert len(keys) == len(set(keys))
        wash = [a for a in expected if a.alert_type.value == "WASH_TRADE"]
        spoof = [a for a in expected if a.alert_type.value != "WASH_TRADE"]
        assert len(rows) == 2 * 2 * len(wash) + 2 * len(spoof)
        assert again.actions == 0
        applied = await audit_events(api, "surveillance:action:applied")
        skipped = await audit_events(api, "surveillance:action:skipped")
        assert len(applied) + len(skipped) == len(rows)
        assert await account_status(api, market.sam.accounts[0]) == "suspended"
        assert {await account_status(api, a) for a in market.ursula.accounts} == {"closing_only"}
        assert await account_status(api, market.mia.accounts[0]) == "active"


BAD_POLICIES: list[dict[str, Any]] = [
    {"rules": [{"alert_type": "SPOOFING", "min_score": 101, "action": "suspend"}]},
    {"rules": [{"alert_type": "SPOOFING", "min_score": 50, "action": "ban"}]},
    {"rules": [{"alert_type": "PUMP", "min_score": 50, "action": "notify"}]},
    {
        "rules": [
            {"alert_type": "SPOOFING", "min_score": 50, "action": "notify"},
            {"alert_type": "SPOOFING", "min_score": 70, "action": "notify"},
        ]
    },
    {"rules": [{"alert_type": "SPOOFING", "min_score": 50, "action": "notify", "x": 1}]},
    {"rules": []},
]


class TestPolicy:
    async def test_the_policy_is_replaced_whole_and_audited(self, api: Api) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            empty = await carol.get(POLICY)
            await set_policy(carol, ("SPOOFING", 80, "suspend"), ("LAYERING", 60, "notify"))
            await set_policy(carol, ("SPOOFING", 90, "suspend"))
            now = await carol.get(POLICY)
        assert empty.json() == {"rules": []}
        assert now.json() == {
            "rules": [{"alert_type": "SPOOFING", "min_score": 90, "action": "suspend"}]
        }
        changes = await audit_events(api, "surveillance:policy:changed")
        assert [len(e["data"]["before"]) for e in changes] == [0, 2]
        assert changes[-1]["data"]["after"] == now.json()["rules"]
        assert changes[-1]["actor"] == {"kind": "staff", "id": carol.user_id}

    async def test_a_bad_policy_is_a_422_problem_and_the_policy_stays(self, api: Api) -> None:
        cases = Cases()
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            await set_policy(carol, ("WASH_TRADE", 50, "notify"))
            for index, body in enumerate(BAD_POLICIES):
                # Every body lacks a reason or has a bad rule.
                with_reason = {"reason": "tighten it", **body} if body["rules"] else body
                response = await carol.put(POLICY, with_reason)
                now = await carol.get(POLICY)
                changes = await audit_events(api, "surveillance:policy:changed")
                with cases.case(f"body{index}"):
                    assert is_problem(response, 422, "invalid-input"), response.text
                    assert now.json()["rules"] == [
                        {"alert_type": "WASH_TRADE", "min_score": 50, "action": "notify"}
                    ]
                    assert len(changes) == 1
        cases.check()

    @pytest.mark.spec("MAN-5", "RBAC-4")
    async def test_only_compliance_operators_set_the_policy_or_reverse_and_refusals_are_audited(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", Role.ADMIN)
            viewer = await staff(api, client, "vera", Role.COMPLIANCE, AccessLevel.READ_ONLY)
            trader = await signed_in_trader(api, client, "tess")
            body = {
                "rules": [{"alert_type": "SPOOFING", "min_score": 0, "action": "suspend"}],
                "reason": "suspend everyone",
            }
            by_admin = await ada.put(POLICY, body)
            by_viewer = await viewer.put(POLICY, body)
            viewer_reads = await viewer.get(POLICY)
            by_trader = await trader.post(f"{ACTIONS}/{UNKNOWN}/reverse", {"reason": "let me"})
            trader_lists = await trader.get(ACTIONS)
        assert is_problem(by_admin, 403, "forbidden")
        assert is_problem(by_viewer, 403, "forbidden")
        assert viewer_reads.json() == {"rules": []}
        assert is_problem(by_trader, 403, "forbidden")
        assert is_problem(trader_lists, 403, "forbidden")
        denied = {
            (e["actor"]["id"], e["data"]["permission"])
            for e in await audit_events(api, PERMISSION_CHECKED)
            if not e["data"]["allowed"]
        }
        assert (ada.user_id, "compliance:actions") in denied
        assert (viewer.user_id, "compliance:actions") in denied
        assert (trader.user_id, "compliance:actions") in denied
        assert await audit_events(api, "surveillance:policy:changed") == []
