"""The pages behind emailed links: script-free forms that act only when sent, from our origin."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from tests.support.api import (
    PASSWORD,
    Api,
    bearer,
    login,
    register_verified,
    step_up,
    user_with_totp,
)
from tests.support.forms import BROWSER_FORM_HEADERS, HtmlForm, only_form
from tradeguard.identity.models import User
from tradeguard.web.pages import PAGE_CSP

NEW_PASSWORD = "lantern orchard velvet 2718"
EMAIL = "alice@example.com"


async def mailed_link(api: Api, to: str, template: str) -> str:
    mails = [m for m in await api.outbox(to=to) if m["template"] == template]
    found = re.search(r"https://\S+", mails[-1]["body"])
    assert found, mails[-1]
    return found.group(0)


def local(link: str) -> str:
    """The link's path and query, to request from the in-process app."""
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


async def register(api: Api, client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/api/v1/auth/register",
        json={"username": "alice", "email": EMAIL, "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    return await mailed_link(api, EMAIL, "verify_email")


async def email_verified(api: Api) -> bool:
    async with api.services.unit_of_work() as session:
        stamp = await session.scalar(select(User.email_verified_ns).where(User.email == EMAIL))
    return stamp is not None


async def submit(client: httpx.AsyncClient, form: HtmlForm, **values: str) -> httpx.Response:
    return await client.post(
        form.action, data=form.submission(**values), headers=BROWSER_FORM_HEADERS
    )


def assert_page(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text.lower()


class TestVerifyEmailPage:
    @pytest.mark.spec("AUTH-5")
    async def test_the_emailed_link_opens_a_form_that_confirms_only_when_sent(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            link = await register(api, client)
            assert link.startswith("https://localhost:8443/verify-email?token=")
            token = link.split("token=", 1)[1]
            # Opening the link (as a mail scanner would, twice) confirms nothing.
            first = await client.get(local(link))
            await client.get(local(link))
            assert not await email_verified(api)
            assert_page(first, 200)
            form = only_form(first.text)
            assert (form.method, form.action, form.inputs) == (
                "post",
                "/verify-email",
                {"token": token},
            )

            sent = await submit(client, form)

        assert_page(sent, 200)
        assert "Email address confirmed" in sent.text
        assert await email_verified(api)

    async def test_a_used_or_malformed_link_gets_a_page_that_echoes_nothing(self, api: Api) -> None:
        async with api.client() as client:
            link = await register(api, client)
            form = only_form((await client.get(local(link))).text)
            await submit(client, form)
            again = await submit(client, form)
            hostile = await client.get(
                "/verify-email", params={"token": '"><script>alert(1)</script>' + "x" * 20}
            )
            missing = await client.get("/verify-email")
            unknown = await client.get("/verify-email", params={"token": "A" * 43})
        assert_page(again, 400)
        assert "does not work" in again.text
        for response in (hostile, missing):
            assert_page(response, 400)
            assert "alert" not in response.text
            assert "<form" not in response.text
        # A well-formed token is only known to be bad once the form is sent.
        assert_page(unknown, 200)


class TestConfirmEmailPage:
    async def test_a_new_address_is_confirmed_through_its_page(self, api: Api) -> None:
        async with api.client() as client:
            access, totp = await user_with_totp(api, client)
            await step_up(api, client, access, totp)
            changed = await client.put(
                "/api/v1/auth/email",
                json={"new_email": "alice.new@example.com"},
                headers=bearer(access),
            )
            assert changed.status_code == 202, changed.text
            link = await mailed_link(api, "alice.new@example.com", "confirm_email_change")
            assert link.startswith("https://localhost:8443/confirm-email?token=")
            page = await client.get(local(link))
            form = only_form(page.text)
            sent = await submit(client, form)
        assert_page(page, 200)
        assert_page(sent, 200)
        assert "Email address changed" in sent.text
        async with api.services.unit_of_work() as session:
            assert await session.scalar(select(User.email)) == "alice.new@example.com"


class TestResetPasswordPage:
    async def test_a_password_is_reset_through_the_page_and_every_session_ends(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            old_session = (await login(client))["access_token"]
            await client.post("/api/v1/auth/password/reset", json={"email": EMAIL})
            link = await mailed_link(api, EMAIL, "password_reset")
            assert link.startswith("https://localhost:8443/reset-password?token=")
            page = await client.get(local(link))
            form = only_form(page.text)
            assert set(form.inputs) == {"token", "new_password", "code"}
            assert form.selects == {"method": ["", "totp", "backup_code"]}
            sent = await submit(client, form, new_password=NEW_PASSWORD)
            old_password = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": PASSWORD}
            )
            new_password = await client.post(
                "/api/v1/auth/login", json={"login": "alice", "password": NEW_PASSWORD}
            )
            ended = await client.get("/api/v1/auth/sessions", headers=bearer(old_session))
        assert_page(page, 200)
        assert_page(sent, 200)
        assert "Password changed" in sent.text
        assert NEW_PASSWORD not in sent.text
        assert old_password.status_code == 401
        assert new_password.status_code == 200
        assert ended.status_code == 401

    async def test_a_weak_password_shows_the_rule_and_keeps_the_link_usable(self, api: Api) -> None:
        async with api.client() as client:
            await register_verified(api, client)
            await client.post("/api/v1/auth/password/reset", json={"email": EMAIL})
            form = only_form(
                (await client.get(local(await mailed_link(api, EMAIL, "password_reset")))).text
            )
            weak = await submit(client, form, new_password="password1234")
            retry = only_form(weak.text)
            strong = await submit(client, retry, new_password=NEW_PASSWORD)
        assert_page(weak, 422)
        assert "password1234" not in weak.text
        assert retry.inputs["token"] == form.inputs["token"]
        assert_page(strong, 200)

    async def test_an_account_with_a_second_factor_confirms_it_on_the_page(self, api: Api) -> None:
        async with api.client() as client:
            _, totp = await user_with_totp(api, client)
            await client.post("/api/v1/auth/password/reset", json={"email": EMAIL})
            form = only_form(
                (await client.get(local(await mailed_link(api, EMAIL, "password_reset")))).text
            )
            without = await submit(client, form, new_password=NEW_PASSWORD)
            api.clock.advance(seconds=30)  # a fresh TOTP step: a used code is never accepted
            right = totp.at(api.clock.now_ns() // 10**9)
            wrong = await submit(
                client,
                form,
                new_password=NEW_PASSWORD,
                method="totp",
                code=f"{(int(right) + 1) % 10**6:06d}",
            )
            confirmed = await submit(
                client, form, new_password=NEW_PASSWORD, method="totp", code=right
            )
        assert_page(without, 403)
        assert "authenticator app" in without.text
        assert only_form(without.text).inputs["token"] == form.inputs["token"]
        assert_page(wrong, 400)
        assert "not accepted" in wrong.text
        assert_page(confirmed, 200)


# Forms a page never sends: fetch metadata or an Origin from elsewhere.
FOREIGN_HEADERS = (
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},
    {"origin": "https://evil.example"},
    {"origin": "https://localhost:8443.evil.example"},
)
# Bodies a page never sends, and the status each gets ("TOKEN" is the form's real token).
FOREIGN_BODIES = (
    ("application/json", b'{"token": "TOKEN"}', 415),
    ("application/x-www-form-urlencoded", b"token=TOKEN&token=TOKEN", 400),
    ("application/x-www-form-urlencoded", b"token=TOKEN&admin=1", 400),
    ("application/x-www-form-urlencoded", b"token=TOKEN&\xff=1", 400),
    ("application/x-www-form-urlencoded", b"token=TOKEN&pad=" + b"x" * 20_000, 413),
)


class TestFormSubmission:
    async def test_a_form_sent_from_another_site_is_refused_and_changes_nothing(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            form = only_form((await client.get(local(await register(api, client)))).text)
            for headers in FOREIGN_HEADERS:
                refused = await client.post(
                    form.action,
                    data=form.submission(),
                    headers={**BROWSER_FORM_HEADERS, **headers},
                )
                assert_page(refused, 403)
            assert not await email_verified(api)
            # The token was not touched: the genuine form still works.
            assert (await submit(client, form)).status_code == 200

    async def test_our_own_origin_and_clients_without_fetch_metadata_are_accepted(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            form = only_form((await client.get(local(await register(api, client)))).text)
            sent = await client.post(
                form.action,
                data=form.submission(),
                headers={"origin": "https://localhost:8443"},
            )
        assert_page(sent, 200)

    async def test_a_body_that_is_not_the_pages_form_is_refused(self, api: Api) -> None:
        async with api.client() as client:
            form = only_form((await client.get(local(await register(api, client)))).text)
            token = form.inputs["token"]
            for content_type, body, status in FOREIGN_BODIES:
                refused = await client.post(
                    form.action,
                    content=body.replace(b"TOKEN", token.encode()),
                    headers={**BROWSER_FORM_HEADERS, "content-type": content_type},
                )
                assert_page(refused, status)
                assert token not in refused.text
            assert not await email_verified(api)
