"""`serve --demo`: the demo customers' market activity and what the platform makes of it.

Everything goes through the platform's own services, as a running server would: orders
through the trading desk onto an in-process simulated exchange, the alerts from the
surveillance stream reading the ledger, the case through compliance's case desk, the card
through the card vault. The exchange here runs without its simulated street, so the demo's
patterns meet only each other and are deterministic: what the server's live street quotes
later never decides whether the detectors fire.

Each step is skipped when its result is already there, so a second `serve --demo` on the
same data directory repeats nothing (and one interrupted half-way finishes the rest).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.core.clock import Clock, ns_to_datetime
from tradeguard.core.errors import ConfigurationError
from tradeguard.core.ids import IdGenerator
from tradeguard.core.orders import OrderType, Side, TimeInForce
from tradeguard.db.engine import unit_of_work
from tradeguard.funds.container import build_funds
from tradeguard.identity.container import IdentityServices
from tradeguard.ledger.domain import Party
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.risk.domain import AccountType
from tradeguard.surveillance.container import SurveillanceServices, build_surveillance
from tradeguard.surveillance.domain import AlertType
from tradeguard.surveillance.repository import AlertFilter, CaseFilter
from tradeguard.trading.container import TradingServices, build_trading
from tradeguard.trading.orders import OrderRequest
from tradeguard.trading.tasks import sync_reference
from tradeguard.vault.container import build_vault

# Alice crosses KO between her own cash and margin accounts, there and back (MAN-1: at
# least `surveillance_wash_min_quantity` shares between one owner's accounts).
WASH_SYMBOL = "KO"
WASH_PRICE = Decimal("63.25")
WASH_QUANTITY = 300
# Bob bids for 1,500 F under the market, sells 100 to alice's bid above it, then pulls the
# large bid (MAN-2: at least `surveillance_spoof_min_quantity` cancelled, three times what
# executed, and no re-quote within `surveillance_spoof_requote_window_ms`).
SPOOF_SYMBOL = "F"
SPOOF_BAIT_PRICE = Decimal("10.90")
SPOOF_BAIT_QUANTITY = 1500
SPOOF_PRICE = Decimal("10.95")
SPOOF_EXECUTED = 100
# Alice's open order: a limit bid under the market, resting on the live book once serving.
OPEN_ORDER = ("MSFT", 10, Decimal("400.00"))
# Alice's bank: JPMorgan Chase's public routing number, an account number of the sandbox
# that settles (docs/funds.md lists the ones that return), a first ACH deposit.
DEMO_ROUTING = "021000021"
DEMO_BANK_ACCOUNT = "000123456789"
DEMO_DEPOSIT = Decimal("2500.00")
# Bob's deposits for AML monitoring (AML-1): three on one day, each just under the $10,000
# currency-transaction threshold (`aml_structuring_count`, 3) and together over it: a
# structuring alert and a currency transaction report, raised by the server's AML monitor
# as it reads the ledger.
BOB_BANK_ACCOUNT = "000987654321"
BOB_DEPOSITS = (
    (AccountType.MARGIN, Decimal("9200.00")),
    (AccountType.MARGIN, Decimal("9400.00")),
    (AccountType.MARGIN, Decimal("9600.00")),
)
# Visa's well-known test number (never a real card).
DEMO_PAN = "4111 1111 1111 1111"
CASE_TITLE = "Demo: alice crossed KO between her own cash and margin accounts"
CASE_NOTE = (
    "Opened by the demo seeder: alice's two accounts traded 300 KO with each other, there "
    "and back, at one price (no change in beneficial ownership). Review the executions and "
    "close as reported or false positive."
)

Pause = Callable[[float], Awaitable[None]]


class DemoActivityError(ConfigurationError):
    """The demo's market activity did not go as scripted (a pre-trade check refused it)."""


@dataclass(frozen=True, slots=True)
class DemoActivity:
    """What this run seeded (all False on a repeat), and where a visitor finds it."""

    alice_cash_account: str
    traded: bool
    case_opened: bool
    card_added: bool
    money_moved: bool = False
    structured: bool = False


@dataclass(frozen=True, slots=True)
class _Trader:
    user_id: str
    accounts: dict[AccountType, str]


async def seed_activity(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    identity: IdentityServices,
    pause: Pause,
) -> DemoActivity:
    """Trade the demo patterns, let surveillance raise its alerts, open a case on the wash
    trade for carol.compliance and store a card for alice; each step once."""
    seeder = Party("system", "demo")
    trading = build_trading(settings, clock=clock, ids=ids, sessions=sessions, street=False)
    async with unit_of_work(sessions) as session:
        alice = await _trader(session, identity, trading, "alice")
        bob = await _trader(session, identity, trading, "bob")
        carol = await identity.accounts.find_user(session, "carol.compliance")
        quiet = not await _has_orders(session, trading, alice, bob)
    traded = False
    if quiet and trading.deps.market_open(clock.now_ns()):
        # The venue's books opened from the reference data (nothing rests on them yet).
        await sync_reference(trading, rebuild=True)
        await _trade(trading, alice=alice, bob=bob, actor=seeder, settings=settings, pause=pause)
        traded = True
    sequencer = LedgerSequencer(engine, clock=clock)
    await sequencer.drain()
    case_opened = False
    if settings.surveillance_enabled and carol is not None:
        surveillance = build_surveillance(
            settings,
            clock=clock,
            ids=ids,
            sessions=sessions,
            ledger=trading.deps.ledger,
            accounts=trading.accounts,
            orders=trading.orders,
            staff=identity.accounts,
        )
        case_opened = await _open_case(surveillance, alice, carol[0], seeder)
    card_added = await _add_card(settings, clock=clock, ids=ids, sessions=sessions, trader=alice)
    money_moved = await _move_money(
        settings, identity=identity, trading=trading, sessions=sessions, trader=alice
    )
    structured = await _structure_deposits(
        settings, identity=identity, trading=trading, sessions=sessions, trader=bob
    )
    await sequencer.drain()
    return DemoActivity(
        alice_cash_account=alice.accounts[AccountType.CASH],
        traded=traded,
        case_opened=case_opened,
        card_added=card_added,
        money_moved=money_moved,
        structured=structured,
    )


async def _trader(
    session: AsyncSession, identity: IdentityServices, trading: TradingServices, username: str
) -> _Trader:
    found = await identity.accounts.find_user(session, username)
    if found is None:
        raise DemoActivityError(f"the demo user {username} is missing; start from a fresh data dir")
    accounts = await trading.accounts.list_for(session, found[0])
    return _Trader(found[0], {AccountType(a.account_type): a.id for a in accounts})


async def _has_orders(session: AsyncSession, trading: TradingServices, *traders: _Trader) -> bool:
    for trader in traders:
        for account_id in trader.accounts.values():
            orders = await trading.orders.list(
                session,
                account_id=account_id,
                user_id=None,
                open_only=False,
                before_ns=None,
                limit=1,
            )
            if orders:
                return True
    return False


async def _trade(
    trading: TradingServices,
    *,
    alice: _Trader,
    bob: _Trader,
    actor: Party,
    settings: Settings,
    pause: Pause,
) -> None:
    alice_cash = alice.accounts[AccountType.CASH]
    alice_margin = alice.accounts[AccountType.MARGIN]
    bob_margin = bob.accounts[AccountType.MARGIN]

    async def place(
        trader: _Trader,
        account_id: str,
        tag: str,
        symbol: str,
        side: Side,
        quantity: int,
        price: Decimal,
        tif: TimeInForce = TimeInForce.DAY,
    ) -> str:
        outcome = await trading.desk.place(
            account_id=account_id,
            user_id=trader.user_id,
            request=OrderRequest(
                client_order_id=f"demo-{tag}",
                symbol=symbol,
                side=side,
                order_type=OrderType.LIMIT,
                time_in_force=tif,
                quantity=quantity,
                limit_price=price,
            ),
            actor=actor,
        )
        if not outcome.accepted:
            raise DemoActivityError(
                f"the demo order {tag} was refused ({outcome.order.reject_code}); "
                "start from a fresh data dir"
            )
        return outcome.order.id

    # MAN-1: alice's margin account sells KO short, her cash account buys it; then back.
    await place(
        alice, alice_margin, "wash-1", WASH_SYMBOL, Side.SELL_SHORT, WASH_QUANTITY, WASH_PRICE
    )
    await place(alice, alice_cash, "wash-2", WASH_SYMBOL, Side.BUY, WASH_QUANTITY, WASH_PRICE)
    await place(alice, alice_cash, "wash-3", WASH_SYMBOL, Side.SELL, WASH_QUANTITY, WASH_PRICE)
    await place(alice, alice_margin, "wash-4", WASH_SYMBOL, Side.BUY, WASH_QUANTITY, WASH_PRICE)
    # MAN-2: bob's large bid, his small sale to alice's bid above it, the bid pulled.
    bait = await place(
        bob, bob_margin, "spoof-1", SPOOF_SYMBOL, Side.BUY, SPOOF_BAIT_QUANTITY, SPOOF_BAIT_PRICE
    )
    await place(alice, alice_cash, "spoof-2", SPOOF_SYMBOL, Side.BUY, SPOOF_EXECUTED, SPOOF_PRICE)
    await place(
        bob, bob_margin, "spoof-3", SPOOF_SYMBOL, Side.SELL_SHORT, SPOOF_EXECUTED, SPOOF_PRICE
    )
    await trading.desk.cancel(
        account_id=bob_margin, order_id=bait, user_id=bob.user_id, actor=actor
    )
    # MAN-2 holds a finding until the re-quote window has passed (by the ledger's clock):
    # wait it out, so the next order's event lets the detector raise it.
    await pause(settings.surveillance_spoof_requote_window_ms / 1000 + 0.2)
    symbol, quantity, price = OPEN_ORDER
    await place(alice, alice_cash, "open-1", symbol, Side.BUY, quantity, price, TimeInForce.GTC)


async def _open_case(
    surveillance: SurveillanceServices, alice: _Trader, carol_id: str, actor: Party
) -> bool:
    """The wash trade's case, unless a case exists already (the demo's, or a visitor's)."""
    async with surveillance.unit_of_work() as session:
        if await surveillance.cases.search(session, CaseFilter(limit=1)):
            return False
    # The same stream the server runs, caught up first: it reads on from its checkpoint, so
    # the server's own consumer raises none of these alerts again.
    await surveillance.consumer.run()
    async with surveillance.unit_of_work() as session:
        washes = await surveillance.alerts.search(
            session,
            AlertFilter(
                alert_type=AlertType.WASH_TRADE.value,
                symbol=WASH_SYMBOL,
                owner=alice.user_id,
                limit=1,
            ),
        )
        if not washes:
            return False
        case = await surveillance.cases.open(
            session, alert_ids=[washes[0].id], title=CASE_TITLE, actor=actor
        )
        await surveillance.cases.assign(session, case_id=case.id, assignee=carol_id, actor=actor)
        await surveillance.cases.note(session, case_id=case.id, text=CASE_NOTE, actor=actor)
    return True


async def _move_money(
    settings: Settings,
    *,
    identity: IdentityServices,
    trading: TradingServices,
    sessions: async_sessionmaker[AsyncSession],
    trader: _Trader,
) -> bool:
    """Alice's checking account, confirmed with the sandbox's micro-deposits as she would
    confirm them, and an ACH deposit into her cash account, credited now and collected
    tomorrow by the funds worker."""
    funds = build_funds(settings, identity=identity, accounts=trading.accounts, sessions=sessions)
    actor = Party("user", trader.user_id)
    async with unit_of_work(sessions) as session:
        if await funds.banks.of_user(session, trader.user_id):
            return False
        bank = await funds.banks.add(
            session,
            user_id=trader.user_id,
            routing_number=DEMO_ROUTING,
            account_number=DEMO_BANK_ACCOUNT,
            account_type="checking",
            nickname="Alice's checking",
            holder_name="Alice Example",
            actor=actor,
        )
    amounts = funds.processor.statement(bank.id)
    async with unit_of_work(sessions) as session:
        await funds.banks.verify(
            session,
            user_id=trader.user_id,
            bank_account_id=bank.id,
            amounts=[f"{amount:.2f}" for amount in amounts],
            actor=actor,
        )
    async with unit_of_work(sessions) as session:
        await funds.deposits.deposit(
            session,
            user_id=trader.user_id,
            account_id=trader.accounts[AccountType.CASH],
            bank_account_id=bank.id,
            rail="ach",
            amount=DEMO_DEPOSIT,
            idempotency_key="demo-deposit-1",
            actor=actor,
        )
    return True


async def _structure_deposits(
    settings: Settings,
    *,
    identity: IdentityServices,
    trading: TradingServices,
    sessions: async_sessionmaker[AsyncSession],
    trader: _Trader,
) -> bool:
    """Bob's checking account, confirmed, and three ACH deposits on one day, each under
    $10,000 and together over it (for AML monitoring)."""
    funds = build_funds(settings, identity=identity, accounts=trading.accounts, sessions=sessions)
    actor = Party("user", trader.user_id)
    async with unit_of_work(sessions) as session:
        if await funds.banks.of_user(session, trader.user_id):
            return False
        bank = await funds.banks.add(
            session,
            user_id=trader.user_id,
            routing_number=DEMO_ROUTING,
            account_number=BOB_BANK_ACCOUNT,
            account_type="checking",
            nickname="Bob's checking",
            holder_name="Bob Sample",
            actor=actor,
        )
    amounts = funds.processor.statement(bank.id)
    async with unit_of_work(sessions) as session:
        await funds.banks.verify(
            session,
            user_id=trader.user_id,
            bank_account_id=bank.id,
            amounts=[f"{amount:.2f}" for amount in amounts],
            actor=actor,
        )
    for number, (account_type, amount) in enumerate(BOB_DEPOSITS, start=1):
        async with unit_of_work(sessions) as session:
            await funds.deposits.deposit(
                session,
                user_id=trader.user_id,
                account_id=trader.accounts[account_type],
                bank_account_id=bank.id,
                rail="ach",
                amount=amount,
                idempotency_key=f"demo-bob-deposit-{number}",
                actor=actor,
            )
    return True


async def _add_card(
    settings: Settings,
    *,
    clock: Clock,
    ids: IdGenerator,
    sessions: async_sessionmaker[AsyncSession],
    trader: _Trader,
) -> bool:
    """Alice's card, tokenized by the in-process vault (none when the vault is remote)."""
    if settings.vault_endpoint is not None:
        return False
    ledger = Ledger(clock=clock, ids=ids)
    vault = build_vault(settings, clock=clock, ids=ids, ledger=ledger, sessions=sessions)
    try:
        await vault.start()
        async with unit_of_work(sessions) as session:
            if await vault.cards.cards_of(session, user_id=trader.user_id):
                return False
        await vault.cards.add(
            user_id=trader.user_id,
            pan=DEMO_PAN,
            expiry_month=12,
            expiry_year=ns_to_datetime(clock.now_ns()).year + 3,
            request_id=None,
        )
    finally:
        await vault.close()
    return True
