"""Trading tables."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from tradeguard.db.base import Base
from tradeguard.db.types import DecimalString


class Instrument(Base):
    __tablename__ = "instruments"

    symbol: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(3))
    tick_size: Mapped[Decimal] = mapped_column(DecimalString)
    lot_size: Mapped[Decimal] = mapped_column(DecimalString)
    status: Mapped[str] = mapped_column(String(20))
    created_ns: Mapped[int] = mapped_column(BigInteger)
