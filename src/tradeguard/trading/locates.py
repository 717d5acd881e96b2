"""Reg SHO Rule 203(b)(1) locates and pre-borrows, from the firm's stock-loan source.

A locate is reasonable grounds to believe the shares can be borrowed by settlement: it is
checked against the source's inventory but borrows nothing (so a short sale on a locate can
still fail to deliver). A pre-borrow borrows at once and takes the shares out of inventory
(Rule 204(b) requires one after a missed close-out, and for threshold securities here).
Both are recorded with their source, quantity and expiry, and audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.ledger.domain import Party
from tradeguard.trading import repository
from tradeguard.trading.common import InstrumentNotFound, TradingDeps, TradingInputError
from tradeguard.trading.events import RiskEvent
from tradeguard.trading.models import Locate, StockLoanInventory

LOCAL_SOURCE = "tradeguard stock-loan desk"
MAX_LOCATE = 10_000_000


class LocateRefused(TradingInputError):
    slug = "locate-refused"
    title = "Locate refused"


class LocateService:
    def __init__(self, deps: TradingDeps) -> None:
        self.deps = deps

    def _end_of_day_ns(self) -> int:
        """Locates are good for the trading day they were given (at the close)."""
        today: date = self.deps.calendar.trading_date(self.deps.clock.now_ns())
        if not self.deps.calendar.is_business_day(today):
            today = self.deps.calendar.next_business_day(today)
        return int(self.deps.calendar.session_close_ns(today))

    async def request(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        symbol: str,
        quantity: int,
        preborrow: bool,
        actor: Party,
        request_id: str | None = None,
    ) -> Locate | LocateRefused:
        """Ask the firm's stock-loan source for a locate (or a pre-borrow). A refusal is
        returned, not raised, so its audit event commits; the caller raises it after."""
        if not 1 <= quantity <= MAX_LOCATE:
            raise TradingInputError(f"quantity must be between 1 and {MAX_LOCATE}")
        instrument = await repository.instrument(session, symbol)
        if instrument is None:
            raise InstrumentNotFound("no such symbol")
        await repository.account(session, account_id, lock=True)
        inventory = await repository.stock_loan(session, symbol, lock=True)
        easy = instrument.easy_to_borrow and not instrument.threshold_security
        # Reasonable grounds (Rule 203(b)(1)) for no more shares than the desk can lend: the
        # locates already promised today (to anyone) come off what it has.
        promised = await repository.outstanding_locates(session, symbol, self.deps.clock.now_ns())
        available = max(0, (inventory.available if inventory else 0) - promised)
        if not easy and available < quantity:
            await self.deps.audit(
                session,
                RiskEvent.LOCATE_REFUSED,
                actor=actor,
                subject=Party("account", account_id),
                data={
                    "symbol": symbol,
                    "quantity": quantity,
                    "available": available,
                    "kind": "preborrow" if preborrow else "locate",
                },
                request_id=request_id,
            )
            return LocateRefused(
                f"the stock-loan desk cannot lend {quantity} {symbol} today",
                available=available,
            )
        if preborrow and not easy:
            assert inventory is not None  # noqa: S101 - available >= quantity above
            inventory.available -= quantity
            inventory.updated_ns = self.deps.clock.now_ns()
        return await self._record(
            session,
            account_id=account_id,
            symbol=symbol,
            quantity=quantity,
            kind="preborrow" if preborrow else "locate",
            source=LOCAL_SOURCE,
            expires_ns=self._end_of_day_ns(),
            actor=actor,
            request_id=request_id,
        )

    async def record(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        symbol: str,
        quantity: int,
        kind: str,
        source: str,
        expires_ns: int,
        actor: Party,
        request_id: str | None = None,
    ) -> Locate:
        """Staff record a locate obtained elsewhere (source and expiry are required)."""
        if kind not in {"locate", "preborrow"}:
            raise TradingInputError("kind is locate or preborrow")
        if not 1 <= quantity <= MAX_LOCATE:
            raise TradingInputError(f"quantity must be between 1 and {MAX_LOCATE}")
        if len(source.strip()) < 2:
            raise TradingInputError("a locate needs its source")
        if expires_ns <= self.deps.clock.now_ns():
            raise TradingInputError("the locate has already expired")
        if await repository.instrument(session, symbol) is None:
            raise InstrumentNotFound("no such symbol")
        await repository.account(session, account_id, lock=True)
        return await self._record(
            session,
            account_id=account_id,
            symbol=symbol,
            quantity=quantity,
            kind=kind,
            source=source.strip()[:120],
            expires_ns=expires_ns,
            actor=actor,
            request_id=request_id,
        )

    async def _record(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        symbol: str,
        quantity: int,
        kind: str,
        source: str,
        expires_ns: int,
        actor: Party,
        request_id: str | None,
    ) -> Locate:
        row = Locate(
            id=self.deps.ids.new_str(),
            account_id=account_id,
            symbol=symbol,
            kind=kind,
            quantity=quantity,
            used_quantity=0,
            source=source,
            expires_ns=expires_ns,
            created_by=f"{actor.kind}:{actor.id}",
            created_ns=self.deps.clock.now_ns(),
        )
        repository.add(session, row)
        await self.deps.audit(
            session,
            RiskEvent.LOCATE_GRANTED,
            actor=actor,
            subject=Party("account", account_id),
            data={
                "locate_id": row.id,
                "symbol": symbol,
                "quantity": quantity,
                "kind": kind,
                "source": source,
                "expires_ns": str(expires_ns),
            },
            request_id=request_id,
        )
        return row

    async def list_for(self, session: AsyncSession, account_id: str) -> Sequence[Locate]:
        return await repository.locates_of(session, account_id, 200)

    async def set_inventory(
        self, session: AsyncSession, *, symbol: str, available: int, actor: Party
    ) -> StockLoanInventory:
        if available < 0:
            raise TradingInputError("available must be zero or more")
        if await repository.instrument(session, symbol) is None:
            raise InstrumentNotFound("no such symbol")
        row = await repository.stock_loan(session, symbol, lock=True)
        now = self.deps.clock.now_ns()
        if row is None:
            row = StockLoanInventory(symbol=symbol, available=available, updated_ns=now)
            repository.add(session, row)
        else:
            row.available = available
            row.updated_ns = now
        await self.deps.audit(
            session,
            "trading:stock_loan:inventory_set",
            actor=actor,
            subject=Party("instrument", symbol),
            data={"symbol": symbol, "available": available},
        )
        return row
