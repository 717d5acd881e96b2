"""The README, run as printed: every command of its walkthrough blocks, in order, against
`tradeguard serve --demo` as a real process (on a free port instead of 8443, from a
directory whose `var/` is the server's data dir, as `make run` leaves it).

curl commands are executed as the HTTP requests they describe (the options a walkthrough
may use are modelled below; any other option fails the test, so the README cannot drift
into commands this test does not check). `.venv/bin/tradeguard` and `.venv/bin/python`
commands run as subprocesses. Each `<placeholder>` is filled the way a reader fills it: from
the field of that name in an earlier JSON answer, or from the output of the command whose
comment names it.

The same server then serves the pages behind emailed links (a sign-up confirmed and a
password reset, followed from the development mailbox as a browser would), and picks up a
signing-key rotation made with the CLI while it runs.
"""

from __future__ import annotations

import os
import re
import shlex
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import pyotp
import pytest

from tests.e2e.servers import REPO_ROOT, RunningServer, running_server
from tests.support.forms import BROWSER_FORM_HEADERS, only_form
from tradeguard.notify.senders import read_dev_mailbox, read_text_body

pytestmark = pytest.mark.e2e

README = REPO_ROOT / "README.md"
BLOCK_MARKER = (
    "<!-- walkthrough: tests/e2e/test_readme_walkthrough.py runs every command in this block -->"
)
README_ORIGIN = "https://localhost:8443"
PLACEHOLDER = re.compile(r"<([a-z_]+)>")
BOUNDED_WAIT_SECONDS = 15
NEW_PASSWORD = "violet harbour compass 5820"
RESET_PASSWORD = "amber quarry whistle 3147"
TOTP_STEP_SECONDS = 30


@dataclass(frozen=True)
class Command:
    argv: list[str]
    comment: str


def walkthrough_blocks() -> list[list[Command]]:
    """The commands of every README block marked as a walkthrough, in order."""
    text = README.read_text(encoding="utf-8")
    blocks: list[list[Command]] = []
    for part in text.split(BLOCK_MARKER)[1:]:
        body = part.removeprefix("\n")
        assert body.startswith("```sh\n"), "a walkthrough marker must precede a ```sh block"
        source = body.removeprefix("```sh\n").split("\n```", 1)[0]
        commands = []
        for line in source.replace("\\\n", " ").splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            code, _, comment = line.partition("  # ")
            commands.append(Command(shlex.split(code), comment.strip()))
        blocks.append(commands)
    assert len(blocks) == 2, "the README has a sign-in walkthrough and a sign-up walkthrough"
    return blocks


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUNDED_WAIT_SECONDS
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def clean_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEGUARD_")}
    env["COLUMNS"] = "240"  # wide enough that the mailbox table never wraps a row
    return env


def venv_program(name: str) -> list[str]:
    """`.venv/bin/<name>` of the environment running the tests."""
    if name == "python":
        return [sys.executable]
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", name]


@dataclass
class Reader:
    """Runs README commands and keeps what a reader would copy from each answer."""

    server: RunningServer
    values: dict[str, str]
    answers: list[httpx.Response] = field(default_factory=list)

    @property
    def cwd(self) -> Path:
        # The server's data dir is <tmp>/var, so `var/...` resolves as it does for `make run`.
        return self.server.data_dir.parent

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.server.port}"

    def fill(self, text: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            assert name in self.values, f"the README uses <{name}> before anything gave it"
            return self.values[name]

        return PLACEHOLDER.sub(value, text)

    def run(self, command: Command) -> None:
        program, *args = command.argv
        filled = [self.fill(arg) for arg in args]
        if program == "curl":
            self.curl(filled)
        elif program == ".venv/bin/tradeguard":
            self.tradeguard(filled, command.comment)
        elif program == ".venv/bin/python":
            self.python(filled, command.comment)
        else:
            raise AssertionError(f"the README runs {program!r}, which this test does not model")

    def curl(self, args: list[str]) -> None:
        method, url, data, cacert = None, None, None, None
        headers: dict[str, str] = {}
        options = iter(args)
        for option in options:
            if option == "--cacert":
                cacert = next(options)
            elif option == "-X":
                method = next(options)
            elif option == "-H":
                name, _, value = next(options).partition(":")
                headers[name.strip().lower()] = value.strip()
            elif option == "-d":
                data = next(options)
            elif option.startswith("https://") and url is None:
                url = option
            else:
                raise AssertionError(f"curl option {option!r} is not modelled by this test")
        assert url is not None
        assert cacert == "var/tls/dev-cert.pem", "README requests pin the dev certificate"
        assert url.startswith(README_ORIGIN + "/"), url
        if data is not None:
            # curl -d sends the bytes as given, as a form unless a content-type is set.
            headers.setdefault("content-type", "application/x-www-form-urlencoded")
        context = ssl.create_default_context(cafile=str(self.cwd / cacert))
        response = httpx.request(
            method or ("POST" if data is not None else "GET"),
            self.origin + url.removeprefix(README_ORIGIN),
            headers=headers,
            content=data,
            verify=context,
            timeout=10,
        )
        assert response.is_success, (url, response.status_code, response.text)
        self.answers.append(response)
        if response.headers.get("content-type") == "application/json":
            body = response.json()
            if isinstance(body, dict):
                self.values.update({k: v for k, v in body.items() if isinstance(v, str)})

    def _program(self, argv: list[str]) -> str:
        result = subprocess.run(
            argv,
            cwd=self.cwd,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (argv, result.stderr)
        return result.stdout

    def tradeguard(self, args: list[str], comment: str) -> None:
        argv = [*venv_program("tradeguard"), *args]
        provides = PLACEHOLDER.search(comment)
        if provides is None:
            self._program(argv)
            return
        name = provides.group(1)
        if name == "id":
            # The listing: the newest message with the subject the comment quotes. Mail is
            # delivered by the outbox worker within a second, so look again until it is there.
            subject = re.search(r'"([^"]+)"', comment)
            assert subject, comment
            row = re.compile(rf"([0-9a-f]{{12}})\s*│.*│\s*{re.escape(subject.group(1))}\s*│")
            found: list[str] = []

            def listed() -> bool:
                found[:] = row.findall(self._program(argv))
                return bool(found)

            wait_for(listed, f"{subject.group(1)!r} in the development mailbox")
            self.values["id"] = found[-1]
        elif name == "code":
            code = re.search(r"\b(\d{6})\b", self._program(argv))
            assert code, "the message shows a 6-digit code"
            self.values["code"] = code.group(1)
        elif name == "link":
            link = re.search(r"https://\S+", self._program(argv))
            assert link, "the message has a link"
            self.values["link"] = link.group(0)
        else:
            raise AssertionError(f"no rule for reading <{name}> from tradeguard output")

    def python(self, args: list[str], comment: str) -> None:
        code = self._program([*venv_program("python"), *args]).strip()
        assert re.fullmatch(r"\d{6}", code), code
        assert "<totp_code>" in comment
        if "next" in comment and code == self.values.get("totp_code"):
            # The README says to wait until the code changes (each code works once); the
            # server accepts the next 30-second step's code at once, which spares the wait.
            totp = pyotp.TOTP(self.values["secret"])
            code = totp.at(int(time.time()) + TOTP_STEP_SECONDS)
        self.values["totp_code"] = code


def demo_password(server: RunningServer, username: str) -> str:
    match = re.search(
        rf"^\s+{re.escape(username)}\s+\S+\s+\S+\s+password: (\S+)$", server.log_text(), re.M
    )
    assert match, server.log_text()
    return match.group(1)


def mailed_link(server: RunningServer, *, to: str, subject: str) -> str:
    mailbox = server.data_dir / "mailbox"
    links: list[str] = []

    def arrived() -> bool:
        for entry in read_dev_mailbox(mailbox) if mailbox.exists() else []:
            if entry.to == to and entry.subject == subject:
                found = re.search(r"https://\S+", read_text_body(entry.path))
                if found:
                    links.append(found.group(0))
        return bool(links)

    wait_for(arrived, f"{subject!r} for {to}")
    return links[-1]


def key_id(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # No TRADEGUARD_PUBLIC_ORIGIN: the origin must follow the random port.
    with running_server(
        tmp_path_factory.mktemp("readme") / "var", ["--demo"], via_cli=True
    ) as server:
        yield server


@pytest.fixture
def api(platform: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"https://localhost:{platform.port}",
        verify=platform.client_context(),
        timeout=10,
    ) as client:
        yield client


class TestReadmeWalkthrough:
    @pytest.mark.spec("AUTH-1", "AUTH-6", "SESS-1")
    def test_the_sign_in_walkthrough_works_as_printed(
        self, platform: RunningServer, api: httpx.Client
    ) -> None:
        reader = Reader(platform, {"password": demo_password(platform, "alice")})
        for command in walkthrough_blocks()[0]:
            reader.run(command)

        # `make run` says where it serves only once it does, with the origin links will use.
        assert (
            f"tradeguard serving on https://127.0.0.1:{platform.port} "
            f"(public origin https://localhost:{platform.port};"
        ) in platform.log_text()
        answers = {answer.request.url.path: answer for answer in reader.answers}
        signed_in = answers["/api/v1/auth/mfa/verify"].json()
        claims = jwt.decode(signed_in["access_token"], options={"verify_signature": False})
        assert "otp" in claims["amr"]
        assert claims["exp"] - claims["iat"] == 15 * 60
        # Served on another port than 8443 without TRADEGUARD_PUBLIC_ORIGIN: the issuer
        # follows the port.
        assert claims["iss"] == f"https://localhost:{platform.port}"
        assert answers["/api/v1/auth/logout"].status_code == 204
        # The access token the refresh gave was the one signed out: it no longer works.
        after = api.get(
            "/api/v1/auth/sessions",
            headers={"authorization": f"Bearer {reader.values['access_token']}"},
        )
        assert after.status_code == 401

    @pytest.mark.spec("AUTH-5")
    def test_a_sign_up_is_confirmed_through_the_emailed_link_page(
        self, platform: RunningServer, api: httpx.Client
    ) -> None:
        reader = Reader(platform, {"new_password": NEW_PASSWORD})
        for command in walkthrough_blocks()[1]:
            reader.run(command)
        link = reader.values["link"]
        assert link.startswith(f"https://localhost:{platform.port}/verify-email?token=")

        tokens = api.post(
            "/api/v1/auth/login", json={"login": "newcomer", "password": NEW_PASSWORD}
        ).json()
        auth = {"authorization": f"Bearer {tokens['access_token']}"}
        assert api.post("/api/v1/auth/email/proof", headers=auth).status_code == 403

        page = api.get(link)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["referrer-policy"] == "no-referrer"
        form = only_form(page.text)
        assert form.method == "post"
        confirmed = api.post(form.action, data=form.submission(), headers=BROWSER_FORM_HEADERS)
        assert confirmed.status_code == 200, confirmed.text
        assert "Email address confirmed" in confirmed.text
        # Only a confirmed address can receive a mailbox proof.
        assert api.post("/api/v1/auth/email/proof", headers=auth).status_code == 202

    def test_a_password_is_reset_through_the_emailed_link_page(
        self, platform: RunningServer, api: httpx.Client
    ) -> None:
        password = demo_password(platform, "sam.support")
        email = "sam.support@demo.example.com"
        requested = api.post("/api/v1/auth/password/reset", json={"email": email})
        assert requested.status_code == 202
        link = mailed_link(platform, to=email, subject="Reset your tradeguard password")
        assert link.startswith(f"https://localhost:{platform.port}/reset-password?token=")

        form = only_form(api.get(link).text)
        changed = api.post(
            form.action,
            data=form.submission(new_password=RESET_PASSWORD),
            headers=BROWSER_FORM_HEADERS,
        )
        assert changed.status_code == 200, changed.text
        assert "Password changed" in changed.text
        old = api.post("/api/v1/auth/login", json={"login": "sam.support", "password": password})
        new = api.post(
            "/api/v1/auth/login", json={"login": "sam.support", "password": RESET_PASSWORD}
        )
        assert old.status_code == 401
        assert new.status_code == 200
        # The link is single-use: following it again shows the form, sending it fails.
        again = api.post(
            form.action,
            data=form.submission(new_password=NEW_PASSWORD),
            headers=BROWSER_FORM_HEADERS,
        )
        assert again.status_code == 400


class TestKeyRotationWhileServing:
    def test_the_server_signs_with_a_key_rotated_by_the_cli_and_still_accepts_old_tokens(
        self, platform: RunningServer, api: httpx.Client
    ) -> None:
        credentials = {"login": "bob", "password": demo_password(platform, "bob")}
        before = api.post("/api/v1/auth/login", json=credentials).json()["access_token"]
        old_kid = key_id(before)

        rotated = subprocess.run(
            [
                *venv_program("tradeguard"),
                "keys",
                "rotate-jwt",
                "--data-dir",
                str(platform.data_dir),
            ],
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert rotated.returncode == 0, rotated.stderr
        new_kid = re.search(r"active key\s+(\S+)", rotated.stdout)
        assert new_kid, rotated.stdout
        assert "no restart needed" in rotated.stdout

        def published() -> bool:
            keys = api.get("/.well-known/jwks.json").json()["keys"]
            return keys[0]["kid"] == new_kid.group(1)

        wait_for(published, "the new key in the JWKS")
        jwks = {key["kid"]: key for key in api.get("/.well-known/jwks.json").json()["keys"]}
        assert {old_kid, new_kid.group(1)} <= set(jwks)

        after = api.post("/api/v1/auth/login", json=credentials).json()["access_token"]
        assert key_id(after) == new_kid.group(1) != old_kid
        for token in (before, after):
            sessions = api.get(
                "/api/v1/auth/sessions", headers={"authorization": f"Bearer {token}"}
            )
            assert sessions.status_code == 200, sessions.text
        # A resource server verifies the new token offline with the published key.
        key = jwt.PyJWK(jwks[new_kid.group(1)])
        claims = jwt.decode(after, key, algorithms=[key.algorithm_name], audience="tradeguard-api")
        assert claims["sub"]
