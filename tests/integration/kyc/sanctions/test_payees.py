"""A bank account's holder is screened as a payee (KYC-2): a listed holder's account is
blocked at once, a possible match holds withdrawals until a reviewer clears it, and a new
list version re-screens every payee."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tests.integration.funds.conftest import MONDAY_OPEN
from tests.integration.kyc.sanctions.conftest import (
    ADDED,
    load_list,
    sample_dir,
    sanctions_of,
    updated_copy,
)
from tests.support.api import Api, audit_events
from tests.support.funds import (
    ROUTING,
    add_bank,
    customer,
    past_cooling,
    request_withdrawal,
)
from tests.support.trading import signed_in_staff
from tradeguard.access.domain import Role
from tradeguard.core.clock import FrozenClock
from tradeguard.kyc.sanctions.tasks import run_rescreen

PHONE = "+14155550177"
BASE = "/api/v1/admin/sanctions"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_OPEN)


@pytest.mark.spec("KYC-2")
class TestPayeeScreening:
    async def test_a_common_personal_name_holds_the_account_but_does_not_block_it(
        self, api: Api
    ) -> None:
        await load_list(api, sample_dir())
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            # sdn.csv 15102 "MORENO, Daniel": a holder's name is all funds knows, and a name
            # alone is not a match until a person checks the other identifiers.
            added = await alice.post(
                "/api/v1/funds/bank-accounts",
                {
                    "routing_number": ROUTING,
                    "account_number": "000123456789",
                    "account_type": "checking",
                    "nickname": "Main",
                    "holder_name": "Daniel Moreno",
                },
            )
            assert added.status_code == 201, added.text
            assert added.json()["status"] != "blocked"
        assert await audit_events(api, "funds:bank_account:blocked") == []
        assert len(await audit_events(api, "funds:bank_account:held")) == 1

    async def test_a_holder_name_with_its_letters_spaced_out_is_still_held(self, api: Api) -> None:
        await load_list(api, sample_dir())
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            # sdn.csv 29702 "LIFSHITS, Artem Mikhaylovich", its letters spaced out
            await add_bank(api, alice, holder_name="A r t e m  L i f s h i t s")
        assert len(await audit_events(api, "funds:bank_account:held")) == 1

    async def test_a_listed_company_blocks_the_bank_account_at_once(self, api: Api) -> None:
        await load_list(api, sample_dir())
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            # sdn.csv 44525 "BEL-KAP-STEEL LLC": an entity's exact distinctive name
            added = await alice.post(
                "/api/v1/funds/bank-accounts",
                {
                    "routing_number": ROUTING,
                    "account_number": "000123456789",
                    "account_type": "checking",
                    "nickname": "Main",
                    "holder_name": "Bel-Kap-Steel LLC",
                },
            )
            assert added.status_code == 201, added.text
            assert added.json()["status"] == "blocked"
        blocked = await audit_events(api, "funds:bank_account:blocked")
        assert [e["data"]["return_code"] for e in blocked] == ["SANCTIONS"]
        # The holder's name is stored encrypted only.
        async with api.engine.connect() as conn:
            raw = (
                await conn.execute(text("SELECT holder_name_enc FROM funds_bank_accounts"))
            ).scalar_one()
        assert b"steel" not in bytes(raw).lower()

    async def test_a_possible_match_holds_withdrawals_until_a_reviewer_clears_it(
        self, api: Api
    ) -> None:
        await load_list(api, sample_dir())
        async with api.client() as client, api.client("198.51.100.30") as staff_client:
            alice = await customer(api, client, "alice", phone=PHONE)
            # sdn.csv 29702 "LIFSHITS, Artem Mikhaylovich": no patronymic → review
            bank_id = await add_bank(api, alice, holder_name="Artem Lifshits")
            await past_cooling(api, alice)
            held = await request_withdrawal(alice, "100.00")
            assert held.status_code == 403, held.text
            assert held.json()["reason"] == "PAYEE_SANCTIONS_SCREENING"
            carol = await signed_in_staff(api, staff_client, "carol", Role.COMPLIANCE)
            hits = (
                await carol.get(
                    f"{BASE}/hits", params={"subject_kind": "payee", "subject_ref": bank_id}
                )
            ).json()
            assert [(h["entry_id"], h["decision"]) for h in hits] == [("29702", "review")]
            cleared = await carol.post(
                f"{BASE}/hits/{hits[0]['id']}/clear", {"reason": "holder is a different person"}
            )
            assert cleared.status_code == 200, cleared.text
            await alice.trader.sign_in_again()
            sent = await request_withdrawal(alice, "100.00", key="after-review")
            assert sent.status_code == 202, sent.text
        assert len(await audit_events(api, "funds:bank_account:held")) == 1

    async def test_the_holder_name_is_required(self, api: Api) -> None:
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            refused = await alice.post(
                "/api/v1/funds/bank-accounts",
                {
                    "routing_number": ROUTING,
                    "account_number": "000123456789",
                    "account_type": "checking",
                    "nickname": "Main",
                },
            )
            assert refused.status_code == 422
            assert "holder_name" in refused.text
            assert (await alice.get("/api/v1/funds/bank-accounts")).json() == []

    async def test_a_new_list_version_rescreens_payees(self, api: Api, tmp_path: Path) -> None:
        await load_list(api, sample_dir())
        async with api.client() as client:
            alice = await customer(api, client, "alice", phone=PHONE)
            bank_id = await add_bank(api, alice, holder_name="Jordan Quincy Example")
            await past_cooling(api, alice)
            await load_list(api, updated_copy(tmp_path))
            report = await run_rescreen(sanctions_of(api))
            assert [(h.subject_kind, h.subject_ref, h.entry_id) for h in report.new_hits] == [
                ("payee", bank_id, ADDED)
            ]
            refused = await request_withdrawal(alice, "100.00")
            assert refused.status_code == 403
            assert refused.json()["reason"] == "PAYEE_SANCTIONS_SCREENING"
