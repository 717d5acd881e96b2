"""Orders: place (through the pre-trade pipeline), cancel, cancel-replace, and reads.

Placing an order is one transaction: the control row is taken shared (a halt cannot slip
between the check and the commit), the account row is locked (its concurrent orders queue),
the snapshot is read, the pipeline decides, and the order row, its reservation in the money
journal and its audit event are written together. The client is answered only after the
commit (acknowledged means committed); the venue sees the order after that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.errors import TradeguardError
from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.risk.domain import (
    REJECT_DESCRIPTIONS,
    OrderIntent,
    RejectCode,
    RiskDecision,
)
from tradeguard.risk.pipeline import evaluate
from tradeguard.trading import journal, repository
from tradeguard.trading.accounts import AccountService
from tradeguard.trading.common import (
    ClientOrderIdReused,
    OrderConflict,
    OrderNotFound,
    TradingDeps,
    TradingInputError,
)
from tradeguard.trading.domain import (
    OPEN_STATUSES,
    ZERO,
    CancelReason,
    OrderStatus,
    request_hash,
)
from tradeguard.trading.events import RiskEvent, TradingEvent
from tradeguard.trading.metrics import TradingMetrics
from tradeguard.trading.models import Order, TradingAccount
from tradeguard.trading.snapshots import AccountMemo, SnapshotBuilder, remaining

MAX_QUANTITY = 1_000_000_000


class OrderRejected(TradeguardError):
    """The pre-trade pipeline refused the order; `code` is the stable reject reason."""

    status = 422
    slug = "order-rejected"
    title = "Order rejected by pre-trade checks"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: int
    limit_price: Decimal | None

    def validate(self) -> None:
        """Shape rules that hold before any check (defence in depth behind the schema)."""
        if not 1 <= self.quantity <= MAX_QUANTITY:
            raise TradingInputError(f"quantity must be between 1 and {MAX_QUANTITY}")
        if self.order_type is OrderType.LIMIT:
            if self.limit_price is None:
                raise TradingInputError("a limit order needs limit_price")
            if not self.limit_price.is_finite() or self.limit_price <= 0:
                raise TradingInputError("limit_price must be a positive decimal")
        elif self.limit_price is not None:
            raise TradingInputError("a market order takes no limit_price")
        if self.order_type is OrderType.MARKET and self.time_in_force is TimeInForce.GTC:
            raise TradingInputError("a market order is DAY or IOC, never GTC")

    def fingerprint(self) -> str:
        return request_hash(
            {
                "symbol": self.symbol,
                "side": self.side.value,
                "type": self.order_type.value,
                "tif": self.time_in_force.value,
                "quantity": self.quantity,
                "limit_price": str(self.limit_price) if self.limit_price is not None else None,
            }
        )


@dataclass(frozen=True, slots=True)
class PlaceOutcome:
    order: Order
    replayed: bool
    # Run once the transaction committed: keeps the account's cached view current.
    after_commit: Callable[[], None] | None = None

    @property
    def accepted(self) -> bool:
        return self.order.status != OrderStatus.REJECTED


def order_data(order: Order) -> dict[str, Any]:
    """The audited description of an order (AUD-1): everything a regulator asks for."""
    return {
        "order_id": order.id,
        "account_id": order.account_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side,
        "type": order.order_type,
        "time_in_force": order.time_in_force,
        "quantity": order.quantity,
        "limit_price": str(order.limit_price) if order.limit_price is not None else None,
        "status": order.status,
        "filled_quantity": order.filled_quantity,
    }


def reject_decision(code: RejectCode, check: str, detail: str) -> RiskDecision:
    return RiskDecision(
        accepted=False,
        code=code,
        check=check,
        detail=detail,
        reducing=False,
        hold_cash=ZERO,
        hold_shares=0,
        locate_use=0,
        preborrow=False,
        day_trade=False,
        notional=ZERO,
        protective_price=None,
    )


def rejection(order: Order) -> OrderRejected:
    code = order.reject_code or ""
    return OrderRejected(
        order.reject_detail or REJECT_DESCRIPTIONS.get(RejectCode(code), code),
        code=code,
        order_id=order.id,
        client_order_id=order.client_order_id,
    )


class OrderService:
    def __init__(
        self,
        deps: TradingDeps,
        accounts: AccountService,
        snapshots: SnapshotBuilder,
        metrics: TradingMetrics,
    ) -> None:
        self.deps = deps
        self.accounts = accounts
        self.snapshots = snapshots
        self.metrics = metrics

    # Place ------------------------------------------------------------------------------------

    async def place(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        user_id: str | None,
        request: OrderRequest,
        actor: Party,
        request_id: str | None = None,
        replaces: Order | None = None,
        writes: repository.StagedWrites | None = None,
    ) -> PlaceOutcome:
        """Run the pre-trade pipeline and record the order (accepted or refused).

        `user_id` restricts the account to its owner (None: staff acting on any account).
        The order's rows are staged in `writes` for the caller to write (a group commit, which
        keeps them only if the whole order went through), or written before this returns.
        """
        request.validate()
        # Lock order everywhere: control row, then account rows (by id), then order rows. A
        # group commit took the control row once for all of its orders (trading/intake.py).
        version = repository.held_control(session)
        if version is None:
            version = await repository.lock_control(session, exclusive=False)
        if user_id is None:
            account = await self.accounts.get(session, account_id, lock=True)
        else:
            account = await self.accounts.owned(session, account_id, user_id, lock=True)
        fingerprint = request.fingerprint()
        existing = repository.staged_order(session, account.id, request.client_order_id)
        if existing is None:
            existing = await repository.order_by_client_id(
                session, account.id, request.client_order_id
            )
        if existing is not None:
            if existing.request_hash != fingerprint:
                raise ClientOrderIdReused(
                    "this client_order_id was used for a different order; use a new one",
                    code="CLIENT_ORDER_ID_REUSED",
                    order_id=existing.id,
                )
            return PlaceOutcome(existing, replayed=True)
        rows = writes if writes is not None else repository.StagedWrites()
        await self.deps.reference.ensure(session, version)
        intent = OrderIntent(
            account_id=account.id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.order_type,
            time_in_force=request.time_in_force,
            quantity=request.quantity,
            limit_price=request.limit_price,
            client_order_id=request.client_order_id,
            replaces_order_id=replaces.id if replaces else None,
        )
        info = self.deps.reference.get(request.symbol)
        memo = None
        if info is None:
            decision = reject_decision(
                RejectCode.INSTRUMENT_UNKNOWN, "instrument_known", "no such instrument"
            )
        else:
            snapshot, memo = await self.snapshots.build(
                session, account=account, info=info, intent=intent, rows=rows
            )
            decision = evaluate(intent, snapshot)
        order = self._order_row(account, request, fingerprint, decision, replaces)
        if decision.accepted and decision.locate_use > 0:
            order.preborrow_quantity = await self._use_locates(
                session, rows, account.id, order.symbol, decision.locate_use
            )
        rows.add_order(order)
        rows.changed(account)
        after_commit = self._remember(rows, account.id, memo, order, account.version)
        if not decision.accepted:
            await self._record_reject(
                session, rows, order, decision, actor=actor, request_id=request_id
            )
        else:
            self._reserve(rows, account, order, decision)
            rows.events.append(
                await self.deps.ledger.stage(
                    session,
                    LedgerEvent(
                        type=TradingEvent.ORDER_PLACED,
                        actor=actor,
                        subject=Party("account", account.id),
                        data={
                            **order_data(order),
                            "reducing": decision.reducing,
                            "hold_cash": str(decision.hold_cash),
                            "hold_shares": decision.hold_shares,
                            "replaces_order_id": order.replaces_order_id,
                        },
                        request_id=request_id,
                    ),
                )
            )
            self.metrics.order_accepted()
        if writes is None:
            await self.deps.write_staged(session, rows)
        return PlaceOutcome(order, replayed=False, after_commit=after_commit)

    def _remember(
        self,
        rows: repository.StagedWrites,
        account_id: str,
        memo: AccountMemo | None,
        order: Order,
        version: int,
    ) -> Callable[[], None] | None:
        """What the account looks like once the order is in: to later orders of this
        transaction at once (staged), to everyone once it committed (the callback)."""
        if memo is None:
            return None
        snapshots = self.snapshots
        after = snapshots.after_order(memo, order, version=version)
        rows.memos[account_id] = after

        def remember() -> None:
            snapshots.remember(account_id, after)

        return remember

    def _order_row(
        self,
        account: TradingAccount,
        request: OrderRequest,
        fingerprint: str,
        decision: RiskDecision,
        replaces: Order | None,
    ) -> Order:
        now = self.deps.clock.now_ns()
        accepted = decision.accepted
        return Order(
            id=self.deps.ids.new_str(),
            account_id=account.id,
            client_order_id=request.client_order_id,
            request_hash=fingerprint,
            symbol=request.symbol,
            side=request.side.value,
            order_type=request.order_type.value,
            time_in_force=request.time_in_force.value,
            quantity=request.quantity,
            limit_price=request.limit_price,
            status=(OrderStatus.NEW if accepted else OrderStatus.REJECTED).value,
            open=accepted,
            filled_quantity=0,
            filled_notional=ZERO,
            fees=ZERO,
            hold_cash=decision.hold_cash if accepted else ZERO,
            hold_shares=decision.hold_shares if accepted else 0,
            locate_quantity=decision.locate_use if accepted else 0,
            preborrow_quantity=0,
            reducing=decision.reducing,
            day_trade=False,
            reject_code=decision.code.value if decision.code else None,
            reject_detail=(decision.detail or "")[:300] if decision.code else None,
            replaces_order_id=replaces.id if replaces else None,
            trading_date=self.deps.session_date(now).isoformat(),
            created_ns=now,
            updated_ns=now,
        )

    async def _record_reject(
        self,
        session: AsyncSession,
        rows: repository.StagedWrites,
        order: Order,
        decision: RiskDecision,
        *,
        actor: Party,
        request_id: str | None,
    ) -> None:
        # Every reject is a risk event (AUD-1) and a metric; the order row keeps the answer so
        # a retry with the same client order id gets the same one.
        rows.events.append(
            await self.deps.ledger.stage(
                session,
                LedgerEvent(
                    type=RiskEvent.PRETRADE_REJECTED,
                    actor=actor,
                    subject=Party("account", order.account_id),
                    data={
                        **order_data(order),
                        "code": order.reject_code,
                        "check": decision.check,
                        "detail": order.reject_detail,
                    },
                    request_id=request_id,
                ),
            )
        )
        self.metrics.order_rejected(order.reject_code or "")

    def _reserve(
        self,
        rows: repository.StagedWrites,
        account: TradingAccount,
        order: Order,
        decision: RiskDecision,
    ) -> None:
        now = self.deps.clock.now_ns()
        if decision.hold_cash > 0:
            move = journal.hold_cash(account.id, account.currency, decision.hold_cash, order.id)
            rows.post(self.deps.ids.new_str(), move, now)
        if decision.hold_shares > 0:
            move = journal.hold_shares(account.id, order.symbol, decision.hold_shares, order.id)
            rows.post(self.deps.ids.new_str(), move, now)

    async def _use_locates(
        self,
        session: AsyncSession,
        rows: repository.StagedWrites,
        account_id: str,
        symbol: str,
        quantity: int,
    ) -> int:
        """Consume locates for a short sale; returns how much of it is pre-borrowed."""
        now = self.deps.clock.now_ns()
        await self.deps.write_staged(session)  # the locates earlier orders used
        # Pre-borrows first (shares already borrowed), then locates, oldest first.
        found = sorted(
            await repository.locates_for(session, account_id, symbol, now),
            key=lambda r: (r.kind != "preborrow", r.created_ns),
        )
        left = quantity
        preborrowed = 0
        for row in found:
            take = min(left, row.quantity - row.used_quantity)
            rows.use_locate(row, take)
            if row.kind == "preborrow":
                preborrowed += take
            left -= take
            if left == 0:
                return preborrowed
        # The pipeline counted the same rows under the same lock; anything else is a bug.
        raise RuntimeError("locate quantity changed under the account lock")

    async def record_rejected_replace(
        self,
        session: AsyncSession,
        *,
        old: Order,
        request: OrderRequest,
        code: str | None,
        detail: str | None,
        actor: Party,
        request_id: str | None,
    ) -> Order:
        """Keep a refused replacement on record (the original order stays untouched)."""
        account = await self.accounts.get(session, old.account_id)
        decision = reject_decision(RejectCode(code or ""), "replace", detail or "")
        order = self._order_row(account, request, request.fingerprint(), decision, old)
        repository.add(session, order)
        await session.flush()
        rows = repository.StagedWrites()
        await self._record_reject(
            session, rows, order, decision, actor=actor, request_id=request_id
        )
        await self.deps.write_staged(session, rows)
        return order

    # Release (cancel, expiry, halt, IOC remainder) -----------------------------------------------

    async def close_order(
        self,
        session: AsyncSession,
        order: Order,
        *,
        status: OrderStatus,
        reason: CancelReason,
        actor: Party,
        request_id: str | None = None,
    ) -> None:
        """Close an open order: give back what it still reserves, and audit why."""
        if order.status not in OPEN_STATUSES:
            raise OrderConflict(f"the order is already {order.status}")
        now = self.deps.clock.now_ns()
        account = await self.accounts.get(session, order.account_id)
        repository.changed(account)
        if order.hold_cash or order.hold_shares:
            move = journal.release(
                account_id=account.id,
                currency=account.currency,
                symbol=order.symbol,
                cash=order.hold_cash,
                shares=order.hold_shares,
                order_id=order.id,
            )
            await repository.post(session, self.deps.ids.new_str(), move, now)
        unused_locate = order.locate_quantity
        if unused_locate and order.side == Side.SELL_SHORT:
            # Shares not sold short give their locate back (oldest promise last).
            await self._return_locates(session, order, unused_locate - self._locate_spent(order))
        order.hold_cash = ZERO
        order.hold_shares = 0
        order.status = status.value
        order.open = False
        order.cancel_reason = reason.value
        order.updated_ns = now
        event = {
            OrderStatus.EXPIRED: TradingEvent.ORDER_EXPIRED,
            OrderStatus.REPLACED: TradingEvent.ORDER_REPLACED,
        }.get(status, TradingEvent.ORDER_CANCELLED)
        await self.deps.audit(
            session,
            event,
            actor=actor,
            subject=Party("account", order.account_id),
            data={**order_data(order), "reason": reason.value, "unfilled": remaining(order)},
            request_id=request_id,
        )

    @staticmethod
    def _locate_spent(order: Order) -> int:
        return min(order.filled_quantity, order.locate_quantity)

    async def _return_locates(self, session: AsyncSession, order: Order, quantity: int) -> None:
        """Give an unsold short remainder's locate quantity back (newest locates first)."""
        if quantity <= 0:
            return
        now = self.deps.clock.now_ns()
        rows = [
            r
            for r in await repository.locates_of(session, order.account_id, 1000)
            if r.symbol == order.symbol and r.used_quantity > 0 and r.expires_ns > now
        ]
        left = quantity
        for row in sorted(rows, key=lambda r: (r.kind == "preborrow", -r.created_ns)):
            give = min(left, row.used_quantity)
            row.used_quantity -= give
            left -= give
            if left == 0:
                break
        order.locate_quantity -= quantity - left

    async def cancel_open(
        self,
        session: AsyncSession,
        *,
        symbol: str | None = None,
        account_id: str | None = None,
        opening_only: bool,
        reason: CancelReason,
        actor: Party,
        request_id: str | None = None,
    ) -> list[Order]:
        """Cancel the open orders of a symbol or an account (only those that would open or add
        to a position, with `opening_only`); accounts are locked by id first."""
        rows = [
            o
            for o in await repository.open_orders(session, symbol=symbol, account_id=account_id)
            if not (opening_only and o.reducing)
        ]
        for owner in sorted({o.account_id for o in rows}):
            await repository.account(session, owner, lock=True)
        for order in rows:
            await self.close_order(
                session,
                order,
                status=OrderStatus.CANCELLED,
                reason=reason,
                actor=actor,
                request_id=request_id,
            )
        return rows

    # Reads ---------------------------------------------------------------------------------------

    async def get_owned(
        self, session: AsyncSession, *, account_id: str, order_id: str, user_id: str | None
    ) -> Order:
        if user_id is not None:
            await self.accounts.owned(session, account_id, user_id)
        row = await repository.order(session, order_id, account_id=account_id)
        if row is None:
            raise OrderNotFound("no such order")
        return row

    async def list(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        user_id: str | None,
        open_only: bool,
        before_ns: int | None,
        limit: int,
    ) -> Sequence[Order]:
        if user_id is not None:
            await self.accounts.owned(session, account_id, user_id)
        return await repository.orders_of(
            session, account_id, open_only=open_only, before_ns=before_ns, limit=limit
        )
