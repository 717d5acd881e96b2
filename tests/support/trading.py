"""Arranging trading tests: signed-in traders and staff over the real API, instruments,
funded accounts, and street liquidity on the simulated venue."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from tests.support.api import (
    Api,
    bearer,
    enrol_totp,
    login,
    login_with_totp,
    prove_email,
    register_verified,
)
from tests.support.webauthn_authenticator import SoftwareAuthenticator
from tradeguard.access.domain import Role
from tradeguard.core.orders import Side, StpMode, TimeInForce
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.risk.domain import AccountType
from tradeguard.trading.container import TradingServices
from tradeguard.trading.reference import InstrumentSpec
from tradeguard.venue.adapter import STREET, VenueOrder

SETUP = Party("system", "test-setup")
WEBAUTHN = "/api/v1/auth/webauthn"


def trading_of(api: Api) -> TradingServices:
    services: TradingServices = api.app.state.trading
    return services


@dataclass
class Trader:
    """A signed-in trader on an authorized device, with the client to act as them."""

    username: str
    user_id: str
    access: str
    client: httpx.AsyncClient
    sign_in: Any = None  # how to sign in again after the clock moved past the session

    async def sign_in_again(self) -> None:
        self.access = await self.sign_in()

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.headers, **kwargs)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(path, json=body or {}, headers=self.headers)

    async def put(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.put(path, json=body, headers=self.headers)

    async def patch(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.patch(path, json=body, headers=self.headers)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.delete(path, headers=self.headers, **kwargs)

    async def order(self, account_id: str, **fields: Any) -> httpx.Response:
        body = {"time_in_force": "day", **fields}
        if "limit_price" in body and body["limit_price"] is not None:
            body["limit_price"] = str(body["limit_price"])
        return await self.post(f"/api/v1/accounts/{account_id}/orders", body)


async def signed_in_trader(api: Api, client: httpx.AsyncClient, username: str) -> Trader:
    """Register, verify, enrol TOTP and sign in with it: a session that may trade."""
    await register_verified(api, client, username)
    first = await login(client, username)
    totp = await enrol_totp(api, client, first["access_token"])
    tokens = await login_with_totp(api, client, totp, username)
    device = {"device_token": tokens["device_token"]}

    async def again() -> str:
        renewed = await login_with_totp(api, client, totp, username, device=device)
        return str(renewed["access_token"])

    claims = api.services.verifier.verify(tokens["access_token"])
    assert "order:place" in claims.permissions
    return Trader(username, claims.subject, tokens["access_token"], client, again)


async def staff_with_passkey(
    api: Api, client: httpx.AsyncClient, username: str, role: Role
) -> tuple[str, SoftwareAuthenticator]:
    """A staff account with its email proven and an attested passkey registered (IAC-3);
    returns the user id and the passkey."""
    from tests.support.api import PASSWORD  # noqa: PLC0415 - one shared test password

    async with api.services.unit_of_work() as session:
        created = await api.services.accounts.create_user(
            session,
            username=username,
            email=f"{username}@example.com",
            password=PASSWORD,
            role=role,
            email_verified=True,
        )
    passkey = SoftwareAuthenticator()
    access = str((await login(client, username))["access_token"])
    await prove_email(api, client, access)
    origin = api.services.deps.policy.origin
    started = await client.post(
        f"{WEBAUTHN}/register/options", json={"passkey": True}, headers=bearer(access)
    )
    assert started.status_code == 200, started.text
    credential = passkey.create(json.dumps(started.json()["options"]), origin)
    done = await client.post(
        f"{WEBAUTHN}/register/verify",
        json={"ticket": started.json()["ticket"], "credential": json.loads(credential)},
        headers=bearer(access),
    )
    assert done.status_code == 201, done.text
    return created.id, passkey


async def signed_in_staff(
    api: Api, client: httpx.AsyncClient, username: str = "ada", role: Role = Role.ADMIN
) -> Trader:
    """Staff need a WebAuthn factor before any staff permission works (IAC-3)."""
    _, passkey = await staff_with_passkey(api, client, username, role)
    origin = api.services.deps.policy.origin

    async def passkey_login() -> str:
        options = await client.post(f"{WEBAUTHN}/authenticate/options", json={})
        assert options.status_code == 200, options.text
        assertion = passkey.get(json.dumps(options.json()["options"]), origin)
        signed = await client.post(
            f"{WEBAUTHN}/authenticate/verify",
            json={"ticket": options.json()["ticket"], "credential": json.loads(assertion)},
        )
        assert signed.status_code == 200, signed.text
        return str(signed.json()["access_token"])

    token = await passkey_login()
    claims = api.services.verifier.verify(token)
    return Trader(username, claims.subject, token, client, passkey_login)


async def add_instrument(
    api: Api,
    symbol: str,
    price: str,
    *,
    tier: int = 1,
    easy_to_borrow: bool = True,
    threshold: bool = False,
    tick: str = "0.01",
    lot: int = 1,
    min_quantity: int = 1,
    max_quantity: int = 1_000_000,
) -> None:
    services = trading_of(api)
    async with unit_of_work(services.sessions) as session:
        row = await services.reference.create(
            session,
            symbol=symbol,
            spec=InstrumentSpec(
                name=f"{symbol} Inc.",
                reference_price=Decimal(price),
                band_tier=tier,
                easy_to_borrow=easy_to_borrow,
                threshold_security=threshold,
                tick_size=Decimal(tick),
                lot_size=lot,
                min_quantity=min_quantity,
                max_quantity=max_quantity,
            ),
            actor=SETUP,
        )
        await services.reference.refresh_cache(session)
    if services.venue is not None:
        services.venue.list_symbol(row.symbol, tick=row.tick_size, price=row.reference_price)


async def funded_account(
    api: Api, trader: Trader, cash: str, account_type: AccountType = AccountType.CASH
) -> str:
    services = trading_of(api)
    async with unit_of_work(services.sessions) as session:
        account = await services.accounts.open_account(
            session, user_id=trader.user_id, account_type=account_type, actor=SETUP
        )
        if Decimal(cash):
            await services.accounts.adjust(
                session,
                account_id=account.id,
                amount=Decimal(cash),
                reason="test funding",
                actor=SETUP,
            )
    services.hub.account_opened(trader.user_id, account.id)
    return account.id


_street_seq = 0


async def street_order(api: Api, symbol: str, side: Side, quantity: int, price: str) -> str:
    """Liquidity from the simulated street (not a customer): rests until traded or replaced."""
    global _street_seq  # noqa: PLW0603 - unique ids within one test process
    _street_seq += 1
    order_id = f"street-test-{_street_seq}"
    venue = trading_of(api).venue
    assert venue is not None
    await venue.submit(
        VenueOrder(
            order_id=order_id,
            account_id=STREET,
            symbol=symbol,
            side=side,
            quantity=quantity,
            limit_price=Decimal(price),
            time_in_force=TimeInForce.GTC,
            protection_price=None,
            stp=StpMode.CANCEL_NEWEST,
        )
    )
    return order_id


async def withdraw(api: Api, symbol: str, street_order_id: str) -> None:
    """Take whatever is left of a street order off the book."""
    venue = trading_of(api).venue
    assert venue is not None
    await venue.purge(symbol, [street_order_id])


async def account_body(trader: Trader, account_id: str) -> dict[str, Any]:
    response = await trader.get(f"/api/v1/accounts/{account_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def reconcile(api: Api) -> dict[str, object]:
    services = trading_of(api)
    async with unit_of_work(services.sessions) as session:
        report = await services.reconciler.run(session, actor=SETUP)
    return report.as_json()
