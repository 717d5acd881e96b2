"""Orders placed together are written together (trading/intake.py): fewer transactions than
orders, each order still answered only once committed, a refusal inside a batch undoing only
itself, a caller that went away never placed. On SQLite and PostgreSQL both."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.support.api import Api
from tests.support.trading import (
    SETUP,
    add_instrument,
    funded_account,
    reconcile,
    signed_in_trader,
    trading_of,
)
from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.db.engine import unit_of_work
from tradeguard.trading import repository
from tradeguard.trading.common import ClientOrderIdReused
from tradeguard.trading.orders import OrderRequest, PlaceOutcome


def _request(client_order_id: str, quantity: int = 1, price: str = "99.00") -> OrderRequest:
    return OrderRequest(
        client_order_id=client_order_id,
        symbol="AAPL",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.DAY,
        quantity=quantity,
        limit_price=Decimal(price),
    )


async def _accounts(api: Api, count: int) -> list[str]:
    await add_instrument(api, "AAPL", "100.00")
    async with api.client() as client:
        trader = await signed_in_trader(api, client, "grouped")
        return [await funded_account(api, trader, "100000.00") for _ in range(count)]


@pytest.mark.spec("PRE-2")
class TestGroupCommit:
    async def test_concurrent_orders_share_transactions_and_all_stand(self, api: Api) -> None:
        services = trading_of(api)
        accounts = await _accounts(api, 8)
        intake = services.desk.intake
        batches_before, jobs_before = intake.batches, intake.jobs
        outcomes = await asyncio.gather(
            *(
                services.desk.place(
                    account_id=accounts[i % len(accounts)],
                    user_id=None,
                    # Distinct prices: the same order repeated would be a duplicate (REG-1).
                    request=_request(f"g{i}", price=f"{Decimal('99.00') - i * Decimal('0.01')}"),
                    actor=SETUP,
                )
                for i in range(40)
            )
        )
        assert [o.order.reject_code for o in outcomes if not o.accepted] == []
        assert intake.jobs - jobs_before == 40
        # The first order found the writer idle; the other 39 queued behind it and went in
        # batches, so there were far fewer transactions than orders.
        assert intake.batches - batches_before < 40
        async with unit_of_work(services.sessions) as session:
            for outcome in outcomes:
                stored = await repository.order(session, outcome.order.id)
                assert stored is not None
                assert stored.status == "new"
        assert (await reconcile(api))["ok"]

    async def test_a_refusal_in_a_batch_undoes_only_itself(self, api: Api) -> None:
        services = trading_of(api)
        (account,) = await _accounts(api, 1)
        first = await services.desk.place(
            account_id=account, user_id=None, request=_request("dup"), actor=SETUP
        )

        async def place(request: OrderRequest) -> PlaceOutcome | BaseException:
            try:
                return await services.desk.place(
                    account_id=account, user_id=None, request=request, actor=SETUP
                )
            except ClientOrderIdReused as refused:
                return refused

        results = await asyncio.gather(
            place(_request("a1", price="98.00")),
            # The same client order id with a different order: refused, inside the batch.
            place(_request("dup", quantity=5)),
            place(_request("a2", price="97.00")),
            # The same client order id and the same order: the original, replayed.
            place(_request("dup")),
        )
        assert isinstance(results[1], ClientOrderIdReused)
        assert isinstance(results[3], PlaceOutcome)
        assert results[3].replayed
        assert results[3].order.id == first.order.id
        placed = [r for r in (results[0], results[2]) if isinstance(r, PlaceOutcome)]
        assert [p.accepted for p in placed] == [True, True]
        async with unit_of_work(services.sessions) as session:
            open_ids = {o[0] for o in await repository.open_order_summaries(session, account)}
        assert open_ids == {first.order.id, *(p.order.id for p in placed)}
        assert (await reconcile(api))["ok"]

    async def test_an_order_whose_caller_went_away_before_its_turn_is_never_placed(
        self, api: Api
    ) -> None:
        services = trading_of(api)
        (account,) = await _accounts(api, 1)
        intake = services.desk.intake
        # Hold the writer on the first order's transaction, queue a second, cancel its caller.
        release = asyncio.Event()
        started = asyncio.Event()

        async def slow(session: object) -> None:
            started.set()
            await release.wait()

        holder = asyncio.create_task(intake.run(slow))  # type: ignore[arg-type]
        await started.wait()
        queued = asyncio.create_task(
            services.desk.place(
                account_id=account, user_id=None, request=_request("gone"), actor=SETUP
            )
        )
        await asyncio.sleep(0)
        queued.cancel()
        release.set()
        await holder
        with pytest.raises(asyncio.CancelledError):
            await queued
        async with unit_of_work(services.sessions) as session:
            assert await repository.order_by_client_id(session, account, "gone") is None
