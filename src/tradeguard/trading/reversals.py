"""Reversing a fraudulent execution by compensating entries (account recovery, ATO-3).

The execution, its order and its journal lines are never edited or deleted: a reversal is a
new journal transaction (journal.reversal) that gives the customer back what the execution
took and takes back what it gave, against the firm's error account, and a position rebuilt
as if the execution had not happened. An execution is reversed at most once (the reversal
row's primary key is the execution's id). Reconciliation (reconcile.py) counts reversed
executions out of positions and the reversal's cash among settled-cash movements, so the
books still prove themselves afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.errors import Conflict
from tradeguard.ledger.domain import Party
from tradeguard.trading import journal, repository
from tradeguard.trading.common import TradingDeps, TradingInputError
from tradeguard.trading.domain import ZERO, apply_execution
from tradeguard.trading.events import TradingEvent
from tradeguard.trading.models import Execution, ExecutionReversal, Position

BUY = "buy"


class ExecutionNotFound(TradingInputError):
    """Unknown execution, or not of the account it was said to be (422, not 404: the id
    came in a request body)."""

    slug = "execution-not-found"
    title = "No such execution"


class AlreadyReversed(Conflict):
    slug = "execution-already-reversed"
    title = "The execution is already reversed"


class ReversalRefused(Conflict):
    slug = "execution-reversal-refused"
    title = "The execution cannot be reversed now"


@dataclass(frozen=True, slots=True)
class Reversal:
    execution_id: str
    account_id: str
    symbol: str
    side: str
    quantity: int
    cash: Decimal  # what the customer's settled cash changed by
    position_after: int
    txn_id: str


def replay_position(executions: list[Execution]) -> tuple[int, Decimal, Decimal]:
    """(quantity, cost basis, realized P&L) after these executions in order, from flat."""
    quantity, cost, realized = 0, ZERO, ZERO
    for e in executions:
        change = apply_execution(
            quantity, cost, buy=e.side == BUY, shares=e.quantity, price=e.price
        )
        quantity, cost, realized = change.quantity, change.cost_basis, realized + change.realized
    return quantity, cost, realized


class ReversalService:
    def __init__(self, deps: TradingDeps) -> None:
        self.deps = deps

    async def execution(self, session: AsyncSession, execution_id: str) -> Execution | None:
        return await repository.execution(session, execution_id)

    async def reversal_of(
        self, session: AsyncSession, execution_id: str
    ) -> ExecutionReversal | None:
        return await repository.reversal_of(session, execution_id)

    async def reverse_execution(
        self,
        session: AsyncSession,
        execution_id: str,
        *,
        reason: str,
        actor: Party,
        account_ids: frozenset[str] | None = None,
        reference: str | None = None,
        approved_by: Party | None = None,
    ) -> Reversal:
        """Reverse one execution by compensating entries, audited; never commits.

        `account_ids`: the accounts the caller may reverse in (a recovery case: the user's
        own), an execution elsewhere is refused as unknown. Refused while the account has
        open orders in the symbol (their reservations were sized on the position that is
        about to change: cancel them first)."""
        reason = reason.strip()
        if len(reason) < 3:
            raise TradingInputError("a reversal needs a reason")
        execution = await repository.execution(session, execution_id)
        if execution is None or (
            account_ids is not None and execution.account_id not in account_ids
        ):
            raise ExecutionNotFound("no such execution in the account")
        account = await repository.account(session, execution.account_id, lock=True)
        if account is None:  # pragma: no cover - the execution's foreign key
            raise ExecutionNotFound("no such execution in the account")
        if await repository.reversal_of(session, execution.id) is not None:
            raise AlreadyReversed("the execution is already reversed")
        if await repository.open_orders_in(session, account.id, execution.symbol):
            raise ReversalRefused(
                f"the account has open orders in {execution.symbol}: cancel them first"
            )
        now = self.deps.clock.now_ns()
        buy = execution.side == BUY
        move = journal.reversal(
            account_id=account.id,
            currency=account.currency,
            symbol=execution.symbol,
            buy=buy,
            quantity=execution.quantity,
            notional=execution.notional,
            fee=execution.fee,
            execution_id=execution.id,
        )
        txn_id = self.deps.ids.new_str()
        repository.changed(account)
        # The reversal row first: a second reversal of the same execution (a parallel one
        # past the check above) fails on its primary key at flush, before the entries.
        row = ExecutionReversal(
            execution_id=execution.id,
            account_id=account.id,
            symbol=execution.symbol,
            txn_id=txn_id,
            reason=reason[:500],
            reference=reference,
            reversed_by=actor.id[:80],
            reversed_ns=now,
        )
        repository.add(session, row)
        await session.flush()
        await repository.post(session, txn_id, move, now)
        position = await self._rebuild_position(session, execution, now)
        cash = (
            (execution.notional + execution.fee) if buy else -(execution.notional - execution.fee)
        )
        await self.deps.audit(
            session,
            TradingEvent.EXECUTION_REVERSED,
            actor=actor,
            subject=Party("account", account.id),
            data={
                "execution_id": execution.id,
                "order_id": execution.order_id,
                "symbol": execution.symbol,
                "side": execution.side,
                "quantity": execution.quantity,
                "price": str(execution.price),
                "notional": str(execution.notional),
                "fee": str(execution.fee),
                "cash": str(cash),
                "position_after": position.quantity,
                "txn_id": txn_id,
                "reason": reason[:500],
                "reference": reference,
                "approved_by": approved_by.as_json() if approved_by is not None else None,
            },
        )
        return Reversal(
            execution_id=execution.id,
            account_id=account.id,
            symbol=execution.symbol,
            side=execution.side,
            quantity=execution.quantity,
            cash=cash,
            position_after=position.quantity,
            txn_id=txn_id,
        )

    async def _rebuild_position(
        self, session: AsyncSession, execution: Execution, now: int
    ) -> Position:
        """The position as the executions not reversed make it (average cost, in order)."""
        reversed_ids = await repository.reversed_execution_ids(session)
        kept = [
            e
            for e in await repository.executions_in_order(
                session, execution.account_id, execution.symbol
            )
            if e.id not in reversed_ids
        ]
        quantity, cost, realized = replay_position(kept)
        row = await repository.position(session, execution.account_id, execution.symbol)
        assert row is not None  # noqa: S101 - every execution made or moved its position
        row.quantity, row.cost_basis, row.realized_pnl = quantity, cost, realized
        row.updated_ns = now
        return row
