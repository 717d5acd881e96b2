"""`serve --demo`'s seeding (the very function the server calls) on SQLite and PostgreSQL:
the demo customers' orders and fills went through the trading core, the surveillance stream
raised the wash-trade and spoofing alerts from the ledger, compliance has a case, alice a
stored card; the ledger verifies, and seeding again changes nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.support.databases import emptied_postgres_database
from tradeguard.cli.bootstrap import initialize
from tradeguard.cli.demo import DemoWorkspace, seed_demo
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.funds.models import BankAccount, Deposit
from tradeguard.identity.repository import user_by_login
from tradeguard.kyc.onboarding.models import Application
from tradeguard.ledger.models import AuditEventRow
from tradeguard.ledger.service import Ledger
from tradeguard.surveillance.models import (
    SurveillanceAlert,
    SurveillanceCase,
    SurveillanceCaseAlert,
    SurveillanceCaseEntry,
)
from tradeguard.trading.models import Execution, Order, TradingAccount
from tradeguard.vault.container import build_vault

runner = CliRunner()
COUNTED = (
    Order,
    Execution,
    SurveillanceAlert,
    SurveillanceCase,
    SurveillanceCaseEntry,
    BankAccount,
    Deposit,
    Application,
)


def _postgres_url() -> str:
    """A database of this module's own, emptied before each test (the CLI takes a URL, not a
    schema)."""
    return emptied_postgres_database("demo")


@dataclass
class Demo:
    settings: Settings
    env: dict[str, str]
    clock: FrozenClock

    def seed(self) -> DemoWorkspace:
        async def advance(seconds: float) -> None:
            self.clock.advance(seconds=seconds)

        async def run() -> DemoWorkspace:
            await initialize(self.settings, clock=self.clock)
            return await seed_demo(self.settings, clock=self.clock, pause=advance)

        return asyncio.run(run())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Demo:
    data_dir = tmp_path / "var"
    env = {"TRADEGUARD_DATA_DIR": str(data_dir)}
    if request.param == "postgres":
        env["TRADEGUARD_DATABASE_URL"] = _postgres_url()
    settings = Settings(  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url=env.get("TRADEGUARD_DATABASE_URL"),
        market_hours="always",
        # The demo keeps the KYC onboarding gate on, as `make run` does.
        kyc_required=True,
        _env_file=None,
    )
    env["TRADEGUARD_KYC_REQUIRED"] = "true"
    return Demo(settings, env, FrozenClock())


@dataclass
class Seeded:
    users: dict[str, str]
    alerts: list[SurveillanceAlert]
    case: SurveillanceCase
    case_alerts: list[str]
    entries: list[str]
    counts: dict[str, int]
    events: int
    masked_cards: list[str]
    statuses: dict[str, int]
    account_statuses: set[str]


def read_back(demo: Demo) -> Seeded:
    async def read() -> Seeded:
        engine = create_engine(demo.settings.main_database_url)
        sessions = session_factory(engine)
        clock = demo.clock
        vault = build_vault(
            demo.settings,
            clock=clock,
            ids=IdGenerator(clock),
            ledger=Ledger(clock=clock, ids=IdGenerator(clock)),
            sessions=sessions,
        )
        try:
            async with unit_of_work(sessions) as session:
                users = {}
                for login in ("alice", "bob", "carol.compliance"):
                    user = await user_by_login(session, login)
                    assert user is not None
                    users[login] = user.id
                alerts = list((await session.scalars(select(SurveillanceAlert))).all())
                [case] = (await session.scalars(select(SurveillanceCase))).all()
                case_alerts = list(
                    (await session.scalars(select(SurveillanceCaseAlert.alert_id))).all()
                )
                entries = list(
                    (
                        await session.scalars(
                            select(SurveillanceCaseEntry.kind).order_by(
                                SurveillanceCaseEntry.created_ns, SurveillanceCaseEntry.id
                            )
                        )
                    ).all()
                )
                counts = {
                    model.__tablename__: int(
                        await session.scalar(select(func.count()).select_from(model)) or 0
                    )
                    for model in COUNTED
                }
                events = int(
                    await session.scalar(select(func.count()).select_from(AuditEventRow)) or 0
                )
                cards = await vault.cards.cards_of(session, user_id=users["alice"])
                statuses: dict[str, int] = {}
                for status in (await session.scalars(select(Application.status))).all():
                    statuses[status] = statuses.get(status, 0) + 1
                account_statuses = set((await session.scalars(select(TradingAccount.status))).all())
            return Seeded(
                users,
                alerts,
                case,
                case_alerts,
                entries,
                counts,
                events,
                [card.masked for card in cards],
                statuses,
                account_statuses,
            )
        finally:
            await vault.close()
            await engine.dispose()

    return asyncio.run(read())


class TestDemoSeeding:
    def test_the_demo_shows_trading_alerts_a_case_a_card_and_a_deposit_and_seeds_once(
        self, demo: Demo
    ) -> None:
        first = demo.seed()
        assert [c.username for c in first.credentials] == [
            "alice",
            "bob",
            "ada.admin",
            "carol.compliance",
            "sam.support",
            "erin",
        ]
        assert (first.activity.traded, first.activity.case_opened) == (True, True)
        assert first.activity.card_added
        assert first.activity.money_moved
        assert first.activity.structured

        seeded = read_back(demo)
        alice, bob = seeded.users["alice"], seeded.users["bob"]
        # Eight orders: alice's KO crosses there and back (four), bob's bid and his sale to
        # alice's bid (three), alice's open MSFT bid; three matches, each a buy and a sale.
        assert seeded.counts["orders"] == 8
        assert seeded.counts["executions"] == 6
        found = {(a.alert_type, a.detector, a.symbol, a.owner) for a in seeded.alerts}
        assert ("WASH_TRADE", "MAN-1", "KO", alice) in found
        assert ("SPOOFING", "MAN-2", "F", bob) in found
        wash = next(a for a in seeded.alerts if a.alert_type == "WASH_TRADE")
        assert seeded.case_alerts == [wash.id]
        assert seeded.case.assignee == seeded.users["carol.compliance"]
        assert seeded.case.created_by == "system:demo"
        assert seeded.entries == ["opened", "assigned", "note_added"]
        assert seeded.masked_cards == ["***1111"]
        # alice's checking and her deposit; bob's checking and his three deposits of just
        # under $10,000 (for AML monitoring).
        assert seeded.counts["funds_bank_accounts"] == 2
        assert seeded.counts["funds_deposits"] == 4
        # KYC: alice and bob approved (their accounts active), erin's in the review queue.
        assert seeded.counts["kyc_applications"] == 3
        assert seeded.statuses == {"approved": 2, "submitted": 1}
        assert seeded.account_statuses == {"active"}

        verified = runner.invoke(app, ["audit", "verify"], env=demo.env)
        assert verified.exit_code == 0, verified.output
        assert verified.output.strip().startswith("ok: ")

        again = demo.seed()
        assert again.credentials == []
        assert (again.activity.traded, again.activity.case_opened) == (False, False)
        assert not again.activity.card_added
        assert not again.activity.money_moved
        assert not again.activity.structured
        assert again.activity.alice_cash_account == first.activity.alice_cash_account
        after = read_back(demo)
        assert after.counts == seeded.counts
        assert after.masked_cards == seeded.masked_cards
        # `audit verify` above wrote nothing; seeding again wrote nothing either.
        assert after.events == seeded.events
