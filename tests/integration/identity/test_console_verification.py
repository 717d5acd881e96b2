"""A staff member named at the command line (`--as`) proves it with a single-use console code
that their own session, signed in or stepped up with their security key, issued over the API
(IAC-3): a password alone gives staff no authority over the API, and none at the console
either (issue #8, H1). Refusals look alike and back off like a sign-in."""

from __future__ import annotations

import httpx
import pytest

from tests.support.api import PASSWORD, Api, audit_events, bearer, login, user_with_totp
from tests.support.console import CONSOLE_CODE, issue_code, passkey_session
from tests.support.trading import staff_with_passkey
from tradeguard.access.domain import Role
from tradeguard.identity import repository
from tradeguard.identity.common import hash_secret_token
from tradeguard.identity.models import AuthTicket, MfaFactor, User
from tradeguard.identity.sessions import (
    CONSOLE_CODE_TICKET,
    CONSOLE_THROTTLE_KEY,
    Denied,
    Failure,
)

OPERATOR = "olga"
REFUSED = Denied(Failure.INVALID_CREDENTIALS)


async def verify(api: Api, login_name: str, code: str) -> tuple[User, str] | Denied:
    async with api.services.unit_of_work() as session:
        return await api.services.auth.verify_staff_console_code(
            session, login=login_name, code=code, operator=OPERATOR
        )


async def staff_code(api: Api, client: httpx.AsyncClient, username: str) -> tuple[str, str]:
    """A staff member with an attested passkey, signed in with it; a console code and the
    issuing session's id."""
    _, passkey = await staff_with_passkey(api, client, username, Role.ADMIN)
    access = await passkey_session(api, client, passkey)
    session_id = api.services.verifier.verify(access).session_id
    return await issue_code(client, access), session_id


@pytest.mark.spec("IAC-3")
class TestConsoleCodes:
    async def test_a_key_session_issues_a_code_that_verifies_the_member_once(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            code, session_id = await staff_code(api, client, "ada")

        outcome = await verify(api, "ada", code)
        replayed = await verify(api, "ada", code)

        assert isinstance(outcome, tuple)
        user, issued_by = outcome
        assert user.username == "ada"
        assert issued_by == session_id
        assert replayed == REFUSED
        [event] = await audit_events(api, "identity:console:verified")
        assert event["actor"] == {"kind": "operator", "id": OPERATOR}
        assert event["subject"] == {"kind": "user", "id": user.id}
        assert event["data"]["staff_verified_by"] == "hardware_key_session"
        assert event["data"]["session_id"] == session_id
        assert event["data"]["amr"] == ["hwk"]
        # Stored only as a hash: the code itself is nowhere in the ticket.
        async with api.services.unit_of_work() as session:
            row = await repository.ticket_by_hash(
                session, hash_secret_token(code), CONSOLE_CODE_TICKET
            )
            assert row is not None
            assert code.encode() not in row.token_hash
            assert code not in row.payload
        assert len(code) >= 22  # >= 128 bits, URL-safe base64

    async def test_a_password_session_or_a_customer_gets_no_code(self, api: Api) -> None:
        async with api.client() as client:
            async with api.services.unit_of_work() as session:
                await api.services.accounts.create_user(
                    session,
                    username="ada",
                    email="ada@example.com",
                    password=PASSWORD,
                    role=Role.ADMIN,
                    email_verified=True,
                )
            # A staff member's password session (no key yet): no staff authority, no code.
            by_password = str((await login(client, "ada"))["access_token"])
            staff_answer = await client.post(CONSOLE_CODE, headers=bearer(by_password))
            trader, _ = await user_with_totp(api, client, "tina")
            trader_answer = await client.post(CONSOLE_CODE, headers=bearer(trader))
            anonymous = await client.post(CONSOLE_CODE)

        assert staff_answer.status_code == 403, staff_answer.text
        assert trader_answer.status_code == 403, trader_answer.text
        assert anonymous.status_code == 401
        async with api.services.unit_of_work() as session:
            issued = (
                await session.execute(
                    AuthTicket.__table__.select().where(AuthTicket.kind == CONSOLE_CODE_TICKET)
                )
            ).all()
        assert issued == []

    async def test_a_password_is_not_a_code(self, api: Api) -> None:
        """H1: the console used to accept the staff member's password."""
        async with api.client() as client:
            await staff_code(api, client, "ada")

        assert await verify(api, "ada", PASSWORD) == REFUSED

    async def test_a_code_shown_for_someone_else_is_refused_and_burnt(self, api: Api) -> None:
        async with api.client() as client:
            adas, _ = await staff_code(api, client, "ada")
            await staff_code(api, client, "bob")

        assert await verify(api, "bob", adas) == REFUSED
        assert await verify(api, "ada", adas) == REFUSED

    async def test_an_expired_code_is_refused(self, api: Api) -> None:
        async with api.client() as client:
            code, _ = await staff_code(api, client, "ada")
        api.clock.advance(seconds=301)

        assert await verify(api, "ada", code) == REFUSED

    async def test_a_member_whose_keys_were_reset_cannot_use_an_earlier_code(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            code, _ = await staff_code(api, client, "ada")
        async with api.services.unit_of_work() as session:
            user = await repository.user_by_login(session, "ada")
            assert user is not None
            for factor in await repository.factors_of(session, user.id):
                row = await session.get(MfaFactor, factor.id)
                assert row is not None
                row.revoked_ns = api.clock.now_ns()

        assert await verify(api, "ada", code) == REFUSED

    async def test_refusals_look_alike_and_guessing_backs_off(self, api: Api) -> None:
        async with api.client() as client:
            code, _ = await staff_code(api, client, "ada")

        outcomes = [
            await verify(api, "nobody", "x" * 43),
            await verify(api, "ada", "y" * 43),
            await verify(api, "ada", "z" * 43),
            await verify(api, "ada", "w" * 43),
        ]
        blocked = await verify(api, "ada", code)

        assert outcomes == [REFUSED] * 4
        assert isinstance(blocked, Denied)
        assert blocked.failure is Failure.THROTTLED
        failed = await audit_events(api, "identity:login:failed")
        assert [(e["data"]["via"], e["data"]["method"]) for e in failed] == [
            ("cli", "console_code")
        ] * 4
        async with api.services.unit_of_work() as session:
            console = await repository.throttle(session, CONSOLE_THROTTLE_KEY)
        assert console is not None
        assert console.failures == 4
