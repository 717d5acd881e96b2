"""`serve --demo`: a demo workspace so a newcomer can log in at once (development only)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.access.domain import Role
from tradeguard.cli.demo_activity import DemoActivity, Pause, seed_activity
from tradeguard.config import Settings
from tradeguard.core.clock import Clock
from tradeguard.core.errors import ConfigurationError
from tradeguard.core.events import AuditEvent
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import IdentityServices, start_identity
from tradeguard.kyc.container import build_kyc
from tradeguard.kyc.onboarding.container import build_onboarding
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.risk.domain import AccountType
from tradeguard.trading.accounts import AccountService as TradingAccounts
from tradeguard.trading.container import build_trading
from tradeguard.trading.models import Instrument
from tradeguard.trading.reference import InstrumentSpec

DEMO_DOMAIN = "demo.example.com"
DEMO_USERS: tuple[tuple[str, Role], ...] = (
    ("alice", Role.TRADER),
    ("bob", Role.TRADER),
    ("ada.admin", Role.ADMIN),
    ("carol.compliance", Role.COMPLIANCE),
    ("sam.support", Role.SUPPORT),
    # Her account application waits in the KYC review queue (kyc/onboarding).
    ("erin", Role.TRADER),
)
# (symbol, name, reference price, LULD tier, easy to borrow)
DEMO_INSTRUMENTS: tuple[tuple[str, str, str, int, bool], ...] = (
    ("AAPL", "Apple Inc.", "232.50", 1, True),
    ("MSFT", "Microsoft Corporation", "418.20", 1, True),
    ("NVDA", "NVIDIA Corporation", "141.80", 1, True),
    ("AMZN", "Amazon.com, Inc.", "201.40", 1, True),
    ("GOOGL", "Alphabet Inc. Class A", "168.90", 1, True),
    ("META", "Meta Platforms, Inc.", "567.30", 1, True),
    ("TSLA", "Tesla, Inc.", "338.60", 1, True),
    ("JPM", "JPMorgan Chase & Co.", "241.10", 1, True),
    ("V", "Visa Inc.", "309.70", 1, True),
    ("XOM", "Exxon Mobil Corporation", "118.40", 1, True),
    ("KO", "The Coca-Cola Company", "63.25", 1, True),
    ("DIS", "The Walt Disney Company", "114.80", 1, True),
    ("INTC", "Intel Corporation", "24.05", 1, True),
    ("F", "Ford Motor Company", "10.95", 1, True),
    ("SPY", "SPDR S&P 500 ETF Trust", "598.40", 1, True),
    ("QQQ", "Invesco QQQ Trust", "509.90", 1, True),
    ("PLTR", "Palantir Technologies Inc.", "67.45", 1, False),
    ("GME", "GameStop Corp.", "29.80", 2, False),
    ("AMC", "AMC Entertainment Holdings", "4.12", 2, False),
    ("SNDL", "SNDL Inc.", "1.87", 2, False),
)
# A Reg SHO threshold security (shorts need a pre-borrow) and a restricted symbol.
DEMO_THRESHOLD = "AMC"
DEMO_RESTRICTED = ("PLTR", "Material non-public information: research coverage initiation")
# Demo cash: (username, account type, USD). Bob's margin account is under the $25,000
# pattern-day-trader minimum, so his fourth day trade in five days is refused.
DEMO_ACCOUNTS: tuple[tuple[str, str, str], ...] = (
    ("alice", "cash", "100000.00"),
    ("alice", "margin", "50000.00"),
    ("bob", "margin", "20000.00"),
)


def _demo_application(
    given: str, family: str, born: str, tax_id: str, street: str, income: str
) -> dict[str, dict[str, Any]]:
    """A complete account application of a fictional US customer (demo data only; the tax
    ids are valid in form and belong to nobody we know of)."""
    return {
        "identity": {
            "given_names": given,
            "family_name": family,
            "birth_date": born,
            "nationality": "US",
            "tax_id": tax_id,
        },
        "address": {
            "line1": street,
            "city": "Springfield",
            "region": "IL",
            "postal_code": "62701",
            "country": "US",
        },
        "employment": {
            "status": "employed",
            "employer": "Example Widgets Inc.",
            "occupation": "technology",
            "broker_dealer_affiliated": False,
            "control_person": False,
            "politically_exposed": False,
        },
        "funding": {"source_of_funds": ["employment", "savings"], "source_of_wealth": ["savings"]},
        "profile": {
            "annual_income": income,
            "net_worth": "250k_500k",
            "liquid_net_worth": "100k_250k",
            "experience": "good",
            "options_experience": False,
            "objectives": ["growth"],
            "risk_tolerance": "medium",
            "time_horizon": "long",
            "margin_requested": True,
            "expected_monthly_deposits": "2000",
            "expected_monthly_withdrawals": "500",
        },
    }


# KYC: alice and bob were verified before the demo starts (imported as approved, so their
# accounts open active with kyc_required on); erin's application waits for review.
DEMO_APPLICATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "alice": _demo_application(
        "Alice", "Example", "1985-04-30", "123-45-6781", "1 Main Street", "100k_200k"
    ),
    "bob": _demo_application(
        "Bob", "Sample", "1979-11-02", "234-56-7892", "22 Oak Avenue", "50k_100k"
    ),
    "erin": _demo_application(
        "Erin", "Placeholder", "1992-07-14", "345-67-8903", "7 Elm Court", "200k_500k"
    ),
}
DEMO_VERIFIED = ("alice", "bob")


@dataclass(frozen=True, slots=True)
class DemoCredential:
    username: str
    email: str
    role: Role
    password: str


@dataclass(frozen=True, slots=True)
class DemoWorkspace:
    # The new users' passwords (empty when the workspace was made before).
    credentials: list[DemoCredential]
    activity: DemoActivity


async def seed_demo(
    settings: Settings, *, clock: Clock, pause: Pause = asyncio.sleep
) -> DemoWorkspace:
    """Create demo users, ~20 instruments, funded accounts and a stock-loan book, then the
    demo customers' trading, surveillance's alerts, a case and a stored card, each once;
    returns the new credentials (none if already seeded) and where to look. `pause` waits
    out a detector's window in real time (tests pass one that moves their clock)."""
    if settings.is_production:
        raise ConfigurationError("--demo is for development; production starts empty")
    engine = create_engine(settings.main_database_url)
    ids = IdGenerator(clock)
    sessions = session_factory(engine)
    try:
        identity = await start_identity(settings, clock=clock, ids=ids, sessions=sessions)
        credentials = await _seed_workspace(settings, clock=clock, ids=ids, identity=identity)
        await LedgerSequencer(engine, clock=clock).drain()
        activity = await seed_activity(
            settings,
            clock=clock,
            ids=ids,
            engine=engine,
            sessions=sessions,
            identity=identity,
            pause=pause,
        )
        await _load_sanctions(settings, identity=identity, sessions=sessions)
    finally:
        await engine.dispose()
    return DemoWorkspace(credentials, activity)


async def _load_sanctions(
    settings: Settings,
    *,
    identity: IdentityServices,
    sessions: async_sessionmaker[AsyncSession],
) -> bool:
    """The configured sanctions list (`sanctions_list_source`; `make run` points it at the
    OFAC reference files when they are beside the repository), once: nothing when none is
    configured or a version is loaded already."""
    source = settings.sanctions_list_source
    if not source:
        return False
    trading = build_trading(
        settings,
        clock=identity.deps.clock,
        ids=identity.deps.ids,
        sessions=sessions,
        with_venue=False,
    )
    sanctions = build_kyc(
        settings, identity=identity, accounts=trading.accounts, sessions=sessions
    ).sanctions
    async with unit_of_work(sessions) as session:
        if await sanctions.service.versions(session):
            return False
    files = await sanctions.service.fetch(source)
    async with unit_of_work(sessions) as session:
        await sanctions.service.load(session, files, source=source, actor=Party("system", "demo"))
    return True


async def _seed_workspace(
    settings: Settings, *, clock: Clock, ids: IdGenerator, identity: IdentityServices
) -> list[DemoCredential]:
    """Users, instruments, the restricted list, stock loan and funded accounts, once."""
    sessions = identity.sessions
    ledger = Ledger(clock=clock, ids=ids)
    trading = build_trading(settings, clock=clock, ids=ids, sessions=sessions, with_venue=False)
    seeder = Party("system", "demo")
    credentials: list[DemoCredential] = []
    async with unit_of_work(sessions) as session:
        seeded = await session.scalar(select(Instrument.symbol).limit(1))
        if seeded is not None:
            return []
        user_ids: dict[str, str] = {}
        for username, role in DEMO_USERS:
            # 144 random bits: strong enough for any policy, shown exactly once.
            password = secrets.token_urlsafe(18)
            email = f"{username}@{DEMO_DOMAIN}"
            user = await identity.accounts.create_user(
                session,
                username=username,
                email=email,
                password=password,
                role=role,
                email_verified=True,
            )
            user_ids[username] = user.id
            credentials.append(DemoCredential(username, email, role, password))
        for symbol, name, price, tier, easy in DEMO_INSTRUMENTS:
            await trading.reference.create(
                session,
                symbol=symbol,
                spec=InstrumentSpec(
                    name=name,
                    reference_price=Decimal(price),
                    band_tier=tier,
                    easy_to_borrow=easy,
                    threshold_security=symbol == DEMO_THRESHOLD,
                ),
                actor=seeder,
            )
            if not easy:
                await trading.locates.set_inventory(
                    session, symbol=symbol, available=50_000, actor=seeder
                )
        await trading.reference.restrict(
            session, symbol=DEMO_RESTRICTED[0], reason=DEMO_RESTRICTED[1], actor=seeder
        )
        await _seed_applications(session, settings, identity, trading.accounts, user_ids, seeder)
        for username, account_type, cash in DEMO_ACCOUNTS:
            account = await trading.accounts.open_account(
                session,
                user_id=user_ids[username],
                account_type=AccountType(account_type),
                actor=seeder,
            )
            await trading.accounts.adjust(
                session,
                account_id=account.id,
                amount=Decimal(cash),
                reason="demo funding",
                actor=seeder,
            )
        await ledger.append(
            session,
            LedgerEvent(
                type=AuditEvent.SYSTEM_DEMO_SEEDED,
                data={
                    "users": len(DEMO_USERS),
                    "instruments": len(DEMO_INSTRUMENTS),
                    "accounts": len(DEMO_ACCOUNTS),
                },
            ),
        )
    return credentials


async def _seed_applications(
    session: AsyncSession,
    settings: Settings,
    identity: IdentityServices,
    accounts: TradingAccounts,
    user_ids: dict[str, str],
    seeder: Party,
) -> None:
    """Approved applications for the demo's verified customers (with kyc_required on, their
    accounts open active), and one submitted application in the review queue."""
    onboarding = build_onboarding(
        settings, identity=identity, accounts=accounts, sessions=identity.sessions
    )
    service = onboarding.applications
    for username, sections in DEMO_APPLICATIONS.items():
        user_id = user_ids[username]
        if username in DEMO_VERIFIED:
            await service.import_approved(
                session,
                user_id=user_id,
                sections=sections,
                actor=seeder,
                reason="demo customer, verified before the demo",
            )
        else:
            await service.save(session, user_id=user_id, sections=sections, actor=seeder)
            await service.submit(session, user_id=user_id, actor=seeder)
