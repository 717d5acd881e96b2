"""Identity emails leave through the outbox and reach a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import re
from email.policy import default

import pytest
from sqlalchemy import func, select

from tests.integration.notify.support import CollectingHandler, running_smtp_server, smtp_sender
from tests.support.api import PASSWORD, Api
from tradeguard.identity.models import AuthTicket
from tradeguard.identity.tasks import purge_expired_tickets
from tradeguard.notify.senders import FileSmsProvider
from tradeguard.notify.tasks import OutboxDispatcher


class TestVerificationEmailOverSmtp:
    @pytest.mark.spec("AUTH-5")
    async def test_registration_email_is_delivered_and_its_link_verifies_the_address(
        self, api: Api
    ) -> None:
        handler = CollectingHandler()
        with running_smtp_server(handler) as port:
            async with api.client() as client:
                registered = await client.post(
                    "/api/v1/auth/register",
                    json={"username": "erin", "email": "erin@example.com", "password": PASSWORD},
                )
                dispatcher = OutboxDispatcher(
                    engine=api.engine,
                    keyring=api.services.deps.keyring,
                    email_sender=smtp_sender(port),
                    sms_provider=FileSmsProvider(api.app.state.runtime.settings.data_dir / "sms"),
                    clock=api.clock,
                )
                sent = await dispatcher.dispatch_once()
                message = email.message_from_bytes(handler.received[0].content, policy=default)
                body = message.get_body(preferencelist=("plain",))
                assert body is not None
                token = re.search(r"token=([A-Za-z0-9_-]+)", body.get_content())
                assert token is not None
                verified = await client.post(
                    "/api/v1/auth/email/verify", json={"token": token.group(1)}
                )
        assert registered.status_code == 201
        assert sent == 1
        assert handler.received[0].rcpt_tos == ["erin@example.com"]
        assert message["Subject"] == "Confirm your email address for tradeguard"
        assert verified.status_code == 200


class TestHousekeeping:
    async def test_expired_tickets_are_purged_after_an_hour(self, api: Api) -> None:
        async with api.client() as client:
            for _ in range(3):
                await client.post("/api/v1/auth/webauthn/authenticate/options", json={})
        api.clock.advance(seconds=30 * 60)
        kept = await purge_expired_tickets(api.services.sessions, api.clock)
        api.clock.advance(seconds=40 * 60)
        purged = await purge_expired_tickets(api.services.sessions, api.clock)
        async with api.services.unit_of_work() as session:
            left = (
                await session.execute(select(func.count()).select_from(AuthTicket))
            ).scalar_one()
        assert kept == 0
        assert purged == 3
        assert left == 0
