"""Orders placed together are written together (trading/intake.py): fewer transactions than
orders, each order still answered only once committed, a refusal inside a batch undoing only
itself, a caller that went away never placed. On SQLite and PostgreSQL both."""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, text

from tests.support.api import Api
from tests.support.sqlite_commits import commits_held
from tests.support.trading import (
    SETUP,
    add_instrument,
    funded_account,
    reconcile,
    signed_in_staff,
    signed_in_trader,
    trading_of,
)
from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import LedgerEvent
from tradeguard.risk.domain import AccountType
from tradeguard.trading import repository
from tradeguard.trading.common import ClientOrderIdReused
from tradeguard.trading.events import TradingEvent
from tradeguard.trading.intake import CommitInDoubt, WriterStopped
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

    async def test_a_batch_takes_the_control_row_once_and_writes_each_table_once(
        self, api: Api
    ) -> None:
        services = trading_of(api)
        accounts = await _accounts(api, 4)
        intake = services.desk.intake
        for n, account in enumerate(accounts):  # each account's view is in memory now
            await services.desk.place(
                account_id=account, user_id=None, request=_request(f"w{n}"), actor=SETUP
            )
        statements: list[str] = []

        def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(" ".join(statement.split()))

        event.listen(api.engine.sync_engine, "before_cursor_execute", note)
        try:
            batches_before = intake.batches
            outcomes = await asyncio.gather(
                *(
                    services.desk.place(
                        account_id=accounts[i % len(accounts)],
                        user_id=None,
                        request=_request(
                            f"c{i}", price=f"{Decimal('98.00') - i * Decimal('0.01')}"
                        ),
                        actor=SETUP,
                    )
                    for i in range(12)
                )
            )
        finally:
            event.remove(api.engine.sync_engine, "before_cursor_execute", note)
        assert all(o.accepted for o in outcomes)
        transactions = intake.batches - batches_before
        assert transactions < 12

        def count(prefix: str) -> int:
            return sum(1 for statement in statements if statement.startswith(prefix))

        # The control row is taken shared (FOR SHARE on PostgreSQL) at the start of each
        # transaction and held to its commit: no halt slips in between.
        reads = [s for s in statements if "FROM trading_control" in s]
        assert len(reads) == transactions
        if api.engine.dialect.name == "postgresql":
            assert all("FOR SHARE" in statement for statement in reads)
        # Each order reads its account and its client order id; what it writes is staged and
        # written with the other orders' rows, one statement per table and transaction, with
        # no savepoint around each order.
        assert count("SELECT trading_accounts.") == 12
        assert sum(1 for s in statements if "AND orders.client_order_id = " in s) == 12
        assert count("SAVEPOINT") == 0
        for table in ("orders", "audit_event", "journal_transactions", "journal_entries"):
            assert count(f"INSERT INTO {table} ") == transactions
        assert count("INSERT INTO book_balances ") == transactions
        assert count("UPDATE trading_accounts ") == transactions
        # The events' search references (AUD-3) go in with them, one statement a batch.
        assert count("INSERT INTO audit_event_ref ") == transactions
        async with unit_of_work(services.sessions) as session:
            for outcome in outcomes:
                stored = await repository.order(session, outcome.order.id)
                assert stored is not None
                assert stored.hold_cash == outcome.order.hold_cash
                indexed = await session.execute(
                    text(
                        "SELECT e.event_type FROM audit_event_ref r JOIN audit_event e "
                        "ON e.pk = r.event_pk WHERE r.kind = 'order' AND r.value = :order"
                    ),
                    {"order": outcome.order.id},
                )
                assert [row[0] for row in indexed] == ["trading:order:placed"]
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

    async def test_work_that_fails_after_changing_the_session_undoes_its_batch_not_others(
        self, api: Api
    ) -> None:
        """Staged work writes nothing itself; should one ever change the session's objects and
        then fail, its batch is undone and every order in it written again alone."""
        services = trading_of(api)
        accounts = await _accounts(api, 2)
        intake = services.desk.intake
        release, started = asyncio.Event(), asyncio.Event()

        async def slow(session: object) -> None:
            started.set()
            await release.wait()

        async def faulty(session: Any) -> PlaceOutcome:
            account = await repository.account(session, accounts[0])
            assert account is not None
            account.status = "suspended"  # a change the session would write at commit
            raise RuntimeError("the work failed after changing the session")

        holder = asyncio.create_task(intake.run(slow))  # type: ignore[arg-type]
        await started.wait()
        placing = [
            asyncio.create_task(
                services.desk.place(
                    account_id=accounts[i % 2],
                    user_id=None,
                    request=_request(f"f{i}", price=f"{Decimal('98.00') - i * Decimal('0.01')}"),
                    actor=SETUP,
                )
            )
            for i in range(4)
        ]
        failing = asyncio.create_task(intake.run(faulty))
        await asyncio.sleep(0)
        release.set()
        await holder
        with pytest.raises(RuntimeError, match="after changing the session"):
            await failing
        outcomes = await asyncio.gather(*placing)
        assert all(o.accepted for o in outcomes)
        async with unit_of_work(services.sessions) as session:
            account = await repository.account(session, accounts[0])
            assert account is not None
            assert account.status == "active"
            for outcome in outcomes:
                assert await repository.order(session, outcome.order.id) is not None
        assert (await reconcile(api))["ok"]

    async def test_an_order_failing_after_it_used_a_locate_leaves_it_to_the_others(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An order that fails after staging (a fault, not a refusal: injected here at its
        audit event) drops its rows; what staging changed on the session's objects (the
        locate's used quantity, the account's version) is put back, so the next order of the
        batch does not build on it and the database holds only what the others used."""
        await add_instrument(api, "GME", "30.00", tier=2, easy_to_borrow=False)
        services = trading_of(api)
        async with api.client() as client, api.client("198.51.100.20") as staff_client:
            alice = await signed_in_trader(api, client, "alice")
            ada = await signed_in_staff(api, staff_client)
            margin = await funded_account(api, alice, "10000.00", AccountType.MARGIN)
            await ada.put("/api/v1/admin/stock-loan/GME", {"available": 100})
            granted = await alice.post(
                f"/api/v1/accounts/{margin}/locates", {"symbol": "GME", "quantity": 10}
            )
        assert granted.status_code == 201, granted.text
        ledger = services.deps.ledger
        stage = ledger.stage

        async def faulty_stage(session: Any, event: LedgerEvent) -> Any:
            if event.type == TradingEvent.ORDER_PLACED and event.data["client_order_id"] == "f":
                raise RuntimeError("a fault after the order staged its rows")
            return await stage(session, event)

        monkeypatch.setattr(ledger, "stage", faulty_stage)
        intake = services.desk.intake
        release, started = asyncio.Event(), asyncio.Event()

        async def slow(session: object) -> None:
            started.set()
            await release.wait()

        def short(cid: str, quantity: int, price: str) -> OrderRequest:
            return OrderRequest(
                client_order_id=cid,
                symbol="GME",
                side=Side.SELL_SHORT,
                order_type=OrderType.LIMIT,
                time_in_force=TimeInForce.DAY,
                quantity=quantity,
                limit_price=Decimal(price),
            )

        holder = asyncio.create_task(intake.run(slow))  # type: ignore[arg-type]
        await started.wait()
        batches = intake.batches
        placing = [
            asyncio.create_task(
                services.desk.place(account_id=margin, user_id=None, request=request, actor=SETUP)
            )
            for request in (short("f", 4, "31.00"), short("g", 3, "31.01"))
        ]
        await asyncio.sleep(0)
        release.set()
        await holder
        failed, placed = await asyncio.gather(*placing, return_exceptions=True)
        assert isinstance(failed, RuntimeError)
        assert isinstance(placed, PlaceOutcome)
        assert placed.accepted, placed.order.reject_code
        assert intake.batches - batches == 2  # the holder's, then both orders' together
        async with unit_of_work(services.sessions) as session:
            (locate,) = await repository.locates_of(session, margin, 10)
            assert locate.used_quantity == 3
            assert await repository.order_by_client_id(session, margin, "f") is None
        monkeypatch.undo()
        # The account's memo and version agree with the database: the next order checks
        # against what stands (6 left of the locate) and goes through.
        after = await services.desk.place(
            account_id=margin, user_id=None, request=short("h", 6, "31.02"), actor=SETUP
        )
        assert after.accepted, after.order.reject_code
        async with unit_of_work(services.sessions) as session:
            (locate,) = await repository.locates_of(session, margin, 10)
            assert locate.used_quantity == 9
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


class TestAStoppedWriterTellsTheTruth:
    """The intake's writer is cancelled (the process stops) while a batch commits: each
    caller hears what became of its order, never "failed" for one that stands or "placed"
    for one that does not."""

    async def _queue_behind_a_held_transaction(
        self, api: Api, accounts: list[str], count: int
    ) -> tuple[asyncio.Event, asyncio.Task[None], list[asyncio.Task[PlaceOutcome]]]:
        services = trading_of(api)
        release, started = asyncio.Event(), asyncio.Event()

        async def slow(session: object) -> None:
            started.set()
            await release.wait()

        holder = asyncio.create_task(services.desk.intake.run(slow))  # type: ignore[arg-type]
        await started.wait()
        placing = [
            asyncio.create_task(
                services.desk.place(
                    account_id=accounts[i % len(accounts)],
                    user_id=None,
                    request=_request(f"s{i}", price=f"{Decimal('98.00') - i * Decimal('0.01')}"),
                    actor=SETUP,
                )
            )
            for i in range(count)
        ]
        await asyncio.sleep(0)  # all queued behind the held transaction
        return release, holder, placing

    async def test_cancelled_as_the_batch_commits_each_answer_matches_the_database(
        self, api: Api
    ) -> None:
        services = trading_of(api)
        accounts = await _accounts(api, 3)
        intake = services.desk.intake
        release, holder, placing = await self._queue_behind_a_held_transaction(api, accounts, 6)
        commits = 0

        def stop_writer(_conn: Any) -> None:
            nonlocal commits
            commits += 1
            if commits == 2:  # the batch of orders (the first is the held transaction)
                assert intake._writer is not None
                intake._writer.cancel()

        event.listen(api.engine.sync_engine, "commit", stop_writer)
        try:
            release.set()
            await holder
            answers = await asyncio.gather(*placing, return_exceptions=True)
        finally:
            event.remove(api.engine.sync_engine, "commit", stop_writer)
        for n, answer in enumerate(answers):
            async with unit_of_work(services.sessions) as session:
                stored = await repository.order_by_client_id(
                    session, accounts[n % len(accounts)], f"s{n}"
                )
            if isinstance(answer, PlaceOutcome):
                assert stored is not None
                assert stored.id == answer.order.id
            elif isinstance(answer, WriterStopped):
                assert stored is None
            else:
                # PostgreSQL's commit cancelled before its answer came: the same order sent
                # again says which it was, and there is exactly one.
                assert isinstance(answer, CommitInDoubt), answer
                again = await services.desk.place(
                    account_id=accounts[n % len(accounts)],
                    user_id=None,
                    request=_request(f"s{n}", price=f"{Decimal('98.00') - n * Decimal('0.01')}"),
                    actor=SETUP,
                )
                assert again.accepted
                assert again.replayed == (stored is not None)
        # The writer stopped; the next order starts another.
        after = await services.desk.place(
            account_id=accounts[0],
            user_id=None,
            request=_request("after", price="97.50"),
            actor=SETUP,
        )
        assert after.accepted, after.order.reject_code
        assert (await reconcile(api))["ok"]

    async def test_on_sqlite_a_commit_being_flushed_when_cancelled_stands_and_is_answered(
        self, api: Api
    ) -> None:
        if api.engine.dialect.name != "sqlite":
            pytest.skip("the in-loop SQLite driver's commit on the connection's thread")
        services = trading_of(api)
        accounts = await _accounts(api, 3)
        intake = services.desk.intake
        release, holder, placing = await self._queue_behind_a_held_transaction(api, accounts, 6)
        with commits_held(api.engine) as commits:
            release.set()  # the held transaction only read: its commit is not held
            await holder
            flushing = await commits.first()  # the batch's commit
            # Flushing now: more orders queue behind, then the process stops.
            later = asyncio.create_task(
                services.desk.place(
                    account_id=accounts[0], user_id=None, request=_request("late"), actor=SETUP
                )
            )
            await asyncio.sleep(0.01)
            assert intake._writer is not None
            writer = intake._writer
            writer.cancel()
            await asyncio.sleep(0.05)
            flushing.release.set()
            answers = await asyncio.gather(*placing)
            with pytest.raises(WriterStopped):
                await later
        assert writer.cancelled()
        assert all(a.accepted for a in answers)
        async with unit_of_work(services.sessions) as session:
            for n, answer in enumerate(answers):
                stored = await repository.order_by_client_id(
                    session, accounts[n % len(accounts)], f"s{n}"
                )
                assert stored is not None
                assert stored.id == answer.order.id
            assert await repository.order_by_client_id(session, accounts[0], "late") is None
        assert (await reconcile(api))["ok"]


# Another process (the CLI, say) takes SQLite's write lock and holds it until told to go.
LOCK_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


class TestAnotherProcessWrites:
    async def test_the_server_answers_while_another_process_holds_the_write_lock(
        self, api: Api
    ) -> None:
        if api.engine.dialect.name != "sqlite":
            pytest.skip("SQLite's write lock: PostgreSQL has no such lock")
        services = trading_of(api)
        await add_instrument(api, "AAPL", "100.00")
        async with api.client() as client:
            trader = await signed_in_trader(api, client, "waiting")
            account = await funded_account(api, trader, "100000.00")
            holder = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                LOCK_HOLDER,
                str(api.engine.url.database),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert holder.stdin is not None
            assert holder.stdout is not None
            try:
                assert (await asyncio.wait_for(holder.stdout.readline(), 20)).strip() == b"locked"
                order = asyncio.create_task(
                    trader.order(
                        account,
                        client_order_id="behind-the-cli",
                        symbol="AAPL",
                        side="buy",
                        type="limit",
                        quantity=1,
                        limit_price="99.00",
                    )
                )
                await asyncio.sleep(0.2)
                # The order waits for the lock on the connection's thread (SQLite's busy
                # handler); the event loop does not, so the server keeps answering.
                health = await asyncio.wait_for(client.get("/health/live"), 5)
                assert health.status_code == 200
                assert not order.done()
                holder.stdin.write(b"go\n")
                await holder.stdin.drain()
                placed = await asyncio.wait_for(order, 20)
            finally:
                if holder.returncode is None:
                    holder.kill()
                await holder.wait()
        assert placed.status_code == 201, placed.text
        async with unit_of_work(services.sessions) as session:
            stored = await repository.order_by_client_id(session, account, "behind-the-cli")
        assert stored is not None
