"""A demo trader signed in with TOTP against a real `serve --demo` process (e2e and bench)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx
import pyotp

from tests.e2e.servers import RunningServer
from tradeguard.notify.senders import read_dev_mailbox, read_text_body

BOUNDED_WAIT_SECONDS = 20
STEP_SECONDS = 30


@dataclass
class DemoTrader:
    username: str
    password: str
    totp: pyotp.TOTP
    device_token: str
    access_token: str
    last_step: int = 0  # the newest TOTP time step used: a code works once

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def demo_password(server: RunningServer, username: str) -> str:
    match = re.search(
        rf"^\s+{re.escape(username)}\s+\S+\s+\S+\s+password: (\S+)$", server.log_text(), re.M
    )
    assert match, server.log_text()
    return match.group(1)


def _mail_code(server: RunningServer, seen: set[str]) -> str:
    mailbox = server.data_dir / "mailbox"
    deadline = time.monotonic() + BOUNDED_WAIT_SECONDS
    while time.monotonic() < deadline:
        for entry in read_dev_mailbox(mailbox) if mailbox.exists() else []:
            if entry.subject == "Your tradeguard confirmation code" and str(entry.path) not in seen:
                found = re.search(r"\b(\d{6})\b", read_text_body(entry.path))
                if found:
                    seen.add(str(entry.path))
                    return found.group(1)
        time.sleep(0.1)
    raise AssertionError("no confirmation code reached the development mailbox")


def fresh_totp_code(totp: pyotp.TOTP, last_step: int) -> tuple[str, int]:
    """A code for a time step never used before that the server still accepts (its window
    is one step either side of now): waits for the clock when the next one is too early."""
    while True:
        now_step = int(time.time()) // STEP_SECONDS
        step = max(now_step - 1, last_step + 1)
        if step <= now_step + 1:
            return totp.at(step * STEP_SECONDS), step
        time.sleep(1)


def sign_in_with_totp(api: httpx.Client, trader: DemoTrader) -> str:
    """Password, then a fresh TOTP code, from the trader's authorized device."""
    challenge = api.post(
        "/api/v1/auth/login",
        json={
            "login": trader.username,
            "password": trader.password,
            "device": {"device_token": trader.device_token},
        },
    ).json()
    assert challenge["status"] == "mfa_required", challenge
    code, step = fresh_totp_code(trader.totp, trader.last_step)
    verified = api.post(
        "/api/v1/auth/mfa/verify",
        json={"ticket": challenge["ticket"], "method": "totp", "code": code},
    )
    assert verified.status_code == 200, verified.text
    trader.last_step = step
    trader.access_token = str(verified.json()["access_token"])
    return trader.access_token


def demo_trader(server: RunningServer, username: str = "alice") -> DemoTrader:
    """Sign a demo user in, prove the mailbox, enrol TOTP, and sign in with it."""
    password = demo_password(server, username)
    with httpx.Client(base_url=server.base_url, verify=server.client_context(), timeout=20) as api:
        first = api.post("/api/v1/auth/login", json={"login": username, "password": password})
        assert first.status_code == 200, first.text
        body = first.json()
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        assert api.post("/api/v1/auth/email/proof", headers=auth).status_code == 202
        code = _mail_code(server, set())
        proved = api.post("/api/v1/auth/email/proof/verify", json={"code": code}, headers=auth)
        assert proved.status_code == 200, proved.text
        enrol = api.post("/api/v1/auth/mfa/totp/enroll", headers=auth).json()
        totp = pyotp.TOTP(enrol["secret"])
        code, step = fresh_totp_code(totp, 0)
        confirmed = api.post(
            "/api/v1/auth/mfa/totp/confirm",
            json={"factor_id": enrol["factor_id"], "code": code},
            headers=auth,
        )
        assert confirmed.status_code == 200, confirmed.text
        trader = DemoTrader(username, password, totp, body["device_token"], "", step)
        sign_in_with_totp(api, trader)
    return trader
