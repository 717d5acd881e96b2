"""The trading desk: the flows that cross the database and the venue.

Each flow commits its database change first (acknowledged means committed) and only then
lets the venue act on it; cancels and replaces run while the symbol's book is held still, so
a cancel and a fill never cross.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.risk.domain import AccountStatus, TradingState
from tradeguard.trading import repository
from tradeguard.trading.accounts import AccountService
from tradeguard.trading.common import (
    AccountNotFound,
    OrderConflict,
    OrderNotFound,
    TradingDeps,
)
from tradeguard.trading.domain import OPEN_STATUSES, CancelReason, HaltScope, OrderStatus
from tradeguard.trading.executions import ExecutionRecorder, Notice, order_payload
from tradeguard.trading.halts import HaltOutcome, HaltService
from tradeguard.trading.intake import GroupCommit
from tradeguard.trading.models import Order, RestrictedSecurity, TradingAccount, TradingHalt
from tradeguard.trading.orders import OrderRequest, OrderService, PlaceOutcome
from tradeguard.trading.reference import ReferenceService
from tradeguard.trading.stream import StreamHub
from tradeguard.venue.adapter import Venue

# Work a caller adds to a flow's own transaction (a staff route's line in the customer's
# access log): it commits with the change, or rolls back with it.
AccountWork = Callable[[AsyncSession, TradingAccount], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ReplaceRequest:
    client_order_id: str
    quantity: int
    limit_price: Decimal | None


async def _begin_orders(session: AsyncSession) -> None:
    """Every transaction of the order intake: the control row held shared throughout, and
    the orders' rows staged, to be written together before the commit."""
    await repository.hold_control(session)
    repository.open_staging(session)


def _remember(outcome: PlaceOutcome) -> None:
    if outcome.after_commit is not None:
        outcome.after_commit()


class TradingDesk:
    def __init__(
        self,
        *,
        deps: TradingDeps,
        sessions: async_sessionmaker[AsyncSession],
        orders: OrderService,
        halts: HaltService,
        accounts: AccountService,
        reference: ReferenceService,
        recorder: ExecutionRecorder,
        venue: Venue | None,
        hub: StreamHub,
    ) -> None:
        self.deps = deps
        self.sessions = sessions
        self.orders = orders
        self.halts = halts
        self.accounts = accounts
        self.reference = reference
        self.recorder = recorder
        self.venue = venue
        self.hub = hub
        # Orders are written in group commits (trading/intake.py); each one's memo update
        # runs as soon as its batch is durable.
        self.intake: GroupCommit[PlaceOutcome] = GroupCommit(
            sessions,
            on_commit=_remember,
            prologue=_begin_orders,
            epilogue=deps.write_staged,
            staged=True,
        )

    async def place(
        self,
        *,
        account_id: str,
        user_id: str | None,
        request: OrderRequest,
        actor: Party,
        request_id: str | None = None,
        audit: Sequence[LedgerEvent] = (),
    ) -> PlaceOutcome:
        """`audit`: events (the permission check) to commit with the order, in one
        transaction."""

        async def place_in(session: AsyncSession) -> PlaceOutcome:
            # Everything the order writes is staged, and joins the transaction's rows only
            # if the whole order went through (trading/intake.py).
            rows = repository.StagedWrites()
            try:
                for event in audit:
                    rows.events.append(await self.deps.ledger.stage(session, event))
                outcome = await self.orders.place(
                    session,
                    account_id=account_id,
                    user_id=user_id,
                    request=request,
                    actor=actor,
                    request_id=request_id,
                    writes=rows,
                )
            except BaseException:
                # Its rows are dropped; what staging changed on the session's objects (an
                # account's version, a locate's used quantity) must not outlive them for the
                # later orders of the batch.
                rows.revert()
                raise
            await self.deps.stage(session, rows)
            return outcome

        outcome = await self.intake.run(place_in)
        if outcome.replayed:
            return outcome
        await self.hub.publish(
            [Notice(outcome.order.account_id, "order", order_payload(outcome.order))]
        )
        self._ensure_listed(outcome.order.symbol)
        # Outside the session the order rests in the database only; the books are rebuilt
        # from the open orders at the open (nothing matches while the exchange is closed).
        # When the venue traded or cancelled some of it, answer with the order as it is now.
        if (
            outcome.accepted
            and self.venue is not None
            and self.deps.market_open(self.deps.clock.now_ns())
            and await self.venue.submit(self.recorder.to_venue(outcome.order))
        ):
            return PlaceOutcome(await self.reload(outcome.order.id), replayed=False)
        return outcome

    def _street_halted(self, scope: HaltScope, target: str, *, halted: bool) -> None:
        """Stop (or restart) the simulated street quoting what a market or symbol halt covers."""
        setter = getattr(self.venue, "set_halted", None)
        if setter is not None and scope is not HaltScope.ACCOUNT:
            setter(None if scope is HaltScope.MARKET else target, halted)

    def _ensure_listed(self, symbol: str) -> None:
        """Open the symbol's book if start-up could not (the database was down then)."""
        lister = getattr(self.venue, "list_symbol", None)
        info = self.deps.reference.get(symbol)
        if lister is not None and info is not None:
            lister(symbol, tick=info.tick_size, price=info.reference_price)

    async def reload(self, order_id: str) -> Order:
        async with unit_of_work(self.sessions) as session:
            row = await repository.order(session, order_id)
        if row is None:  # pragma: no cover - orders are never deleted
            raise OrderNotFound("no such order")
        return row

    async def cancel(
        self,
        *,
        account_id: str,
        order_id: str,
        user_id: str | None,
        actor: Party,
        reason: CancelReason = CancelReason.USER,
        request_id: str | None = None,
        within: AccountWork | None = None,
    ) -> Order:
        """Cancel an open order. Never blocked by risk checks, halts or trading state.
        `within` runs in the cancel's transaction, after the cancel, with the account."""
        async with unit_of_work(self.sessions) as session:
            order = await self.orders.get_owned(
                session, account_id=account_id, order_id=order_id, user_id=user_id
            )
        symbol = order.symbol

        async def work() -> Order:
            async with unit_of_work(self.sessions) as session:
                account = await repository.account(session, order.account_id, lock=True)
                if account is None:  # pragma: no cover - accounts are never deleted
                    raise AccountNotFound("no such account")
                rows = await repository.orders_by_ids(session, [order.id])
                row = rows[order.id]
                if row.status not in OPEN_STATUSES:
                    raise OrderConflict(f"too late to cancel: the order is {row.status}")
                await self.orders.close_order(
                    session,
                    row,
                    status=OrderStatus.CANCELLED,
                    reason=reason,
                    actor=actor,
                    request_id=request_id,
                )
                if within is not None:
                    await within(session, account)
                return row

        if self.venue is None:
            row = await work()
        else:
            row = await self.venue.under_lock(symbol, work, remove=[order.id])
        await self.hub.publish([Notice(row.account_id, "order", order_payload(row))])
        return row

    async def replace(
        self,
        *,
        account_id: str,
        order_id: str,
        user_id: str | None,
        request: ReplaceRequest,
        actor: Party,
        request_id: str | None = None,
    ) -> PlaceOutcome:
        """Cancel-replace: the old order closes and the new one is checked as a fresh order
        (with the old reservation given back) in one transaction; if the new one is refused,
        the old one stays exactly as it was."""
        async with unit_of_work(self.sessions) as session:
            old = await self.orders.get_owned(
                session, account_id=account_id, order_id=order_id, user_id=user_id
            )
        symbol = old.symbol

        async def work() -> PlaceOutcome:
            async with unit_of_work(self.sessions) as session:
                await repository.hold_control(session)
                await repository.account(session, old.account_id, lock=True)
                row = (await repository.orders_by_ids(session, [old.id]))[old.id]
                existing = await repository.order_by_client_id(
                    session, row.account_id, request.client_order_id
                )
                if existing is not None and existing.replaces_order_id == row.id:
                    return PlaceOutcome(existing, replayed=True)
                if row.status not in OPEN_STATUSES:
                    raise OrderConflict(f"too late to replace: the order is {row.status}")
                new_request = OrderRequest(
                    client_order_id=request.client_order_id,
                    symbol=row.symbol,
                    side=Side(row.side),
                    order_type=OrderType(row.order_type),
                    time_in_force=TimeInForce(row.time_in_force),
                    quantity=request.quantity,
                    limit_price=request.limit_price,
                )
                new_request.validate()
                savepoint = await session.begin_nested()
                await self.orders.close_order(
                    session,
                    row,
                    status=OrderStatus.REPLACED,
                    reason=CancelReason.REPLACED,
                    actor=actor,
                    request_id=request_id,
                )
                outcome = await self.orders.place(
                    session,
                    account_id=row.account_id,
                    user_id=None,
                    request=new_request,
                    actor=actor,
                    request_id=request_id,
                    replaces=row,
                )
                if outcome.replayed:
                    await savepoint.rollback()
                    await session.refresh(outcome.order)
                    return outcome
                if not outcome.accepted:
                    # Keep the refusal (its audit event and order row) but not the replacement:
                    # roll back to before the old order was closed, then record the reject.
                    code = outcome.order.reject_code
                    detail = outcome.order.reject_detail
                    await savepoint.rollback()
                    # The rollback expired what the savepoint touched: reload before reading.
                    await session.refresh(row)
                    rejected = await self.orders.record_rejected_replace(
                        session,
                        old=row,
                        request=new_request,
                        code=code,
                        detail=detail,
                        actor=actor,
                        request_id=request_id,
                    )
                    return PlaceOutcome(rejected, replayed=False)
                await savepoint.commit()
                row.replaced_by_order_id = outcome.order.id
                return outcome

        if self.venue is None:
            outcome = await work()
        else:
            outcome = await self.venue.under_lock(symbol, work, remove=[old.id])
        if (
            outcome.accepted
            and not outcome.replayed
            and self.venue is not None
            and self.deps.market_open(self.deps.clock.now_ns())
        ):
            # The old order left the book inside the lock only if the replace went through.
            await self.venue.submit(self.recorder.to_venue(outcome.order))
            outcome = PlaceOutcome(await self.reload(outcome.order.id), replayed=False)
        return outcome

    async def halt(
        self,
        *,
        scope: HaltScope,
        target: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
        within: AccountWork | None = None,
    ) -> HaltOutcome:
        """Start a halt. For an account halt `within` runs in the halt's transaction, after
        it, with the account (the customer's access-log line); other scopes name no
        customer and never call it."""
        async with unit_of_work(self.sessions) as session:
            outcome = await self.halts.halt(
                session,
                scope=scope,
                target=target,
                reason=reason,
                actor=actor,
                request_id=request_id,
            )
            await self._within_account(session, scope, outcome.halt.target, within)
        await self._after_halt(outcome.cancelled)
        self._street_halted(scope, outcome.halt.target, halted=True)
        return outcome

    async def resume(
        self,
        *,
        scope: HaltScope,
        target: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
        within: AccountWork | None = None,
    ) -> TradingHalt:
        """Lift a halt; `within` as for `halt`."""
        async with unit_of_work(self.sessions) as session:
            halt = await self.halts.resume(
                session,
                scope=scope,
                target=target,
                reason=reason,
                actor=actor,
                request_id=request_id,
            )
            await self._within_account(session, scope, halt.target, within)
        self._street_halted(scope, halt.target, halted=False)
        return halt

    async def _within_account(
        self,
        session: AsyncSession,
        scope: HaltScope,
        target: str,
        within: AccountWork | None,
    ) -> None:
        if within is None or scope is not HaltScope.ACCOUNT:
            return
        account = await repository.account(session, target)
        if account is None:  # pragma: no cover - the halt service checked it
            raise AccountNotFound("no such account")
        await within(session, account)

    async def restrict(
        self, *, symbol: str, reason: str, actor: Party, request_id: str | None = None
    ) -> RestrictedSecurity:
        """Put a symbol on the restricted list and cancel the resting orders that would open
        or add to a position in it (closing orders stay: customers may still get out)."""
        async with unit_of_work(self.sessions) as session:
            row = await self.reference.restrict(
                session, symbol=symbol, reason=reason, actor=actor, request_id=request_id
            )
            cancelled = await self.orders.cancel_open(
                session,
                symbol=row.symbol,
                opening_only=True,
                reason=CancelReason.RESTRICTED,
                actor=actor,
                request_id=request_id,
            )
        await self._after_halt(cancelled)
        return row

    async def set_account_status(
        self,
        *,
        account_id: str,
        status: AccountStatus | None,
        trading_state: TradingState | None,
        reason: str,
        actor: Party,
        request_id: str | None = None,
        within: AccountWork | None = None,
    ) -> TradingAccount:
        """Change an account's status or trading state; orders it may no longer have are
        cancelled with it (closing-only or REDUCING: opening orders; suspended: all).
        `within` runs in the change's transaction, after it, with the account."""
        async with unit_of_work(self.sessions) as session:
            account = await self.accounts.set_status(
                session,
                account_id=account_id,
                status=status,
                trading_state=trading_state,
                reason=reason,
                actor=actor,
                request_id=request_id,
            )
            cancelled: list[Order] = []
            if account.status in {AccountStatus.SUSPENDED, AccountStatus.CLOSED}:
                opening_only: bool | None = False
            elif (
                account.status == AccountStatus.CLOSING_ONLY
                or account.trading_state == TradingState.REDUCING
            ):
                opening_only = True
            else:
                opening_only = None
            if opening_only is not None:
                cancelled = await self.orders.cancel_open(
                    session,
                    account_id=account.id,
                    opening_only=opening_only,
                    reason=CancelReason.ACCOUNT_STATUS,
                    actor=actor,
                    request_id=request_id,
                )
            if within is not None:
                await within(session, account)
        await self._after_halt(cancelled)
        return account

    async def after_cancel(self, cancelled: Sequence[Order]) -> None:
        """Orders another domain cancelled in its own committed transaction (surveillance's
        automatic actions): drop them from the venue's books and tell their owners."""
        await self._after_halt(cancelled)

    async def _after_halt(self, cancelled: Sequence[Order]) -> None:
        if self.venue is not None:
            by_symbol: dict[str, list[str]] = {}
            for order in cancelled:
                by_symbol.setdefault(order.symbol, []).append(order.id)
            for symbol, ids in by_symbol.items():
                await self.venue.purge(symbol, ids)
        await self.hub.publish([Notice(o.account_id, "order", order_payload(o)) for o in cancelled])
