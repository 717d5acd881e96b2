"""Console codes for `--as` at the command line, obtained as a staff member would: over the
real API, from a session signed in with the member's attested passkey (IAC-3)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from tests.support.api import Api, bearer, login, prove_email, running_api
from tests.support.webauthn_authenticator import SoftwareAuthenticator, default_metadata_document
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import create_engine

WEBAUTHN = "/api/v1/auth/webauthn"
CONSOLE_CODE = "/api/v1/auth/console-code"


async def register_passkey(
    api: Api, client: httpx.AsyncClient, username: str
) -> SoftwareAuthenticator:
    """Register an attested passkey for an existing account (password sign-in, proven email)."""
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
    return passkey


async def passkey_session(
    api: Api, client: httpx.AsyncClient, passkey: SoftwareAuthenticator
) -> str:
    """Sign in with the passkey alone; the access token (its session holds "hwk")."""
    origin = api.services.deps.policy.origin
    options = await client.post(f"{WEBAUTHN}/authenticate/options", json={})
    assert options.status_code == 200, options.text
    assertion = passkey.get(json.dumps(options.json()["options"]), origin)
    signed = await client.post(
        f"{WEBAUTHN}/authenticate/verify",
        json={"ticket": options.json()["ticket"], "credential": json.loads(assertion)},
    )
    assert signed.status_code == 200, signed.text
    return str(signed.json()["access_token"])


async def issue_code(client: httpx.AsyncClient, access: str) -> str:
    issued = await client.post(CONSOLE_CODE, headers=bearer(access))
    assert issued.status_code == 201, issued.text
    return str(issued.json()["code"])


class ConsoleKeys:
    """Staff passkeys registered in a CLI data directory, and codes issued from them.

    The API runs over the data directory's own database with the wall clock (the CLI checks
    codes with the system clock)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.passkeys: dict[str, SoftwareAuthenticator] = {}

    def _settings(self) -> Settings:
        metadata = self.data_dir.parent / "staff-authenticators.json"
        if not metadata.exists():
            metadata.write_text(default_metadata_document())
        return Settings(  # type: ignore[call-arg]
            data_dir=self.data_dir, webauthn_staff_metadata_file=metadata, _env_file=None
        )

    def _with_api(self, work: object) -> str:
        async def go() -> str:
            settings = self._settings()
            engine = create_engine(settings.main_database_url)
            try:
                clock = FrozenClock(time.time_ns())
                async with running_api(settings, engine, clock) as api, api.client() as client:
                    return await work(api, client)  # type: ignore[operator,no-any-return]
            finally:
                await engine.dispose()

        return asyncio.run(go())

    def enrol(self, *usernames: str) -> None:
        """Register an attested passkey for each staff member."""

        async def work(api: Api, client: httpx.AsyncClient) -> str:
            for name in usernames:
                self.passkeys[name] = await register_passkey(api, client, name)
            return ""

        self._with_api(work)

    def code(self, username: str) -> str:
        """A fresh console code from a new passkey session of `username`."""

        async def work(api: Api, client: httpx.AsyncClient) -> str:
            access = await passkey_session(api, client, self.passkeys[username])
            return await issue_code(client, access)

        return self._with_api(work)
