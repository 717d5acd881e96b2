"""Bank accounts: a validated routing number, the number stored encrypted with a blind
index (only the last four shown), ownership proved by micro-deposits with few attempts,
another customer's accounts unreachable, a bank account confirmed by two users recorded."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.support.api import Api, audit_events
from tests.support.funds import ROUTING, add_bank, customer, funds_of
from tests.support.trading import signed_in_trader
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import blind_index

PHONE = "+14155550105"
NUMBER = "000123456789"


def body(**changes: Any) -> dict[str, Any]:
    return {
        "routing_number": ROUTING,
        "account_number": NUMBER,
        "account_type": "checking",
        "nickname": "Main",
        "holder_name": "Jordan Example",
    } | changes


class TestAdding:
    async def test_only_the_last_four_digits_come_back_and_none_are_stored_in_clear(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            added = await alice.post("/api/v1/funds/bank-accounts", body())
            assert added.status_code == 201, added.text
            out = added.json()
            assert out["last4"] == "6789"
            assert out["masked"] == "***6789"
            assert out["status"] == "pending_verification"
            assert NUMBER not in added.text
            listed = await alice.get("/api/v1/funds/bank-accounts")
            assert NUMBER not in listed.text
        async with api.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM funds_bank_accounts"))).all()
        for row in rows:
            for value in row:
                raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
                assert NUMBER.encode() not in raw

    @pytest.mark.parametrize(
        "changes",
        [
            {"routing_number": "021000022"},  # checksum
            {"routing_number": "99100002"},
            {"routing_number": "991000021"},  # no Federal Reserve prefix 99
            {"account_number": "123"},
            {"account_number": "1" * 18},
            {"account_number": "12ab4567"},
            {"account_type": "brokerage"},
            {"nickname": ""},
            {"nickname": "   "},
            {"extra": 1},
        ],
    )
    async def test_bad_input_is_a_problem_and_adds_nothing(
        self, api: Api, changes: dict[str, Any]
    ) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            response = await alice.post("/api/v1/funds/bank-accounts", body(**changes))
            assert response.status_code == 422, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert NUMBER not in response.text
            assert (await alice.get("/api/v1/funds/bank-accounts")).json() == []

    async def test_a_short_account_number_shows_only_two_digits(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            added = await alice.post("/api/v1/funds/bank-accounts", body(account_number="1234"))
            assert added.status_code == 201, added.text
            assert (added.json()["last4"], added.json()["masked"]) == ("34", "***34")

    async def test_the_same_account_twice_is_a_conflict(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            assert (await alice.post("/api/v1/funds/bank-accounts", body())).status_code == 201
            typed = body(account_number="0001-2345-6789")
            assert (await alice.post("/api/v1/funds/bank-accounts", typed)).status_code == 409

    async def test_leading_zeros_do_not_make_another_account(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            first = await alice.post("/api/v1/funds/bank-accounts", body())
            assert first.status_code == 201, first.text
            for typed in ("123456789", "0123456789", "00000000123456789"):
                again = await alice.post("/api/v1/funds/bank-accounts", body(account_number=typed))
                assert again.status_code == 409, (typed, again.text)
            # Another routing number is another account.
            other = await alice.post(
                "/api/v1/funds/bank-accounts",
                body(routing_number="011000015", account_number="123456789"),
            )
            assert other.status_code == 201, other.text
        # The processor gets the number as the customer typed it.
        bank_id = first.json()["id"]
        async with funds_of(api).sessions() as session:
            row = await funds_of(api).banks.find(session, bank_id)
            assert row is not None
            assert funds_of(api).banks.account_number(row) == NUMBER


class TestMicroDeposits:
    async def test_three_wrong_answers_fail_it_for_good(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            bank_id = (await alice.post("/api/v1/funds/bank-accounts", body())).json()["id"]
            right = [str(a) for a in funds_of(api).processor.statement(bank_id)]
            wrong = ["0.01", "0.02"] if right != ["0.01", "0.02"] else ["0.03", "0.04"]
            for left in (2, 1, 0):
                answer = await alice.post(
                    f"/api/v1/funds/bank-accounts/{bank_id}/verify", {"amounts": wrong}
                )
                assert answer.status_code == 200
                assert answer.json()["verification_attempts_left"] == left
            assert answer.json()["status"] == "verification_failed"
            late = await alice.post(
                f"/api/v1/funds/bank-accounts/{bank_id}/verify", {"amounts": right}
            )
            assert late.status_code == 409

    @pytest.mark.parametrize(
        "amounts",
        [["0.3"], ["0.1", "0.2", "0.3"], ["abc", "0.1"], ["1.50", "0.10"], ["0.001", "0.1"]],
    )
    async def test_malformed_answers_spend_no_attempt(self, api: Api, amounts: list[str]) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            bank_id = (await alice.post("/api/v1/funds/bank-accounts", body())).json()["id"]
            answer = await alice.post(
                f"/api/v1/funds/bank-accounts/{bank_id}/verify", {"amounts": amounts}
            )
            assert answer.status_code == 422
            [row] = (await alice.get("/api/v1/funds/bank-accounts")).json()
            assert row["verification_attempts_left"] == 3

    async def test_another_customers_bank_account_is_not_found(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.9") as other:
            alice = await signed_in_trader(api, client, "alice")
            bank_id = (await alice.post("/api/v1/funds/bank-accounts", body())).json()["id"]
            mallory = await signed_in_trader(api, other, "mallory")
            right = [str(a) for a in funds_of(api).processor.statement(bank_id)]
            stolen = await mallory.post(
                f"/api/v1/funds/bank-accounts/{bank_id}/verify", {"amounts": right}
            )
            assert stolen.status_code == 404
            assert (
                await mallory.delete(f"/api/v1/funds/bank-accounts/{bank_id}")
            ).status_code == 404
            [row] = (await alice.get("/api/v1/funds/bank-accounts")).json()
            assert row["status"] == "pending_verification"


class TestSharedBankAccounts:
    async def test_one_bank_account_confirmed_by_two_users_is_recorded(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.9") as other:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            bob = await customer(api, other, "bob", phone="+14155550106", cash="0")
            await add_bank(api, alice)
            await add_bank(api, bob)
        [event] = await audit_events(api, "funds:bank_account:shared")
        assert event["data"]["shared_with"] == [alice.trader.user_id]
        async with funds_of(api).sessions() as session:
            pairs = await funds_of(api).banks.shared(session)
        assert [(min(a, b), max(a, b)) for a, b, _, _ in pairs] == [
            tuple(sorted((alice.trader.user_id, bob.trader.user_id)))
        ]

    async def test_leading_zeros_do_not_hide_a_shared_account(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.9") as other:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            bob = await customer(api, other, "bob", phone="+14155550106", cash="0")
            await add_bank(api, alice, "000123456789")
            await add_bank(api, bob, "123456789")
        [event] = await audit_events(api, "funds:bank_account:shared")
        assert event["data"]["shared_with"] == [alice.trader.user_id]
        async with funds_of(api).sessions() as session:
            pairs = await funds_of(api).banks.shared(session)
        assert len(pairs) == 1

    async def test_rows_indexed_before_normalisation_are_still_found(self, api: Api) -> None:
        # Rows added before leading zeros were stripped hold the index of the number as
        # typed: the check on the profile and the shared-account link still find them.
        async with api.client() as client, api.client("198.51.100.9") as other:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            bank_id = await add_bank(api, alice, "000123456789")
            legacy = blind_index(
                funds_of(api).deps.keyring, DataClass.BANK_DETAILS, f"{ROUTING}:000123456789", str
            )
            async with api.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE funds_bank_accounts SET account_index = :i WHERE id = :id"),
                    {"i": legacy, "id": bank_id},
                )
            again = await alice.post(
                "/api/v1/funds/bank-accounts", body(account_number="123456789")
            )
            assert again.status_code == 409, again.text
            bob = await customer(api, other, "bob", phone="+14155550106", cash="0")
            await add_bank(api, bob, "0123456789")
        [event] = await audit_events(api, "funds:bank_account:shared")
        assert event["data"]["shared_with"] == [alice.trader.user_id]

    @pytest.mark.spec("MAN-1")
    async def test_surveillance_links_the_two_owners_by_their_bank_account(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.9") as other:
            alice = await customer(api, client, "alice", phone=PHONE, cash="0")
            bob = await customer(api, other, "bob", phone="+14155550106", cash="0")
            await add_bank(api, alice)
            await add_bank(api, bob)
        deriver = api.app.state.surveillance.deriver
        await deriver.run_once(force=True)
        await deriver.run_once(force=True)  # a second pass links nothing twice
        async with api.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT account_a, account_b, evidence FROM surveillance_links "
                        "WHERE kind = 'bank_account'"
                    )
                )
            ).all()
        [(account_a, account_b, evidence)] = rows
        assert {account_a, account_b} == {alice.account_id, bob.account_id}
        assert "***6789" in str(evidence)
        assert NUMBER not in str(evidence)
