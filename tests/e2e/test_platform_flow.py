"""The README's platform, end to end: `python -m tradeguard serve --demo` as a real process,
a demo user signing in over TLS, enrolling TOTP, signing in with it, the notification
reaching the development mailbox through the real outbox worker, and the audit ledger
verifying from the CLI while the server runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import jwt
import pyotp
import pytest

from tests.e2e.servers import RunningServer, running_server
from tradeguard.notify.senders import read_dev_mailbox, read_text_body

pytestmark = pytest.mark.e2e
BOUNDED_WAIT_SECONDS = 15


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(
        tmp_path_factory.mktemp("platform") / "var", ["--demo"], via_cli=True
    ) as server:
        yield server


def demo_password(server: RunningServer, username: str) -> str:
    match = re.search(
        rf"^\s+{re.escape(username)}\s+\S+\s+\S+\s+password: (\S+)$", server.log_text(), re.M
    )
    assert match, server.log_text()
    return match.group(1)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env["COLUMNS"] = "240"  # wide enough that tables never wrap a subject line
    return subprocess.run(
        [sys.executable, "-m", "tradeguard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + BOUNDED_WAIT_SECONDS
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class TestDemoPlatform:
    @pytest.mark.spec("AUTH-1", "AUTH-6", "ACCT-1", "TLS-2", "AUD-1")
    def test_a_demo_trader_enrols_totp_and_signs_in_with_it(self, platform: RunningServer) -> None:
        password = demo_password(platform, "alice")
        with httpx.Client(
            base_url=platform.base_url, verify=platform.client_context(), timeout=10
        ) as api:
            first = api.post(
                "/api/v1/auth/login", json={"login": "alice", "password": password}
            ).json()
            assert first["status"] == "authenticated"
            auth = {"Authorization": f"Bearer {first['access_token']}"}
            # A password alone never enrols a first factor: prove the mailbox (the code
            # arrives through the real outbox worker in the development mailbox).
            assert api.post("/api/v1/auth/email/proof", headers=auth).status_code == 202
            mailbox = platform.data_dir / "mailbox"
            codes: list[str] = []

            def proof_code_arrived() -> bool:
                for entry in read_dev_mailbox(mailbox) if mailbox.exists() else []:
                    if entry.subject == "Your tradeguard confirmation code":
                        found = re.search(r"\b(\d{6})\b", read_text_body(entry.path))
                        if found:
                            codes.append(found.group(1))
                            return True
                return False

            wait_for(proof_code_arrived, "the mailbox-proof code")
            proved = api.post(
                "/api/v1/auth/email/proof/verify", json={"code": codes[0]}, headers=auth
            )
            assert proved.status_code == 200, proved.text
            enrol = api.post("/api/v1/auth/mfa/totp/enroll", headers=auth).json()
            totp = pyotp.TOTP(enrol["secret"])
            confirmed = api.post(
                "/api/v1/auth/mfa/totp/confirm",
                json={"factor_id": enrol["factor_id"], "code": totp.now()},
                headers=auth,
            )
            assert confirmed.status_code == 200, confirmed.text
            challenge = api.post(
                "/api/v1/auth/login",
                json={
                    "login": "alice",
                    "password": password,
                    "device": {"device_token": first["device_token"]},
                },
            ).json()
            assert challenge["status"] == "mfa_required"
            # The enrolment code's time step is spent for good; the next step's code is within
            # the server's one-step window, so the test need not wait 30 seconds.
            code = totp.at(int(time.time()) + 30)
            verified = api.post(
                "/api/v1/auth/mfa/verify",
                json={"ticket": challenge["ticket"], "method": "totp", "code": code},
            )
            assert verified.status_code == 200, verified.text
            jwks = api.get("/.well-known/jwks.json").json()
        # Verify the token offline as a resource server would: only the published key.
        token = verified.json()["access_token"]
        key = jwt.PyJWK(jwks["keys"][0])
        claims = jwt.decode(token, key, algorithms=[key.algorithm_name], audience="tradeguard-api")
        assert "order:place" in claims["permissions"]
        assert "otp" in claims["amr"]

        data_dir = str(platform.data_dir)
        wait_for(
            lambda: (
                "sign-in methods changed" in cli("dev", "mailbox", "--data-dir", data_dir).stdout
            ),
            "the factor-change email in the development mailbox",
        )
        wait_for(
            lambda: "awaiting" not in cli("audit", "verify", "--data-dir", data_dir).stdout,
            "every audit event to be chained",
        )
        verify = cli("audit", "verify", "--json", "--data-dir", data_dir)
        assert verify.returncode == 0, verify.stderr
        assert '"ok": true' in verify.stdout

    def test_the_demo_is_not_reseeded_and_passwords_are_not_reprinted(
        self, platform: RunningServer
    ) -> None:
        assert platform.log_text().count("password:") == 6

    def test_every_command_the_demo_tour_prints_works(self, platform: RunningServer) -> None:
        log = platform.log_text()
        assert "What to look at" in log
        commands = re.findall(r"^  \.venv/bin/tradeguard (.+)$", log, re.M)
        assert len(commands) == 7, log
        outputs = {}
        for command in commands:
            ran = cli(*command.split())
            assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
            outputs[command.split(" --data-dir")[0]] = ran.stdout
        alerts = outputs["surveillance alerts"]
        assert "WASH_TRADE  MAN-1  KO" in alerts
        assert "SPOOFING  MAN-2  F" in alerts
        assert "assigned" in outputs["surveillance cases list"]
        orders = next(out for cmd, out in outputs.items() if cmd.startswith("trading orders"))
        assert "KO" in orders
        assert "MSFT" in orders
