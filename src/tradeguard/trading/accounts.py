"""Accounts: opening, balances derived from the journal, admin adjustments, status,
trading state and per-account limits."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.errors import InvalidInput
from tradeguard.ledger.domain import Party
from tradeguard.ledger.service import latest_about, latest_event_id_about
from tradeguard.risk.buying_power import buying_power
from tradeguard.risk.domain import (
    AccountState,
    AccountStatus,
    AccountType,
    RiskLimits,
    TradingState,
)
from tradeguard.trading import journal, repository
from tradeguard.trading.common import AccountNotFound, TradingDeps, TradingInputError
from tradeguard.trading.domain import ZERO
from tradeguard.trading.events import TradingEvent
from tradeguard.trading.journal import Movement
from tradeguard.trading.models import (
    AccountDay,
    BookBalance,
    Execution,
    JournalEntry,
    JournalTransaction,
    TradingAccount,
)

MAX_ADJUSTMENT = Decimal(10_000_000)


class PositionLike(Protocol):
    @property
    def symbol(self) -> str: ...

    @property
    def quantity(self) -> int: ...

    @property
    def cost_basis(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class Balances:
    """An account's money, derived from its journal books."""

    cash_settled: Decimal
    cash_unsettled: Decimal
    cash_held: Decimal
    shares: dict[str, int]
    shares_held: dict[str, int]
    # Cash of withdrawals requested and not yet paid or given back (funds/).
    cash_withdrawing: Decimal = ZERO


def balances_from(account_id: str, currency: str, rows: Sequence[BookBalance]) -> Balances:
    cash_book = journal.cash_book(account_id)
    unsettled_book = journal.unsettled_book(account_id)
    withdrawing_book = journal.withdrawing_book(account_id)
    settled = unsettled = held = withdrawing = ZERO
    shares: dict[str, int] = {}
    shares_held: dict[str, int] = {}
    prefix = journal.position_book(account_id, "")
    for row in rows:
        if row.book == cash_book and row.asset == currency:
            if row.phase == journal.Phase.POSTED:
                settled += row.amount
            else:
                held -= row.amount
        elif row.book == unsettled_book and row.phase == journal.Phase.POSTED:
            unsettled += row.amount
        elif row.book == withdrawing_book and row.phase == journal.Phase.POSTED:
            withdrawing += row.amount
        elif row.book.startswith(prefix):
            symbol = row.book[len(prefix) :]
            if row.phase == journal.Phase.POSTED:
                shares[symbol] = int(row.amount)
            else:
                shares_held[symbol] = int(-row.amount)
    return Balances(settled, unsettled, held, shares, shares_held, withdrawing)


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    quantity: int
    held_for_sale: int
    average_price: Decimal | None
    mark_price: Decimal | None
    market_value: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class AccountView:
    account: TradingAccount
    balances: Balances
    state: AccountState
    buying_power: Decimal
    positions: list[PositionView]
    day_trades: int
    pdt_flagged: bool
    limits: RiskLimits


def effective_limits(base: RiskLimits, account: TradingAccount) -> RiskLimits:
    """The firm's limits with this account's overrides."""
    changes: dict[str, object] = {}
    for name in (
        "max_order_quantity",
        "max_order_notional",
        "position_limit",
        "gross_exposure_cap",
        "daily_loss_limit",
        "max_orders_per_second",
    ):
        value = getattr(account, name)
        if value is not None:
            changes[name] = value
    return replace(base, **changes) if changes else base  # type: ignore[arg-type]


class AccountService:
    def __init__(self, deps: TradingDeps) -> None:
        self.deps = deps

    # Opening and reading ---------------------------------------------------------------------

    async def open_account(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        account_type: AccountType,
        actor: Party,
        request_id: str | None = None,
    ) -> TradingAccount:
        """Open a cash or margin account: active at once, or PENDING while the onboarding
        gate (KYC-2) says the customer's account application is not approved yet."""
        now = self.deps.clock.now_ns()
        gate = self.deps.onboarding
        status = AccountStatus.ACTIVE
        if gate is not None and not await gate.cleared(session, user_id):
            status = AccountStatus.PENDING
        number = await self._new_number(session)
        row = TradingAccount(
            id=self.deps.ids.new_str(),
            number=number,
            user_id=user_id,
            account_type=account_type.value,
            status=status.value,
            trading_state=TradingState.ACTIVE.value,
            currency="USD",
            created_ns=now,
            updated_ns=now,
        )
        repository.add(session, row)
        await session.flush()
        opened: dict[str, object] = {
            "user_id": user_id,
            "account_type": row.account_type,
            "number": number,
        }
        if status is AccountStatus.PENDING:
            opened["status"] = status.value
        await self.deps.audit(
            session,
            TradingEvent.ACCOUNT_OPENED,
            actor=actor,
            subject=Party("account", row.id),
            data=opened,
            request_id=request_id,
        )
        return row

    async def _new_number(self, session: AsyncSession) -> str:
        while True:
            number = "TG" + "".join(secrets.choice("0123456789") for _ in range(8))
            if not await repository.account_number_taken(session, number):
                return number

    async def owned(
        self, session: AsyncSession, account_id: str, user_id: str, *, lock: bool = False
    ) -> TradingAccount:
        """The account if `user_id` owns it; otherwise 404 (never 403: that would confirm it
        exists)."""
        row = await repository.account(session, account_id, user_id=user_id, lock=lock)
        if row is None:
            raise AccountNotFound("no such account")
        return row

    async def get(
        self, session: AsyncSession, account_id: str, *, lock: bool = False
    ) -> TradingAccount:
        row = await repository.account(session, account_id, lock=lock)
        if row is None:
            raise AccountNotFound("no such account")
        return row

    async def list_for(self, session: AsyncSession, user_id: str) -> Sequence[TradingAccount]:
        return await repository.accounts_of(session, user_id)

    async def owners_of(self, session: AsyncSession, account_ids: Sequence[str]) -> dict[str, str]:
        """The user who owns each of these accounts (unknown ids are left out): how
        surveillance finds an account's beneficial owner."""
        return await repository.account_owners(session, account_ids)

    async def last_status_change(self, session: AsyncSession, account_id: str) -> str | None:
        """The ledger event id of the account's newest status change (None: never changed):
        the same id later means no status change since, even one changed back (A -> B -> A)."""
        return await latest_event_id_about(
            session, subject_id=account_id, event_types=[TradingEvent.ACCOUNT_STATUS_CHANGED]
        )

    async def last_status_change_ns(self, session: AsyncSession, account_id: str) -> int | None:
        """When the account's status last changed (None: never)."""
        return await latest_about(
            session, subject_id=account_id, event_types=[TradingEvent.ACCOUNT_STATUS_CHANGED]
        )

    async def traders_among(self, session: AsyncSession, user_ids: Sequence[str]) -> set[str]:
        """The users among `user_ids` who have traded: a trading account of theirs has at
        least one execution. How surveillance tells active traders from users who never
        traded (throwaway sign-ups) when it judges shared devices and networks."""
        return await repository.users_with_executions(session, user_ids)

    async def list_all(self, session: AsyncSession) -> Sequence[TradingAccount]:
        return await repository.all_accounts(session)

    async def page(
        self, session: AsyncSession, *, user_id: str | None, after: str | None, limit: int
    ) -> Sequence[TradingAccount]:
        """At most `limit` accounts (of one user, or of all), the next after account `after`."""
        return await repository.accounts_page(session, user_id=user_id, after=after, limit=limit)

    async def executions(
        self, session: AsyncSession, account_id: str, *, limit: int
    ) -> Sequence[Execution]:
        return await repository.executions_of(session, account_id, limit=limit)

    async def journal(
        self, session: AsyncSession, account_id: str, *, limit: int
    ) -> tuple[Sequence[JournalTransaction], Sequence[JournalEntry]]:
        """The account's movements, newest first, with every entry of each."""
        txns = await repository.journal_page(session, account_id, before_ns=None, limit=limit)
        return txns, await repository.entries_of(session, [t.id for t in txns])

    async def view(self, session: AsyncSession, account: TradingAccount) -> AccountView:
        rows = await repository.balances(session, account.id)
        balances = balances_from(account.id, account.currency, rows)
        positions = await repository.positions(session, account.id)
        state = await self.account_state(session, account, balances, positions)
        limits = effective_limits(self.deps.policy.limits, account)
        days = self.deps.calendar.business_days_ending(self.trading_date(), limits.pdt_window_days)
        day_list = [d.isoformat() for d in days]
        day_trades = await repository.day_trades_in(session, account.id, day_list)
        total = await repository.executed_orders_in(session, account.id, day_list)
        pdt_flagged = (
            account.account_type == AccountType.MARGIN
            and day_trades >= limits.pdt_day_trades
            and total > 0
            and Decimal(day_trades) / Decimal(total) > limits.pdt_min_share
        )
        views = []
        for pos in positions:
            if pos.quantity == 0 and pos.realized_pnl == 0:
                continue
            mark = self.mark(pos.symbol)
            average = pos.cost_basis / pos.quantity if pos.quantity else None
            value = mark * pos.quantity if mark is not None else None
            views.append(
                PositionView(
                    symbol=pos.symbol,
                    quantity=pos.quantity,
                    held_for_sale=balances.shares_held.get(pos.symbol, 0),
                    average_price=average,
                    mark_price=mark,
                    market_value=value,
                    unrealized_pnl=(value - pos.cost_basis) if value is not None else None,
                    realized_pnl=pos.realized_pnl,
                )
            )
        return AccountView(
            account=account,
            balances=balances,
            state=state,
            buying_power=buying_power(state, limits),
            positions=views,
            day_trades=day_trades,
            pdt_flagged=pdt_flagged,
            limits=limits,
        )

    def trading_date(self) -> date:
        return self.deps.session_date(self.deps.clock.now_ns())

    def mark(self, symbol: str) -> Decimal | None:
        live = self.deps.market.mark_price(symbol)
        if live is not None:
            return live
        info = self.deps.reference.get(symbol)
        return info.reference_price if info else None

    def state_from(
        self, account: TradingAccount, balances: Balances, positions: Sequence[PositionLike]
    ) -> AccountState:
        """The account's state at current marks (start-of-day equity still to be filled in)."""
        long_value = short_value = ZERO
        for pos in positions:
            if pos.quantity == 0:
                continue
            mark = self.mark(pos.symbol)
            if mark is None:
                # No price at all: value at cost, the only figure there is.
                mark = abs(pos.cost_basis / pos.quantity)
            if pos.quantity > 0:
                long_value += mark * pos.quantity
            else:
                short_value += mark * -pos.quantity
        return AccountState(
            account_id=account.id,
            account_type=AccountType(account.account_type),
            status=AccountStatus(account.status),
            trading_state=TradingState(account.trading_state),
            cash_settled=balances.cash_settled,
            cash_unsettled=balances.cash_unsettled,
            cash_held=balances.cash_held,
            long_market_value=long_value,
            short_market_value=short_value,
            start_of_day_equity=ZERO,
        )

    async def account_state(
        self,
        session: AsyncSession,
        account: TradingAccount,
        balances: Balances,
        positions: Sequence[PositionLike],
    ) -> AccountState:
        state = self.state_from(account, balances, positions)
        start = await self.start_of_day_equity(session, account.id, state.equity)
        return replace(state, start_of_day_equity=start)

    async def start_of_day_equity(
        self,
        session: AsyncSession,
        account_id: str,
        current_equity: Decimal,
        *,
        rows: repository.StagedWrites | None = None,
    ) -> Decimal:
        """Recorded on the account's first activity of the trading day (daily loss limit);
        staged in `rows` if given."""
        day = self.deps.session_date(self.deps.clock.now_ns()).isoformat()
        row = await repository.account_day(session, account_id, day)
        if row is None:
            row = AccountDay(
                account_id=account_id,
                trading_date=day,
                start_equity=current_equity,
                created_ns=self.deps.clock.now_ns(),
            )
            if rows is None:
                repository.add(session, row)
            else:
                rows.add_day(row)
        return row.start_equity

    # Staff actions -------------------------------------------------------------------------------

    async def adjust(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        amount: Decimal,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> None:
        """Credit (or debit) settled cash: audited, reason required (demo cash, corrections)."""
        reason = reason.strip()
        if len(reason) < 3:
            raise TradingInputError("an adjustment needs a reason")
        if amount == 0 or abs(amount) > MAX_ADJUSTMENT:
            raise TradingInputError(f"amount must be non-zero and at most {MAX_ADJUSTMENT}")
        if amount != amount.quantize(Decimal("0.01")):
            raise TradingInputError("amount has more decimal places than USD allows")
        account = await self.get(session, account_id, lock=True)
        if amount < 0:
            rows = await repository.balances(session, account.id)
            balances = balances_from(account.id, account.currency, rows)
            free = balances.cash_settled + balances.cash_unsettled - balances.cash_held
            if free + amount < 0:
                # Unsettled purchases are owed already: they count against what may leave.
                raise TradingInputError("the debit exceeds the account's free cash")
        repository.changed(account)
        move = journal.adjustment(account.id, account.currency, amount, reason)
        await repository.post(session, self.deps.ids.new_str(), move, self.deps.clock.now_ns())
        # Money in or out is not a trading loss or gain: move the day's starting point too.
        day = self.deps.session_date(self.deps.clock.now_ns()).isoformat()
        day_row = await repository.account_day(session, account.id, day)
        if day_row is not None:
            day_row.start_equity = day_row.start_equity + amount
        await self.deps.audit(
            session,
            TradingEvent.ACCOUNT_ADJUSTED,
            actor=actor,
            subject=Party("account", account.id),
            data={"amount": str(amount), "currency": account.currency, "reason": reason},
            request_id=request_id,
        )

    async def balances(self, session: AsyncSession, account: TradingAccount) -> Balances:
        return balances_from(
            account.id, account.currency, await repository.balances(session, account.id)
        )

    async def post_money_movement(
        self, session: AsyncSession, account: TradingAccount | None, move: Movement
    ) -> None:
        """Post a money movement of another domain (funds/): deposits, their settlement or
        return, withdrawals. The caller holds the account's row lock (`get(lock=True)`) when
        the movement touches an account, so balances read before it are still true."""
        if account is not None:
            repository.changed(account)
        await repository.post(session, self.deps.ids.new_str(), move, self.deps.clock.now_ns())

    async def set_status(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        status: AccountStatus | None,
        trading_state: TradingState | None,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> TradingAccount:
        """Change status (pending/active/closing-only/suspended/closed) or trading state
        (ACTIVE/REDUCING; HALTED only through the kill switch, which also cancels orders)."""
        if len(reason.strip()) < 3:
            raise TradingInputError("a status change needs a reason")
        if trading_state is TradingState.HALTED:
            raise InvalidInput("halt an account with the kill switch (it cancels its orders)")
        account = await self.get(session, account_id, lock=True)
        now = self.deps.clock.now_ns()
        if status is not None and status.value != account.status:
            if account.status == AccountStatus.CLOSED:
                raise TradingInputError("a closed account stays closed")
            if status is AccountStatus.CLOSED:
                await self._refuse_close_with_holdings(session, account)
            await self.deps.audit(
                session,
                TradingEvent.ACCOUNT_STATUS_CHANGED,
                actor=actor,
                subject=Party("account", account.id),
                data={"from": account.status, "to": status.value, "reason": reason.strip()},
                request_id=request_id,
            )
            account.status = status.value
        if trading_state is not None and trading_state.value != account.trading_state:
            if account.trading_state == TradingState.HALTED:
                raise InvalidInput("a halted account is resumed through the kill switch")
            await self.deps.audit(
                session,
                TradingEvent.ACCOUNT_TRADING_STATE_CHANGED,
                actor=actor,
                subject=Party("account", account.id),
                data={
                    "from": account.trading_state,
                    "to": trading_state.value,
                    "reason": reason.strip(),
                },
                request_id=request_id,
            )
            account.trading_state = trading_state.value
        account.updated_ns = now
        repository.changed(account)
        return account

    async def _refuse_close_with_holdings(
        self, session: AsyncSession, account: TradingAccount
    ) -> None:
        if await repository.open_orders_of_account(session, account.id):
            raise TradingInputError("cancel the account's open orders before closing it")
        balances = balances_from(
            account.id, account.currency, await repository.balances(session, account.id)
        )
        if any(balances.shares.values()) or balances.cash_settled or balances.cash_unsettled:
            raise TradingInputError("an account with cash or positions cannot be closed")

    async def set_limits(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        limits: dict[str, object | None],
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> TradingAccount:
        """Override (or with None restore) the firm's limits for one account; audited."""
        if len(reason.strip()) < 3:
            raise TradingInputError("a limit change needs a reason")
        for name, value in limits.items():
            if value is not None and value <= 0:  # type: ignore[operator]
                raise TradingInputError(f"{name} must be positive (or null for the firm default)")
        account = await self.get(session, account_id, lock=True)
        changed: dict[str, object] = {}
        for name, value in limits.items():
            before = getattr(account, name)
            if before != value:
                changed[name] = {"from": _plain(before), "to": _plain(value)}
                setattr(account, name, value)
        if changed:
            account.updated_ns = self.deps.clock.now_ns()
            repository.changed(account)
            await self.deps.audit(
                session,
                TradingEvent.ACCOUNT_LIMITS_CHANGED,
                actor=actor,
                subject=Party("account", account.id),
                data={"changes": changed, "reason": reason.strip()},
                request_id=request_id,
            )
        return account


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Decimal) else value
