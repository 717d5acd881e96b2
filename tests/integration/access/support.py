"""Arranging access alert tests: staff members who sign in with a passkey from any client,
customers with accounts, a detector scan, and the alert emails in the development mailbox."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from tests.support.api import PASSWORD, Api, bearer
from tests.support.ledger import settle
from tests.support.trading import staff_with_passkey
from tests.support.webauthn_authenticator import SoftwareAuthenticator
from tradeguard.access.alerts_container import AccessAlertServices
from tradeguard.access.alerts_detector import ScanResult
from tradeguard.access.alerts_models import AccessAlert
from tradeguard.access.domain import Role
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.notify.senders import MailboxEntry, read_dev_mailbox, read_text_body
from tradeguard.notify.tasks import OutboxDispatcher
from tradeguard.risk.domain import AccountType
from tradeguard.trading.container import TradingServices
from tradeguard.web.app import notify_senders

WEBAUTHN = "/api/v1/auth/webauthn"
ALERTS = "/api/v1/access/alerts"
SETUP = Party("system", "test-setup")
ALERT_SUBJECT = "tradeguard access alert"
# Monday 5 January 2026, 10:00 in New York (15:00 UTC): inside working hours.
MONDAY_10AM = int(datetime(2026, 1, 5, 15, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND


@dataclass
class Staff:
    """A staff member with a passkey, signed in on `client` (sign in again from any other)."""

    username: str
    user_id: str
    client: httpx.AsyncClient
    passkey: SoftwareAuthenticator = field(repr=False)
    access: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access)

    async def sign_in(self, api: Api, client: httpx.AsyncClient | None = None) -> None:
        """A passkey sign-in (a staff sign-in event), from `client` if given."""
        self.client = client or self.client
        origin = api.services.deps.policy.origin
        options = await self.client.post(f"{WEBAUTHN}/authenticate/options", json={})
        assert options.status_code == 200, options.text
        assertion = self.passkey.get(json.dumps(options.json()["options"]), origin)
        signed = await self.client.post(
            f"{WEBAUTHN}/authenticate/verify",
            json={"ticket": options.json()["ticket"], "credential": json.loads(assertion)},
        )
        assert signed.status_code == 200, signed.text
        self.access = str(signed.json()["access_token"])

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.headers, **kwargs)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(path, json=body or {}, headers=self.headers)


async def enrol_staff(api: Api, client: httpx.AsyncClient, username: str, role: Role) -> Staff:
    """Create a staff account, register its passkey (IAC-3) and sign in with it."""
    user_id, passkey = await staff_with_passkey(api, client, username, role)
    staff = Staff(username, user_id, client, passkey)
    await staff.sign_in(api)
    return staff


async def customer_accounts(api: Api, count: int, prefix: str = "cust") -> list[str]:
    """`count` traders with one account each (arranged directly, not as staff)."""
    trading: TradingServices = api.app.state.trading
    ids = []
    for n in range(count):
        async with api.services.unit_of_work() as session:
            user = await api.services.accounts.create_user(
                session,
                username=f"{prefix}{n}",
                email=f"{prefix}{n}@example.com",
                password=PASSWORD,
                role=Role.TRADER,
                email_verified=True,
            )
        async with unit_of_work(trading.sessions) as session:
            account = await trading.accounts.open_account(
                session, user_id=user.id, account_type=AccountType.CASH, actor=SETUP
            )
        ids.append(account.id)
    return ids


def alert_services(api: Api) -> AccessAlertServices:
    services: AccessAlertServices = api.app.state.access_alerts
    return services


async def scan(api: Api) -> ScanResult:
    """Chain what has committed, then let the detector read it all."""
    await settle(api.engine)
    return await alert_services(api).detector.scan()


async def stored_alerts(api: Api) -> list[AccessAlert]:
    async with api.services.unit_of_work() as session:
        rows = await session.execute(select(AccessAlert).order_by(AccessAlert.id))
        return list(rows.scalars().all())


async def alert_mail(api: Api) -> list[tuple[MailboxEntry, str]]:
    """Deliver the outbox to the development mailbox; the alert emails there, with bodies."""
    settings = api.app.state.runtime.settings
    senders = notify_senders(settings, api.clock)
    dispatcher = OutboxDispatcher(
        engine=api.engine,
        keyring=api.services.deps.keyring,
        email_sender=senders.email,
        sms_provider=senders.sms,
        clock=api.clock,
    )
    while await dispatcher.dispatch_once():
        pass
    entries = read_dev_mailbox(settings.data_dir / "mailbox")
    return [(e, read_text_body(e.path)) for e in entries if e.subject.startswith(ALERT_SUBJECT)]
