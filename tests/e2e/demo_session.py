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


@dataclass
class DemoTrader:
    username: str
    password: str
    totp: pyotp.TOTP
    device_token: str
    access_token: str

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


def sign_in_with_totp(
    api: httpx.Client, username: str, password: str, totp: pyotp.TOTP, device_token: str
) -> str:
    challenge = api.post(
        "/api/v1/auth/login",
        json={"login": username, "password": password, "device": {"device_token": device_token}},
    ).json()
    assert challenge["status"] == "mfa_required", challenge
    for offset in (30, 0, 60):
        # A code is single use per time step: try the next step first (inside the window).
        verified = api.post(
            "/api/v1/auth/mfa/verify",
            json={
                "ticket": challenge["ticket"],
                "method": "totp",
                "code": totp.at(int(time.time()) + offset),
            },
        )
        if verified.status_code == 200:
            return str(verified.json()["access_token"])
    raise AssertionError(verified.text)


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
        confirmed = api.post(
            "/api/v1/auth/mfa/totp/confirm",
            json={"factor_id": enrol["factor_id"], "code": totp.now()},
            headers=auth,
        )
        assert confirmed.status_code == 200, confirmed.text
        token = sign_in_with_totp(api, username, password, totp, body["device_token"])
    return DemoTrader(username, password, totp, body["device_token"], token)
