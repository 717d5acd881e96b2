"""Break-glass over the real API: short emergency access, alerts to every other admin and to
compliance (dev mailbox), and a review item only someone else can close. SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from tests.support.access import ACCESS, ask, decide, mails, snapshot, staff
from tests.support.api import Api, audit_events, is_problem
from tradeguard.access.domain import AccessEvent, AccessLevel, Role
from tradeguard.notify.senders import MAILBOX_DIRNAME, read_dev_mailbox, read_text_body
from tradeguard.notify.tasks import OutboxDispatcher
from tradeguard.web.app import notify_senders

RESTRICTED = "/api/v1/admin/restricted-list"
ALERT = "access_breakglass_alert"


async def break_glass(member: object, what: str, **extra: object) -> object:
    body: dict[str, object] = {"reason": "exchange outage: halt stuck", **extra}
    body["permission" if ":" in what else "level"] = what
    return await member.post(f"{ACCESS}/break-glass", body)  # type: ignore[attr-defined]


class TestBreakGlass:
    @pytest.mark.spec("IAC-1", "IAC-4")
    async def test_alerts_reach_every_other_admin_and_compliance_but_not_the_taker(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.READ_ONLY)
            bob = await staff(api, client, "bob")
            await staff(api, client, "carol", level=AccessLevel.OPERATOR)
            await staff(api, client, "cora", role=Role.COMPLIANCE)
            sam = await staff(api, client, "sam", role=Role.SUPPORT)
            assert (await ada.get(RESTRICTED)).status_code == 403
            taken = await break_glass(ada, "admin")
            assert taken.status_code == 201, taken.text
            body = taken.json()
            assert body["grant"]["kind"] == "breakglass"
            assert body["grant"]["status"] == "approved"
            assert body["grant"]["minutes"] == 60
            # At once, in the same token.
            assert (await ada.get(RESTRICTED)).status_code == 200
            open_items = await bob.get(f"{ACCESS}/break-glass/reviews")
        # Delivered by the real dispatcher to the development mailbox (`tradeguard dev mailbox`).
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
        mailbox = read_dev_mailbox(settings.data_dir / MAILBOX_DIRNAME)
        alerted = [m for m in mailbox if m.subject == "Break-glass access was taken"]
        assert sorted(m.to for m in alerted) == [
            "bob@example.com",
            "carol@example.com",
            "cora@example.com",
        ]
        text = read_text_body(alerted[0].path)
        assert "ada" in text
        assert "exchange outage" in text
        assert body["review_id"] in text
        for unalerted in (ada, sam):
            assert await mails(api, unalerted, ALERT) == []
        assert [item["id"] for item in open_items.json()] == [body["review_id"]]
        assert open_items.json()[0]["open"] is True
        taken_events = await audit_events(api, AccessEvent.BREAKGLASS_TAKEN)
        assert taken_events[-1]["data"]["review_id"] == body["review_id"]
        assert taken_events[-1]["actor"] == {"kind": "staff", "id": ada.user_id}

    @pytest.mark.spec("IAC-4")
    async def test_the_review_item_stays_open_until_someone_else_closes_it_with_a_note(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.OPERATOR)
            cora = await staff(api, client, "cora", role=Role.COMPLIANCE)
            review_id = (await break_glass(ada, "admin:config", minutes=15)).json()["review_id"]
            before = await snapshot(api)
            own = await ada.post(
                f"{ACCESS}/break-glass/reviews/{review_id}/close", {"note": "all fine, really"}
            )
            assert is_problem(own, 403, "forbidden")
            empty = await cora.post(
                f"{ACCESS}/break-glass/reviews/{review_id}/close", {"note": " "}
            )
            assert is_problem(empty, 422, "invalid-input")
            unknown = await cora.post(
                f"{ACCESS}/break-glass/reviews/0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b/close",
                {"note": "checked"},
            )
            assert is_problem(unknown, 404, "not-found")
            assert await snapshot(api) == before
            closed = await cora.post(
                f"{ACCESS}/break-glass/reviews/{review_id}/close",
                {"note": "checked the halt log; justified"},
            )
            assert closed.status_code == 200, closed.text
            assert closed.json()["open"] is False
            assert closed.json()["closed_by"] == cora.user_id
            again = await cora.post(
                f"{ACCESS}/break-glass/reviews/{review_id}/close", {"note": "twice"}
            )
            assert is_problem(again, 409, "conflict")
            still_open = await cora.get(f"{ACCESS}/break-glass/reviews")
            every = await cora.get(f"{ACCESS}/break-glass/reviews", params={"state": "all"})
        assert still_open.json() == []
        assert [item["note"] for item in every.json()] == ["checked the halt log; justified"]
        assert len(await mails(api, ada, "access_breakglass_reviewed")) == 1
        reviewed = await audit_events(api, AccessEvent.BREAKGLASS_REVIEWED)
        assert reviewed[-1]["actor"]["id"] == cora.user_id

    @pytest.mark.spec("IAC-1")
    async def test_break_glass_is_short_admin_only_and_never_lends_approval(self, api: Api) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.ENGINEER)
            bob = await staff(api, client, "bob", level=AccessLevel.OPERATOR)
            sam = await staff(api, client, "sam", role=Role.SUPPORT, level=AccessLevel.READ_ONLY)
            before = await snapshot(api)
            too_long = await break_glass(ada, "admin:users", minutes=61)
            assert is_problem(too_long, 422, "invalid-input")
            no_reason = await ada.post(
                f"{ACCESS}/break-glass", {"permission": "admin:users", "reason": ""}
            )
            assert is_problem(no_reason, 422, "invalid-input")
            held = await break_glass(ada, "admin:config")
            assert is_problem(held, 409, "conflict")
            support = await break_glass(sam, "customer:unmask")
            assert is_problem(support, 403, "forbidden")
            assert await snapshot(api) == before
            assert (await break_glass(ada, "access:approve", minutes=10)).status_code == 201
            asked = await ask(bob, "admin:config")
            # Authority taken by break-glass cannot approve anyone: it had no second person.
            lent = await decide(ada, asked["id"], "approve")
            assert is_problem(lent, 403, "forbidden")
            assert "break-glass" in lent.json()["detail"]
            # Any holder of access:approve may revoke, though: taking access away is safe.
            grant_id = (await ada.get(f"{ACCESS}/requests/mine")).json()[0]["id"]
            ended = await decide(ada, grant_id, "revoke", reason="done with it")
            assert ended.status_code == 200
            assert (await ada.get(f"{ACCESS}/requests/pending")).status_code == 403
