"""The staff account routes under /api/v1/admin/accounts in the customer's own access log
(IAC-4: log all access, shown to the person), found by the black-box review of issue #8:
one line per customer touched, in the transaction of the read or change, nothing for a
failed call, nobody else's log touched; numbers masked; no access log, no staff access."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.api import Api, audit_events, is_problem
from tests.support.backoffice import (
    BACKOFFICE,
    REASON,
    UNKNOWN_ID,
    Customer,
    access_log,
    customer,
    events_of,
    staff,
)
from tests.support.cases import Cases
from tests.support.trading import (
    Trader,
    account_body,
    add_instrument,
    funded_account,
    signed_in_staff,
    signed_in_trader,
    trading_of,
)
from tradeguard.access.domain import Role

ADMIN_ACCOUNTS = "/api/v1/admin/accounts"
MASKED_NUMBER = re.compile(r"^TG\*{4}\d{4}$")


@dataclass
class Desk:
    """Two customers with a funded account each, and an admin at the staff desk."""

    api: Api
    alice: Customer
    bob: Customer
    ada: Trader

    def account(self, suffix: str = "") -> str:
        return f"{ADMIN_ACCOUNTS}/{self.alice.account_id}{suffix}"


@pytest.fixture
async def desk(api: Api) -> AsyncIterator[Desk]:
    await add_instrument(api, "GME", "20.00")
    async with (
        api.client() as client,
        api.client("198.51.100.9") as other,
        api.client("198.51.100.20") as staff_client,
    ):
        alice = await customer(api, client, phone=False)
        bob = await customer(api, other, "bob", phone=False)
        ada = await signed_in_staff(api, staff_client, "ada", Role.ADMIN)
        yield Desk(api, alice, bob, ada)


async def resting_order(desk: Desk) -> str:
    """An open buy order of alice's below the market, inside the price band (it rests)."""
    placed = await desk.alice.trader.order(
        desk.alice.account_id,
        client_order_id="rest-1",
        symbol="GME",
        side="buy",
        type="limit",
        quantity=1,
        limit_price="19.90",
    )
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "new"
    return str(placed.json()["id"])


# One staff call per route on alice's account: (the call, the action alice's log shows, the
# reason shown, whether the line names the account).
Call = Callable[[Desk], Awaitable[httpx.Response]]


async def list_alices(desk: Desk) -> httpx.Response:
    return await desk.ada.get(ADMIN_ACCOUNTS, params={"user_id": desk.alice.user_id})


async def view(desk: Desk) -> httpx.Response:
    return await desk.ada.get(desk.account())


async def open_for(desk: Desk) -> httpx.Response:
    return await desk.ada.post(ADMIN_ACCOUNTS, {"user_id": desk.alice.user_id, "type": "margin"})


async def adjust(desk: Desk) -> httpx.Response:
    return await desk.ada.post(
        desk.account("/adjustments"), {"amount": "25.00", "reason": "goodwill credit, ticket 88"}
    )


async def change_status(desk: Desk) -> httpx.Response:
    return await desk.ada.patch(
        desk.account(), {"status": "closing_only", "reason": "customer asked to wind down"}
    )


async def change_limits(desk: Desk) -> httpx.Response:
    return await desk.ada.put(
        desk.account("/limits"), {"max_order_notional": "2500.00", "reason": "new customer"}
    )


async def record_locate(desk: Desk) -> httpx.Response:
    return await desk.ada.post(
        desk.account("/locates"), {"symbol": "GME", "quantity": 10, "source": "Lender X desk"}
    )


async def cancel(desk: Desk) -> httpx.Response:
    order_id = await resting_order(desk)
    return await desk.ada.delete(desk.account(f"/orders/{order_id}"))


HALTS = "/api/v1/admin/halts"
HALT_REASON = "suspected account takeover, ticket 12"


async def halt_account(desk: Desk) -> httpx.Response:
    return await desk.ada.post(
        HALTS, {"scope": "account", "target": desk.alice.account_id, "reason": HALT_REASON}
    )


ROUTES: list[tuple[Call, str, str | None, bool]] = [
    (list_alices, "trading_accounts_listed", None, False),
    (view, "trading_account_viewed", None, True),
    (open_for, "trading_account_opened", None, True),
    (adjust, "cash_adjusted", "goodwill credit, ticket 88", True),
    (change_status, "trading_account_status_changed", "customer asked to wind down", True),
    (change_limits, "trading_limits_changed", "new customer", True),
    (record_locate, "locate_recorded", None, True),
    (cancel, "order_cancelled_by_staff", None, True),
    (halt_account, "trading_account_halted", HALT_REASON, True),
]
ROUTE_IDS = ["list", "view", "open", "adjust", "status", "limits", "locate", "cancel", "halt"]


# The order the routes run in one after another on alice's account: a resting order is placed
# for the cancel before wind-down (closing only) would refuse a buy, and the halt comes last.
SEQUENTIAL_ORDER = [
    "list",
    "view",
    "open",
    "adjust",
    "limits",
    "locate",
    "cancel",
    "status",
    "halt",
]


class TestEveryStaffAccountRouteIsInTheCustomersLog:
    @pytest.mark.spec("IAC-4")
    async def test_every_route_writes_one_line_in_the_customers_log_and_none_in_anyone_elses(
        self, desk: Desk
    ) -> None:
        routes = dict(zip(ROUTE_IDS, ROUTES, strict=True))
        cases = Cases()
        for route_id in SEQUENTIAL_ORDER:
            call, action, reason, names_account = routes[route_id]
            before = (await access_log(desk.alice.trader))["items"]
            response = await call(desk)
            alices = await access_log(desk.alice.trader)
            bobs = await access_log(desk.bob.trader)
            with cases.case(route_id):
                assert response.status_code in {200, 201}, response.text
                # Exactly one line more than before this call, the earlier ones untouched.
                assert len(alices["items"]) == len(before) + 1, alices["items"]
                [entry] = [e for e in alices["items"] if e not in before]
                assert entry["action"] == action
                assert entry["description"]
                assert entry["staff_role"] == "ADMIN"
                assert len(entry["staff_pseudonym"]) == 8
                assert entry["reason"] == reason
                if names_account:
                    account_id = (
                        response.json()["id"] if call is open_for else desk.alice.account_id
                    )
                    assert entry["field"] == f"trading_account:{account_id}"
                    assert entry["field_description"]
                else:
                    assert entry["field"] is None
                # The customer sees a role and a pseudonym, never the staff member's id.
                assert desk.ada.user_id not in str(alices)
                assert bobs["items"] == []
        cases.check()

    @pytest.mark.spec("IAC-4")
    async def test_a_reason_is_shown_to_the_customer_as_plain_text(self, desk: Desk) -> None:
        response = await desk.ada.post(
            desk.account("/adjustments"),
            {"amount": "5.00", "reason": "<script>alert(1)</script>Ticket\u202e 4711:\n refund"},
        )
        [entry] = (await access_log(desk.alice.trader))["items"]
        assert response.status_code == 201, response.text
        assert entry["reason"] == "alert(1) Ticket 4711: refund"


class TestKillSwitches:
    """Attack (M2): an account halt cancelled the customer's resting orders and latched their
    account without a line in their access log."""

    @pytest.mark.spec("IAC-4")
    async def test_an_account_halt_and_its_resume_are_lines_with_the_reason(
        self, desk: Desk
    ) -> None:
        order_id = await resting_order(desk)
        halted = await halt_account(desk)
        resumed = await desk.ada.post(
            f"{HALTS}/resume",
            {"scope": "account", "target": desk.alice.account_id, "reason": "customer verified"},
        )
        order = await desk.alice.trader.get(
            f"/api/v1/accounts/{desk.alice.account_id}/orders/{order_id}"
        )
        alices = (await access_log(desk.alice.trader))["items"]
        bobs = (await access_log(desk.bob.trader))["items"]
        assert halted.status_code == 201, halted.text
        assert resumed.status_code == 200, resumed.text
        assert order.json()["status"] == "cancelled"
        # Newest first.
        assert [(e["action"], e["reason"], e["field"]) for e in alices] == [
            (
                "trading_account_resumed",
                "customer verified",
                f"trading_account:{desk.alice.account_id}",
            ),
            ("trading_account_halted", HALT_REASON, f"trading_account:{desk.alice.account_id}"),
        ]
        assert all(e["description"] for e in alices)
        assert bobs == []

    @pytest.mark.parametrize(("scope", "target"), [("market", "*"), ("symbol", "GME")])
    async def test_a_market_or_symbol_halt_names_no_customer_and_writes_no_line(
        self, desk: Desk, scope: str, target: str
    ) -> None:
        await resting_order(desk)
        halted = await desk.ada.post(HALTS, {"scope": scope, "target": target, "reason": REASON})
        resumed = await desk.ada.post(
            f"{HALTS}/resume", {"scope": scope, "target": target, "reason": REASON}
        )
        assert halted.status_code == 201, halted.text
        assert resumed.status_code == 200, resumed.text
        assert (await access_log(desk.alice.trader))["items"] == []
        assert (await access_log(desk.bob.trader))["items"] == []

    async def test_a_market_halt_works_without_the_access_log(self, desk: Desk) -> None:
        trading_of(desk.api).staff_access_log = None
        halted = await desk.ada.post(HALTS, {"scope": "market", "target": "*", "reason": REASON})
        assert halted.status_code == 201, halted.text

    async def test_a_halt_of_an_unknown_account_writes_no_line(self, desk: Desk) -> None:
        response = await desk.ada.post(
            HALTS, {"scope": "account", "target": UNKNOWN_ID, "reason": REASON}
        )
        assert response.status_code == 404, response.text
        assert (await access_log(desk.alice.trader))["items"] == []


BAD_PAGE_REQUESTS: dict[str, dict[str, Any]] = {
    "zero-limit": {"limit": 0},
    "oversized-limit": {"limit": 501},
    "malformed-after": {"after": "not-an-id"},
    "oversized-user-id": {"user_id": "x" * 37},
}


class TestTheWholeListing:
    @pytest.mark.spec("IAC-4")
    async def test_each_customer_on_a_page_gets_one_line_and_customers_off_it_none(
        self, api: Api, desk: Desk
    ) -> None:
        alice, bob, ada = desk.alice, desk.bob, desk.ada
        second = await funded_account(api, alice.trader, "0")  # after bob's: alice, bob, alice
        async with api.client("198.51.100.30") as client:
            carol = await signed_in_trader(api, client, "carol")  # no account
            first_page = await ada.get(ADMIN_ACCOUNTS, params={"limit": 2})
            next_page = await ada.get(ADMIN_ACCOUNTS, params={"after": first_page.json()[-1]["id"]})
            logs = {
                who.username: [e["action"] for e in (await access_log(who))["items"]]
                for who in (alice.trader, bob.trader, carol)
            }
        assert [a["id"] for a in first_page.json()] == [alice.account_id, bob.account_id]
        assert [a["id"] for a in next_page.json()] == [second]
        listed = "trading_accounts_listed"
        # Two pages named alice, one named bob: one line per customer per page.
        assert logs == {"alice": [listed, listed], "bob": [listed], "carol": []}
        events = await events_of(api, "trading:account:listed")
        # The ledger names who was on each page (the permission check names only a filter).
        assert [e["data"] for e in events] == [
            {"user_id": None, "accounts": 2, "customers": sorted([alice.user_id, bob.user_id])},
            {"user_id": None, "accounts": 1, "customers": [alice.user_id]},
        ]
        assert {(e["actor"]["kind"], e["actor"]["id"]) for e in events} == {("staff", ada.user_id)}

    async def test_two_accounts_of_one_customer_on_a_page_are_one_line(
        self, api: Api, desk: Desk
    ) -> None:
        await funded_account(api, desk.alice.trader, "0")
        listed = await list_alices(desk)
        [entry] = (await access_log(desk.alice.trader))["items"]
        assert len(listed.json()) == 2
        assert entry["action"] == "trading_accounts_listed"

    async def test_a_bad_page_request_is_a_problem_and_logs_nothing(self, desk: Desk) -> None:
        cases = Cases()
        for case_id, params in BAD_PAGE_REQUESTS.items():
            response = await desk.ada.get(ADMIN_ACCOUNTS, params=params)
            alices = (await access_log(desk.alice.trader))["items"]
            bobs = (await access_log(desk.bob.trader))["items"]
            with cases.case(case_id):
                assert is_problem(response, 422, "invalid-input"), response.text
                assert alices == []
                assert bobs == []
        cases.check()


REFUSED_CALLS: list[tuple[str, str, str, dict[str, Any] | None, int]] = [
    ("view-unknown", "get", f"/{UNKNOWN_ID}", None, 404),
    (
        "adjust-unknown",
        "post",
        f"/{UNKNOWN_ID}/adjustments",
        {"amount": "5.00", "reason": "credit"},
        404,
    ),
    (
        "adjust-over-free-cash",
        "post",
        "{alice}/adjustments",
        {"amount": "-5000.00", "reason": "debit"},
        422,
    ),
    ("adjust-without-reason", "post", "{alice}/adjustments", {"amount": "5.00"}, 422),
    (
        "close-with-cash",
        "patch",
        "{alice}",
        {"status": "closed", "reason": "customer left us"},
        422,
    ),
    ("halt-by-patch", "patch", "{alice}", {"trading_state": "HALTED", "reason": "no"}, 422),
    ("status-unknown", "patch", f"/{UNKNOWN_ID}", {"status": "active", "reason": "reopen"}, 404),
    (
        "negative-limit",
        "put",
        "{alice}/limits",
        {"max_order_notional": "-1.00", "reason": "x y"},
        422,
    ),
    ("limits-unknown", "put", f"/{UNKNOWN_ID}/limits", {"reason": "reset limits"}, 404),
    (
        "locate-short-source",
        "post",
        "{alice}/locates",
        {"symbol": "NOPE", "quantity": 1, "source": "L"},
        422,
    ),
    (
        "locate-unknown-symbol",
        "post",
        "{alice}/locates",
        {"symbol": "ZZZZ", "quantity": 1, "source": "Lx"},
        404,
    ),
    ("cancel-unknown-order", "delete", f"{{alice}}/orders/{UNKNOWN_ID}", None, 404),
    ("open-for-unknown-user", "post", "", {"user_id": UNKNOWN_ID}, 404),
]


class TestFailedCallsRecordNothing:
    async def test_a_refused_call_writes_no_line(self, desk: Desk) -> None:
        cases = Cases()
        for case_id, method, suffix, body, status in REFUSED_CALLS:
            path = ADMIN_ACCOUNTS + suffix.replace("{alice}", f"/{desk.alice.account_id}")
            if method in {"get", "delete"}:
                response = await getattr(desk.ada, method)(path)
            else:
                response = await getattr(desk.ada, method)(path, body)
            alices = (await access_log(desk.alice.trader))["items"]
            bobs = (await access_log(desk.bob.trader))["items"]
            listed = await events_of(desk.api, "trading:account:listed")
            with cases.case(case_id):
                assert response.status_code == status, response.text
                assert alices == []
                assert bobs == []
                assert listed == []
        cases.check()

    async def test_opening_an_account_for_staff_is_refused_and_logged_nowhere(
        self, desk: Desk
    ) -> None:
        response = await desk.ada.post(ADMIN_ACCOUNTS, {"user_id": desk.ada.user_id})
        assert is_problem(response, 422, "invalid-trading-input"), response.text
        assert (await access_log(desk.ada))["items"] == []

    async def test_a_second_cancel_of_the_same_order_is_a_conflict_and_adds_no_line(
        self, desk: Desk
    ) -> None:
        order_id = await resting_order(desk)
        first = await desk.ada.delete(desk.account(f"/orders/{order_id}"))
        again = await desk.ada.delete(desk.account(f"/orders/{order_id}"))
        log = await access_log(desk.alice.trader)
        assert first.status_code == 200, first.text
        assert is_problem(again, 409, "order-conflict"), again.text
        assert [e["action"] for e in log["items"]] == ["order_cancelled_by_staff"]

    async def test_an_account_id_of_another_customer_in_the_cancel_path_is_not_found(
        self, desk: Desk
    ) -> None:
        order_id = await resting_order(desk)
        response = await desk.ada.delete(
            f"{ADMIN_ACCOUNTS}/{desk.bob.account_id}/orders/{order_id}"
        )
        assert response.status_code == 404, response.text
        assert (await access_log(desk.alice.trader))["items"] == []
        assert (await access_log(desk.bob.trader))["items"] == []


class TestMasking:
    @pytest.mark.spec("IAC-1")
    async def test_staff_views_mask_the_number_the_customer_sees_whole(self, desk: Desk) -> None:
        own = (await account_body(desk.alice.trader, desk.alice.account_id))["number"]
        responses = [
            await list_alices(desk),
            await desk.ada.get(ADMIN_ACCOUNTS),
            await view(desk),
            await adjust(desk),
            await change_limits(desk),
            await change_status(desk),
        ]
        opened = await open_for(desk)
        new_own = (await account_body(desk.alice.trader, opened.json()["id"]))["number"]
        assert re.fullmatch(r"TG\d{8}", own)
        for response in [*responses, opened]:
            assert response.status_code in {200, 201}, response.text
            assert own not in response.text
            assert new_own not in response.text
        listed = responses[0].json()
        assert [a["number"] for a in listed] == [f"TG****{own[-4:]}"]
        assert MASKED_NUMBER.fullmatch(responses[2].json()["number"])
        assert MASKED_NUMBER.fullmatch(opened.json()["number"])
        assert opened.json()["number"] == f"TG****{new_own[-4:]}"

    @pytest.mark.spec("IAC-1", "IAC-4")
    async def test_the_whole_number_comes_from_the_audited_unmask(
        self, api: Api, desk: Desk
    ) -> None:
        own = (await account_body(desk.alice.trader, desk.alice.account_id))["number"]
        field = f"account_number:{desk.alice.account_id}"
        async with api.client("198.51.100.40") as support_client:
            sam = await staff(api, support_client, "sam")
            revealed = await sam.post(
                f"{BACKOFFICE}/customers/{desk.alice.user_id}/unmask",
                {"field": field, "reason": REASON},
            )
        log = await access_log(desk.alice.trader)
        assert revealed.status_code == 200, revealed.text
        assert revealed.json() == {"field": field, "value": own}
        assert [(e["action"], e["field"]) for e in log["items"]] == [("field_unmasked", field)]


class TestWithoutAnAccessLog:
    @pytest.mark.spec("IAC-4")
    async def test_every_staff_account_route_refuses_and_changes_nothing(self, desk: Desk) -> None:
        baseline = await account_body(desk.alice.trader, desk.alice.account_id)
        trading_of(desk.api).staff_access_log = None  # a trading core built without it
        cases = Cases()
        for route_id, (call, _action, _reason, _names_account) in zip(
            ROUTE_IDS, ROUTES, strict=True
        ):
            response = await call(desk)
            after = await account_body(desk.alice.trader, desk.alice.account_id)
            accounts = (await desk.alice.trader.get("/api/v1/accounts")).json()
            orders = (
                await desk.alice.trader.get(f"/api/v1/accounts/{desk.alice.account_id}/orders")
            ).json()
            log = (await access_log(desk.alice.trader))["items"]
            # Nothing the admin did reached the ledger beyond the permission check itself.
            by_ada = [
                e["type"]
                for e in await audit_events(desk.api)
                if e["actor"] == {"kind": "staff", "id": desk.ada.user_id}
            ]
            with cases.case(route_id):
                assert is_problem(response, 503, "access-log-unavailable"), response.text
                assert "balances" not in response.json()
                for unchanged in ("status", "trading_state", "limits"):
                    assert after[unchanged] == baseline[unchanged]
                assert after["balances"]["cash_settled"] == baseline["balances"]["cash_settled"]
                assert len(accounts) == 1
                assert all(o["status"] == "new" for o in orders)
                assert log == []
                assert by_ada == []
        cases.check()

    async def test_the_other_staff_routes_still_work(self, desk: Desk) -> None:
        trading_of(desk.api).staff_access_log = None
        halts = await desk.ada.get("/api/v1/admin/halts")
        assert halts.status_code == 200, halts.text
