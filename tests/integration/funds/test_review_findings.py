"""What the black-box review of money movement found, each closed (issue #11): security
changes start the withdrawal hold, a margin account keeps its margin, ACH returns block the
bank account and the customer's withdrawals, a suspension stops a withdrawal not yet sent,
the review threshold counts the day's total, and guessing micro-deposits or card codes is
bounded."""

from __future__ import annotations

import pytest

from tests.support.api import PASSWORD, Api, audit_events, bearer, login_with_totp, step_up
from tests.support.funds import (
    add_bank,
    balances_of,
    confirm,
    customer,
    past_cooling,
    request_withdrawal,
    run_funds,
)
from tests.support.trading import (
    add_instrument,
    funded_account,
    signed_in_staff,
    street_order,
    trading_of,
)
from tradeguard.access.domain import Role
from tradeguard.core.orders import Side
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.risk.domain import AccountStatus, AccountType

PHONE = "+14155550120"
NEW_PASSWORD = "a different horse battery staple 43"


def reason(response: object) -> str | None:
    if response.status_code != 403:  # type: ignore[attr-defined]
        return None
    return str(response.json()["reason"])  # type: ignore[attr-defined]


@pytest.mark.spec("ATO-1")
async def test_a_new_phone_starts_the_withdrawal_hold(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE)
        await add_bank(api, alice)
        await past_cooling(api, alice)
        started = await client.post(
            "/api/v1/auth/mfa/sms/enroll",
            json={"phone": "+12025550666"},
            headers=bearer(alice.trader.access),
        )
        assert started.status_code == 201, started.text
        texts = [m for m in await api.outbox(to="+12025550666") if m["channel"] == "sms"]
        code = texts[-1]["body"].split("code is ")[1][:6]
        confirmed = await client.post(
            "/api/v1/auth/mfa/sms/confirm",
            json={"factor_id": started.json()["factor_id"], "code": code},
            headers=bearer(alice.trader.access),
        )
        assert confirmed.status_code == 200, confirmed.text
        assert reason(await request_withdrawal(alice, "100.00")) == "SECURITY_CHANGE_COOLING"


@pytest.mark.spec("ATO-1")
async def test_new_backup_codes_start_the_withdrawal_hold(api: Api) -> None:
    # New backup codes are a second factor an intruder can keep: a security change.
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE)
        await add_bank(api, alice)
        await past_cooling(api, alice)
        made = await client.post(
            "/api/v1/auth/mfa/backup-codes", headers=bearer(alice.trader.access)
        )
        assert made.status_code in (200, 201), made.text
        assert reason(await request_withdrawal(alice, "100.00")) == "SECURITY_CHANGE_COOLING"


async def test_the_customer_is_not_told_which_takeover_signal_held_a_withdrawal(
    api: Api,
) -> None:
    # A password change 25 hours ago: past the funds cooling period (24 h) but inside the
    # takeover defence's window (72 h), so the withdrawal is held for review. Whoever asks
    # (perhaps an intruder) sees only that; staff see the signal.
    async with (
        api.client() as client,
        api.client("198.51.100.30") as staff_client,
    ):
        alice = await customer(api, client, "alice", phone=PHONE)
        await add_bank(api, alice)
        await past_cooling(api, alice)
        changed = await client.put(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(alice.trader.access),
        )
        assert changed.status_code == 200, changed.text
        api.clock.advance(seconds=25 * 3600)
        tokens = await login_with_totp(api, client, alice.totp, "alice", password=NEW_PASSWORD)
        alice.trader.access = tokens["access_token"]
        asked = await request_withdrawal(alice, "100.00")
        assert asked.status_code == 202, asked.text
        assert asked.json()["review_reason"] == "held for review"
        assert "security_change" not in asked.text
        assert "takeover" not in asked.text
        listed = await alice.get("/api/v1/funds/withdrawals")
        assert "security_change" not in listed.text
        held = await confirm(api, alice, asked.json()["id"])
        assert held.json()["status"] == "in_review", held.text
        assert held.json()["review_reason"] == "held for review"
        carol = await signed_in_staff(api, staff_client, "carol", Role.COMPLIANCE)
        [queued] = (await carol.get("/api/v1/admin/funds/withdrawals/review")).json()
        assert queued["review_reason"] == "takeover signals: security_change_withdrawal"


async def test_a_margin_account_keeps_the_margin_of_its_short(api: Api) -> None:
    await add_instrument(api, "KO", "63.25")
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="0")
        margin = await funded_account(api, alice.trader, "5000", AccountType.MARGIN)
        alice.account_id = margin
        await add_bank(api, alice)
        await past_cooling(api, alice)
        await street_order(api, "KO", Side.BUY, 150, "63.25")
        shorted = await alice.trader.order(
            margin,
            client_order_id="s1",
            symbol="KO",
            side="sell_short",
            type="limit",
            quantity=150,
            limit_price="63.25",
        )
        assert shorted.json()["status"] == "filled", shorted.text
        refused = await request_withdrawal(alice, "5000.00")
        assert reason(refused) == "INSUFFICIENT_WITHDRAWABLE_CASH"
        assert (await balances_of(alice))["cash_withdrawing"] == 0


async def test_an_unauthorized_ach_return_blocks_the_bank_and_freezes_withdrawals(
    api: Api,
) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="20000")
        bank_id = await add_bank(api, alice, "000555550010")  # the sandbox returns R10
        await client.post(
            "/api/v1/funds/deposits",
            headers=bearer(alice.trader.access),
            json={
                "account_id": alice.account_id,
                "bank_account_id": bank_id,
                "amount": "1000.00",
                "idempotency_key": "r10",
            },
        )
        await past_cooling(api, alice)
        await run_funds(api)
        [row] = (await alice.get("/api/v1/funds/bank-accounts")).json()
        assert row["status"] == "blocked"
        assert reason(await request_withdrawal(alice, "10.00")) == "WITHDRAWALS_FROZEN"
    assert await audit_events(api, "funds:bank_account:blocked")
    assert await audit_events(api, "fraud:withdrawals:frozen")


async def test_a_suspension_stops_a_withdrawal_not_yet_sent(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE)
        await add_bank(api, alice)
        await past_cooling(api, alice)
        before = await balances_of(alice)
        asked = (await request_withdrawal(alice, "500.00")).json()
        services = trading_of(api)
        async with unit_of_work(services.sessions) as session:
            await services.accounts.set_status(
                session,
                account_id=alice.account_id,
                status=AccountStatus.SUSPENDED,
                trading_state=None,
                reason="fraud team",
                actor=Party("staff", "ops"),
            )
        done = await confirm(api, alice, asked["id"])
        assert done.json()["status"] == "refused", done.text
        assert (await balances_of(alice))["cash_settled"] == before["cash_settled"]


@pytest.mark.spec("WDL-3")
async def test_the_review_threshold_counts_the_days_total(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE)
        await add_bank(api, alice)
        await past_cooling(api, alice)
        first = (await request_withdrawal(alice, "9999.99", key="a")).json()
        assert (await confirm(api, alice, first["id"])).json()["status"] == "sent"
        second = (await request_withdrawal(alice, "9999.99", key="b")).json()
        held = await confirm(api, alice, second["id"])
        assert held.json()["status"] == "in_review"


async def test_micro_deposit_guessing_is_bounded_by_bank_accounts_a_day(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE)
        for n in range(3):
            await add_bank(api, alice, f"00012345678{n}", verify=False)
        fourth = await alice.post(
            "/api/v1/funds/bank-accounts",
            {
                "routing_number": "021000021",
                "account_number": "000123456789",
                "account_type": "checking",
                "nickname": "again",
                "holder_name": "Jordan Example",
            },
        )
        assert fourth.status_code == 429
        assert "Retry-After" in fourth.headers


async def test_bank_accounts_need_a_fresh_second_factor(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE)
        api.clock.advance(seconds=11 * 60)
        stale = await alice.post(
            "/api/v1/funds/bank-accounts",
            {
                "routing_number": "021000021",
                "account_number": "000123456789",
                "account_type": "checking",
                "nickname": "main",
                "holder_name": "Jordan Example",
            },
        )
        assert stale.status_code in (401, 403), stale.text
        assert "step-up" in stale.text
        await step_up(api, client, alice.trader.access, alice.totp)
        assert (await alice.get("/api/v1/funds/bank-accounts")).json() == []
