"""A withdrawal row edited in the database does not send money: just before sending, the row
is compared with its audit trail (funds/integrity.py), and a row the trail does not back is
stopped, its reserved cash given back, the disagreement recorded.

Each test edits the database directly, as an operator or an injected statement could, at the
moment that matters: after the customer asked and before the last step sends.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.support.api import Api, audit_events
from tests.support.funds import (
    add_bank,
    balances_of,
    confirm,
    customer,
    past_cooling,
    request_withdrawal,
)
from tests.support.trading import reconcile, signed_in_staff
from tradeguard.access.domain import Role

PHONE = "+14155550104"
BOB_PHONE = "+14155550105"


async def edit(api: Api, statement: str, **params: Any) -> None:
    async with api.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        assert result.rowcount == 1


async def withdrawal_row(api: Api, withdrawal_id: str) -> dict[str, Any]:
    async with api.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, failure_code, amount FROM funds_withdrawals WHERE id = :id"),
                {"id": withdrawal_id},
            )
        ).one()
    return dict(row._mapping)


async def mismatch_problems(api: Api, withdrawal_id: str) -> list[str]:
    events = await audit_events(api, "funds:withdrawal:record_mismatch")
    mine = [e for e in events if e["data"]["withdrawal_id"] == withdrawal_id]
    assert len(mine) == 1, events
    problems: list[str] = mine[0]["data"]["problems"]
    return problems


async def nothing_sent(api: Api, withdrawal_id: str) -> bool:
    sent = await audit_events(api, "funds:withdrawal:sent")
    return not [e for e in sent if e["data"]["withdrawal_id"] == withdrawal_id]


class TestRowsTheTrailDoesNotBack:
    @pytest.mark.spec("WDL-1")
    async def test_an_amount_raised_in_the_database_is_not_sent(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="20000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            before = await balances_of(alice)
            asked = (await request_withdrawal(alice, "500.00")).json()
            # 9,000 was never asked for: only the row says so.
            await edit(
                api,
                "UPDATE funds_withdrawals SET amount = :a WHERE id = :id",
                a="9000.00",
                id=asked["id"],
            )
            confirmed = await confirm(api, alice, asked["id"])
            assert confirmed.status_code == 200, confirmed.text
            assert confirmed.json()["status"] == "failed"
            row = await withdrawal_row(api, asked["id"])
            assert row["failure_code"] == "RECORD_MISMATCH"
            assert await mismatch_problems(api, asked["id"]) == [
                "the amount differs from the request"
            ]
            assert await nothing_sent(api, asked["id"])
            # The cash the customer really reserved (500) is back; nothing more appeared.
            assert await balances_of(alice) == before
        report = await reconcile(api)
        # The journal balances: the reservation and its release are both of the 500 asked for.
        assert report["ok"] is True, report

    async def test_a_destination_swapped_to_someone_elses_bank_is_not_sent(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.9") as bob_client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="20000")
            await add_bank(api, alice)
            bob = await customer(api, bob_client, "bob", phone=BOB_PHONE, cash="10")
            bobs_bank = await add_bank(api, bob, "000555666777")
            await past_cooling(api, alice)
            asked = (await request_withdrawal(alice, "700.00")).json()
            await edit(
                api,
                "UPDATE funds_withdrawals SET bank_account_id = :b WHERE id = :id",
                b=bobs_bank,
                id=asked["id"],
            )
            confirmed = await confirm(api, alice, asked["id"])
            assert confirmed.json()["status"] == "failed"
            assert await mismatch_problems(api, asked["id"]) == [
                "the destination differs from the request",
                "the destination is not a confirmed bank account by the trail",
            ]
            assert await nothing_sent(api, asked["id"])

    @pytest.mark.spec("WDL-3")
    async def test_a_first_approval_written_into_the_row_does_not_count(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.30") as staff_client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="100000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            before = await balances_of(alice)
            asked = (await request_withdrawal(alice, "15000.00")).json()
            assert (await confirm(api, alice, asked["id"])).json()["status"] == "in_review"
            carol = await signed_in_staff(api, staff_client, "carol", Role.COMPLIANCE)
            dave = await signed_in_staff(api, staff_client, "dave", Role.COMPLIANCE)
            # Carol never approved: the row only says she did.
            await edit(
                api,
                "UPDATE funds_withdrawals SET first_approver = :c WHERE id = :id",
                c=carol.user_id,
                id=asked["id"],
            )
            second = await dave.post(f"/api/v1/admin/funds/withdrawals/{asked['id']}/approve")
            assert second.status_code == 200, second.text
            assert second.json()["status"] == "failed"
            assert await mismatch_problems(api, asked["id"]) == [
                "held for review without two different approvers"
            ]
            assert await nothing_sent(api, asked["id"])
            assert await balances_of(alice) == before

    async def test_a_bank_account_marked_confirmed_in_the_database_receives_nothing(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="20000")
            bank_id = await add_bank(api, alice, verify=False)
            # Confirmed without its micro-deposits: only the row says so.
            await edit(
                api,
                "UPDATE funds_bank_accounts SET status = 'verified', verified_ns = created_ns "
                "WHERE id = :id",
                id=bank_id,
            )
            await past_cooling(api, alice)
            asked = await request_withdrawal(alice, "300.00")
            assert asked.status_code == 202, asked.text
            confirmed = await confirm(api, alice, asked.json()["id"])
            assert confirmed.json()["status"] == "failed"
            assert await mismatch_problems(api, asked.json()["id"]) == [
                "the destination is not a confirmed bank account by the trail"
            ]
            assert await nothing_sent(api, asked.json()["id"])

    async def test_an_untouched_withdrawal_is_sent(self, api: Api) -> None:
        """The control: the same flow with no edit sends, and records no mismatch."""
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE, cash="20000")
            await add_bank(api, alice)
            await past_cooling(api, alice)
            asked = (await request_withdrawal(alice, "500.00")).json()
            assert (await confirm(api, alice, asked["id"])).json()["status"] == "sent"
        assert await audit_events(api, "funds:withdrawal:record_mismatch") == []
