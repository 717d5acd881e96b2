"""Builds the back-office services on top of identity's and trading's (app, CLI, test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.backoffice.access_log import AccessLog, TradingAccountAccessLog
from tradeguard.backoffice.common import BackofficeDeps
from tradeguard.backoffice.customers import CustomerDesk
from tradeguard.backoffice.users import UserManagement
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.administration import UserAdministration
from tradeguard.identity.container import IdentityServices
from tradeguard.trading.accounts import AccountService
from tradeguard.trading.container import TradingServices


@dataclass(frozen=True, slots=True)
class BackofficeServices:
    sessions: async_sessionmaker[AsyncSession]
    access_log: AccessLog
    customers: CustomerDesk
    users: UserManagement

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with unit_of_work(self.sessions) as session:
            yield session


def build_backoffice(identity: IdentityServices, accounts: AccountService) -> BackofficeServices:
    """Wire the back office to identity (through its administration service) and to the
    trading accounts service, on identity's database sessions."""
    deps = BackofficeDeps(
        clock=identity.clock,
        ids=identity.deps.ids,
        # Identity's ledger: it seals the staff member's address under their subject key.
        ledger=identity.deps.ledger,
        keyring=identity.deps.keyring,
    )
    administration = UserAdministration(identity.deps, auth=identity.auth)
    access_log = AccessLog(deps)
    return BackofficeServices(
        sessions=identity.sessions,
        access_log=access_log,
        customers=CustomerDesk(
            deps, administration=administration, accounts=accounts, access_log=access_log
        ),
        users=UserManagement(deps, administration=administration, access_log=access_log),
    )


def install_staff_access_log(trading: TradingServices, backoffice: BackofficeServices) -> None:
    """Give the staff trading routes the customer's access log (IAC-4): until this runs they
    refuse, rather than show or change a customer's account without the customer seeing it."""
    trading.staff_access_log = TradingAccountAccessLog(backoffice.access_log)
