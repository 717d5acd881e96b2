"""Reference data: instruments and the firm's restricted list (admin:config, audited).

Every change bumps the trading-control version, so running servers reload their reference
cache before the next order is checked (changes made from the CLI included).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.errors import Conflict
from tradeguard.ledger.domain import Party
from tradeguard.trading import repository
from tradeguard.trading.common import InstrumentNotFound, TradingDeps, TradingInputError
from tradeguard.trading.events import TradingEvent
from tradeguard.trading.models import Instrument, RestrictedSecurity

SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,11}$")
MAX_PRICE = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """An instrument's tradable attributes (None: leave unchanged on update)."""

    name: str | None = None
    tick_size: Decimal | None = None
    lot_size: int | None = None
    min_quantity: int | None = None
    max_quantity: int | None = None
    reference_price: Decimal | None = None
    band_tier: int | None = None
    tradable: bool | None = None
    threshold_security: bool | None = None
    easy_to_borrow: bool | None = None


def normalize_symbol(symbol: str) -> str:
    value = symbol.strip().upper()
    if not SYMBOL.fullmatch(value):
        raise TradingInputError("a symbol is 1-12 letters, digits or dots, starting with a letter")
    return value


def _check(spec: InstrumentSpec) -> None:
    if spec.tick_size is not None and not (Decimal("0.0001") <= spec.tick_size <= Decimal(100)):
        raise TradingInputError("tick_size must be between 0.0001 and 100")
    if spec.lot_size is not None and not 1 <= spec.lot_size <= 10_000:
        raise TradingInputError("lot_size must be between 1 and 10000")
    if spec.reference_price is not None:
        if not 0 < spec.reference_price <= MAX_PRICE:
            raise TradingInputError(f"reference_price must be above 0 and at most {MAX_PRICE}")
        if spec.reference_price != spec.reference_price.quantize(Decimal("0.0001")):
            raise TradingInputError("reference_price carries at most 4 decimal places")
    if spec.band_tier is not None and spec.band_tier not in (1, 2):
        raise TradingInputError("band_tier is 1 or 2 (LULD tiers)")
    if spec.min_quantity is not None and spec.min_quantity < 1:
        raise TradingInputError("min_quantity must be at least 1")
    if (
        spec.min_quantity is not None
        and spec.max_quantity is not None
        and spec.max_quantity < spec.min_quantity
    ):
        raise TradingInputError("max_quantity must be at least min_quantity")


def _on_tick(price: Decimal | None, tick: Decimal) -> None:
    if price is not None and price % tick != 0:
        raise TradingInputError(f"reference_price {price} is not a multiple of the tick {tick}")


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Decimal) else value


class ReferenceService:
    def __init__(self, deps: TradingDeps) -> None:
        self.deps = deps

    async def create(
        self,
        session: AsyncSession,
        *,
        symbol: str,
        spec: InstrumentSpec,
        actor: Party,
        request_id: str | None = None,
    ) -> Instrument:
        symbol = normalize_symbol(symbol)
        if spec.name is None or not spec.name.strip():
            raise TradingInputError("an instrument needs a name")
        _check(spec)
        await repository.lock_control(session, exclusive=True)
        if await repository.instrument(session, symbol) is not None:
            raise Conflict(f"{symbol} already exists; update it instead")
        _on_tick(spec.reference_price, spec.tick_size or Decimal("0.01"))
        now = self.deps.clock.now_ns()
        row = Instrument(
            symbol=symbol,
            name=spec.name.strip()[:120],
            currency="USD",
            tick_size=spec.tick_size or Decimal("0.01"),
            lot_size=Decimal(spec.lot_size or 1),
            status="active" if spec.tradable is not False else "inactive",
            created_ns=now,
            min_quantity=spec.min_quantity or 1,
            max_quantity=spec.max_quantity or 1_000_000,
            reference_price=spec.reference_price,
            band_tier=spec.band_tier or 2,
            threshold_security=bool(spec.threshold_security),
            easy_to_borrow=bool(spec.easy_to_borrow),
            updated_ns=now,
        )
        repository.add(session, row)
        await repository.bump_control(session, now)
        await self.deps.audit(
            session,
            TradingEvent.INSTRUMENT_CREATED,
            actor=actor,
            subject=Party("instrument", symbol),
            data={"symbol": symbol, **{k: _plain(v) for k, v in _fields(row).items()}},
            request_id=request_id,
        )
        return row

    async def update(
        self,
        session: AsyncSession,
        *,
        symbol: str,
        spec: InstrumentSpec,
        actor: Party,
        request_id: str | None = None,
    ) -> Instrument:
        symbol = normalize_symbol(symbol)
        _check(spec)
        await repository.lock_control(session, exclusive=True)
        row = await repository.instrument(session, symbol)
        if row is None:
            raise InstrumentNotFound("no such symbol")
        before = _fields(row)
        _apply_spec(row, spec)
        if row.max_quantity < row.min_quantity:
            raise TradingInputError("max_quantity must be at least min_quantity")
        _on_tick(row.reference_price, row.tick_size)
        after = _fields(row)
        changes = {
            k: {"from": _plain(before[k]), "to": _plain(v)}
            for k, v in after.items()
            if before[k] != v
        }
        if changes:
            now = self.deps.clock.now_ns()
            row.updated_ns = now
            await repository.bump_control(session, now)
            await self.deps.audit(
                session,
                TradingEvent.INSTRUMENT_UPDATED,
                actor=actor,
                subject=Party("instrument", symbol),
                data={"symbol": symbol, "changes": changes},
                request_id=request_id,
            )
        return row

    async def refresh_cache(self, session: AsyncSession) -> int:
        """Reload the in-memory reference data now (returns the control version)."""
        version = await repository.control_version(session)
        await self.deps.reference.reload(session, version)
        return version

    async def signal_change(self, session: AsyncSession) -> None:
        """Tell running servers to reload and rebuild their books (after a CLI change)."""
        await repository.lock_control(session, exclusive=True)
        await repository.bump_control(session, self.deps.clock.now_ns())

    async def control_version(self, session: AsyncSession) -> int:
        return await repository.control_version(session)

    async def list(self, session: AsyncSession) -> Sequence[Instrument]:
        return await repository.instruments(session)

    async def get(self, session: AsyncSession, symbol: str) -> Instrument:
        row = await repository.instrument(session, normalize_symbol(symbol))
        if row is None:
            raise InstrumentNotFound("no such symbol")
        return row

    async def restrict(
        self,
        session: AsyncSession,
        *,
        symbol: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> RestrictedSecurity:
        symbol = normalize_symbol(symbol)
        if len(reason.strip()) < 3:
            raise TradingInputError("adding to the restricted list needs a reason")
        await repository.lock_control(session, exclusive=True)
        if await repository.instrument(session, symbol) is None:
            raise InstrumentNotFound("no such symbol")
        if await repository.restricted_entry(session, symbol) is not None:
            raise Conflict(f"{symbol} is already on the restricted list")
        now = self.deps.clock.now_ns()
        row = RestrictedSecurity(
            symbol=symbol,
            reason=reason.strip()[:500],
            added_by=f"{actor.kind}:{actor.id}",
            added_ns=now,
        )
        repository.add(session, row)
        await repository.bump_control(session, now)
        await self.deps.audit(
            session,
            TradingEvent.RESTRICTED_ADDED,
            actor=actor,
            subject=Party("instrument", symbol),
            data={"symbol": symbol, "reason": row.reason},
            request_id=request_id,
        )
        return row

    async def unrestrict(
        self,
        session: AsyncSession,
        *,
        symbol: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> None:
        symbol = normalize_symbol(symbol)
        if len(reason.strip()) < 3:
            raise TradingInputError("removing from the restricted list needs a reason")
        await repository.lock_control(session, exclusive=True)
        row = await repository.restricted_entry(session, symbol)
        if row is None:
            raise InstrumentNotFound(f"{symbol} is not on the restricted list")
        await repository.delete_row(session, row)
        now = self.deps.clock.now_ns()
        await repository.bump_control(session, now)
        await self.deps.audit(
            session,
            TradingEvent.RESTRICTED_REMOVED,
            actor=actor,
            subject=Party("instrument", symbol),
            data={"symbol": symbol, "reason": reason.strip()[:500]},
            request_id=request_id,
        )

    async def restricted(self, session: AsyncSession) -> Sequence[RestrictedSecurity]:
        return await repository.restricted(session)


def _fields(row: Instrument) -> dict[str, object]:
    return {
        "name": row.name,
        "tick_size": row.tick_size,
        "lot_size": int(row.lot_size),
        "min_quantity": row.min_quantity,
        "max_quantity": row.max_quantity,
        "reference_price": row.reference_price,
        "band_tier": row.band_tier,
        "status": row.status,
        "threshold_security": row.threshold_security,
        "easy_to_borrow": row.easy_to_borrow,
    }


def _apply_spec(row: Instrument, spec: InstrumentSpec) -> None:
    """Set what the spec names on the row (None leaves a field as it is)."""
    plain = ("tick_size", "min_quantity", "max_quantity", "reference_price", "band_tier")
    for name in plain:
        value = getattr(spec, name)
        if value is not None:
            setattr(row, name, value)
    if spec.name is not None:
        row.name = spec.name.strip()[:120]
    if spec.lot_size is not None:
        row.lot_size = Decimal(spec.lot_size)
    if spec.tradable is not None:
        row.status = "active" if spec.tradable else "inactive"
    if spec.threshold_security is not None:
        row.threshold_security = spec.threshold_security
    if spec.easy_to_borrow is not None:
        row.easy_to_borrow = spec.easy_to_borrow
