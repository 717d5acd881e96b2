"""`serve --demo`: a demo workspace so a newcomer can log in at once (development only)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select

from tradeguard.access.domain import Role
from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.core.errors import ConfigurationError
from tradeguard.core.events import AuditEvent
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import build_identity
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.trading.models import Instrument

DEMO_DOMAIN = "demo.example.com"
DEMO_USERS: tuple[tuple[str, Role], ...] = (
    ("alice", Role.TRADER),
    ("bob", Role.TRADER),
    ("ada.admin", Role.ADMIN),
    ("carol.compliance", Role.COMPLIANCE),
    ("sam.support", Role.SUPPORT),
)
DEMO_INSTRUMENTS: tuple[tuple[str, str], ...] = (
    ("AAPL", "Apple Inc."),
    ("MSFT", "Microsoft Corporation"),
    ("NVDA", "NVIDIA Corporation"),
    ("TSLA", "Tesla, Inc."),
    ("SPY", "SPDR S&P 500 ETF Trust"),
)


@dataclass(frozen=True, slots=True)
class DemoCredential:
    username: str
    email: str
    role: Role
    password: str


async def seed_demo(settings: Settings, *, clock: Clock) -> list[DemoCredential]:
    """Create demo users and instruments once; returns the new credentials (empty if seeded)."""
    if settings.is_production:
        raise ConfigurationError("--demo is for development; production starts empty")
    engine = create_engine(settings.main_database_url)
    ids = IdGenerator(clock)
    ledger = Ledger(clock=clock, ids=ids)
    sessions = session_factory(engine)
    identity = build_identity(settings, clock=clock, ids=ids, sessions=sessions).accounts
    credentials: list[DemoCredential] = []
    try:
        async with unit_of_work(sessions) as session:
            seeded = await session.scalar(select(Instrument.symbol).limit(1))
            if seeded is not None:
                return []
            for username, role in DEMO_USERS:
                # 144 random bits: strong enough for any policy, shown exactly once.
                password = secrets.token_urlsafe(18)
                email = f"{username}@{DEMO_DOMAIN}"
                await identity.create_user(
                    session,
                    username=username,
                    email=email,
                    password=password,
                    role=role,
                    email_verified=True,
                )
                credentials.append(DemoCredential(username, email, role, password))
            now = clock.now_ns()
            for symbol, name in DEMO_INSTRUMENTS:
                session.add(
                    Instrument(
                        symbol=symbol,
                        name=name,
                        currency="USD",
                        tick_size=Decimal("0.01"),
                        lot_size=Decimal(1),
                        status="active",
                        created_ns=now,
                    )
                )
                await ledger.append(
                    session,
                    LedgerEvent(
                        type=AuditEvent.INSTRUMENT_CREATED,
                        subject=Party("instrument", symbol),
                        data={"symbol": symbol, "tick_size": "0.01", "currency": "USD"},
                    ),
                )
            await ledger.append(
                session,
                LedgerEvent(type=AuditEvent.SYSTEM_DEMO_SEEDED, data={"users": len(DEMO_USERS)}),
            )
        await LedgerSequencer(engine, clock=clock).drain()
    finally:
        await engine.dispose()
    return credentials
