"""Withdrawal limits through the API and the database (WDL-1, WDL-2): at and just past each
limit, across the firm's day boundary, and with parallel requests on SQLite and PostgreSQL:
the limit is never exceeded."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests.support.api import Api, audit_events
from tests.support.funds import (
    add_bank,
    balances_of,
    customer,
    past_cooling,
    request_withdrawal,
)
from tradeguard.core.clock import NS_PER_SECOND

PHONE = "+14155550103"
NY = ZoneInfo("America/New_York")


def reason(response: object) -> str | None:
    if response.status_code != 403:  # type: ignore[attr-defined]
        return None
    return str(response.json()["reason"])  # type: ignore[attr-defined]


def to_local(api: Api, hour: int, minute: int = 0) -> None:
    """Move the clock forward to the next hour:minute in New York."""
    now = datetime.fromtimestamp(api.clock.now_ns() // NS_PER_SECOND, NY)
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    while target <= now:
        target = datetime.fromtimestamp(target.timestamp() + 86_400, NY).replace(
            hour=hour, minute=minute
        )
    api.clock.advance(seconds=int(target.timestamp() - now.timestamp()))


@pytest.mark.spec("WDL-1")
async def test_the_daily_limit_holds_at_and_just_past_it(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="300000")
        await add_bank(api, alice)
        await past_cooling(api, alice)
        assert (await request_withdrawal(alice, "9999.00", key="a")).status_code == 202
        assert (await request_withdrawal(alice, "39000.00", key="b")).status_code == 202
        # 48,999.00 used: 1,001.00 reaches the limit exactly, one cent more passes it.
        assert reason(await request_withdrawal(alice, "1001.01", key="c")) == "DAILY_LIMIT"
        assert (await request_withdrawal(alice, "1001.00", key="d")).status_code == 202
        limits = (await alice.get("/api/v1/funds/limits")).json()
        assert limits["left_today"] == "0.00"
        assert limits["timezone"] == "America/New_York"
    refusals = await audit_events(api, "funds:withdrawal:refused")
    assert [e["data"]["reason"] for e in refusals] == ["DAILY_LIMIT"]


@pytest.mark.spec("WDL-1")
async def test_the_day_is_the_firms_local_day(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="300000")
        await add_bank(api, alice)
        await past_cooling(api, alice)
        to_local(api, 23, 50)  # 04:50 UTC: already tomorrow in UTC
        await alice.trader.sign_in_again()
        assert (await request_withdrawal(alice, "5000.00", key="late")).status_code == 202
        assert reason(await request_withdrawal(alice, "45000.01", key="over")) == "DAILY_LIMIT"
        to_local(api, 0, 5)  # fifteen minutes later, a new day in New York
        await alice.trader.sign_in_again()
        assert (await request_withdrawal(alice, "45000.01", key="next")).status_code == 202


@pytest.mark.spec("WDL-2")
async def test_the_weekly_limit_rolls_over_seven_days(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="500000")
        await add_bank(api, alice)
        await past_cooling(api, alice)
        for day in range(4):
            if day:
                api.clock.advance(seconds=86_400)
                await alice.trader.sign_in_again()
            assert (await request_withdrawal(alice, "50000.00", key=f"d{day}")).status_code == 202
        api.clock.advance(seconds=86_400)
        await alice.trader.sign_in_again()
        assert reason(await request_withdrawal(alice, "1.00", key="d4")) == "WEEKLY_LIMIT"
        # Seven days after the first one it has left the window: 50,000 may go again.
        api.clock.advance(seconds=3 * 86_400)
        await alice.trader.sign_in_again()
        assert (await request_withdrawal(alice, "50000.00", key="d7")).status_code == 202


@pytest.mark.spec("WDL-1")
async def test_parallel_requests_never_pass_the_limit_together(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="300000")
        await add_bank(api, alice)
        await past_cooling(api, alice)
        responses = await asyncio.gather(
            *(request_withdrawal(alice, "20000.00", key=f"p{i}") for i in range(4))
        )
        accepted = [r for r in responses if r.status_code == 202]
        refused = [r for r in responses if reason(r) == "DAILY_LIMIT"]
        assert len(accepted) == 2, [r.text for r in responses]
        assert len(refused) == 2
        balances = await balances_of(alice)
        assert balances["cash_withdrawing"] == Decimal(40000)
        assert balances["cash_settled"] == Decimal(260000)


@pytest.mark.spec("WDL-1")
async def test_parallel_requests_cannot_spend_the_same_cash_twice(api: Api) -> None:
    async with api.client() as client:
        alice = await customer(api, client, "alice", phone=PHONE, cash="1000")
        await add_bank(api, alice)
        await past_cooling(api, alice)
        responses = await asyncio.gather(
            *(request_withdrawal(alice, "600.00", key=f"c{i}") for i in range(3))
        )
        assert sorted(r.status_code for r in responses) == [202, 403, 403]
        balances = await balances_of(alice)
        assert balances["cash_settled"] == Decimal(400)
        assert balances["cash_withdrawing"] == Decimal(600)
