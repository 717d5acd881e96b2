"""Just-in-time grants over the real API (IAC-1): request, approve, expire, revoke, refuse;
who may approve; bad input changes nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.access import (
    ACCESS,
    OPERATOR,
    access_of,
    ask,
    decide,
    mails,
    set_level,
    snapshot,
    staff,
)
from tests.support.api import PASSWORD, Api, audit_events, bearer, is_problem, login, running_api
from tests.support.trading import signed_in_trader
from tradeguard.access.common import Actor
from tradeguard.access.domain import AccessEvent, AccessLevel, Role
from tradeguard.access.tasks import record_expiries
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.errors import Forbidden

RESTRICTED = "/api/v1/admin/restricted-list"  # needs admin:config (a configure permission)


async def grant_events(api: Api, grant_id: str) -> list[str]:
    return [
        e["type"]
        for e in await audit_events(api)
        if e["type"].startswith("access:grant:") and e["data"].get("grant_id") == grant_id
    ]


class TestGrantLifecycle:
    @pytest.mark.spec("IAC-1")
    async def test_an_approved_grant_works_at_once_and_ends_by_itself_mid_session(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.OPERATOR)
            bob = await staff(api, client, "bob")
            assert (await ada.get(RESTRICTED)).status_code == 403
            asked = await ask(ada, "admin:config", minutes=5)
            assert asked["status"] == "pending"
            approved = await decide(bob, asked["id"], "approve", note="on call")
            assert approved.status_code == 200, approved.text
            assert approved.json()["status"] == "approved"
            # The same access token, no sign-in: the grant is live at once.
            assert (await ada.get(RESTRICTED)).status_code == 200
            checks = await audit_events(api, "access:permission:checked")
            assert checks[-1]["data"]["grant_id"] == asked["id"]
            api.clock.advance(seconds=4 * 60)
            assert (await ada.get(RESTRICTED)).status_code == 200
            api.clock.advance(seconds=61)
            # Five minutes on: the token is still valid (15 minutes), the grant is not.
            assert (await ada.get(RESTRICTED)).status_code == 403
            assert (await ada.get("/api/v1/me")).status_code == 200
            assert await record_expiries(access_of(api)) == 1
            mine = await ada.get(f"{ACCESS}/requests/mine")
        assert [g["status"] for g in mine.json()] == ["expired"]
        assert await grant_events(api, asked["id"]) == [
            AccessEvent.GRANT_REQUESTED,
            AccessEvent.GRANT_APPROVED,
            AccessEvent.GRANT_EXPIRED,
        ]
        for template in (
            "access_request_received",
            "access_request_approved",
            "access_grant_expired",
        ):
            assert len(await mails(api, ada, template)) == 1, template
        assert len(await mails(api, bob, "access_request_pending")) == 1

    @pytest.mark.spec("IAC-1")
    async def test_a_level_grant_adds_the_levels_permissions_of_the_role(self, api: Api) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.READ_ONLY)
            bob = await staff(api, client, "bob")
            asked = await ask(ada, "engineer", minutes=10)
            assert (await decide(bob, asked["id"], "approve")).status_code == 200
            assert (await ada.get(RESTRICTED)).status_code == 200
            # engineer holds no administer permission: access:approve stays out of reach.
            assert (await ada.get(f"{ACCESS}/requests/pending")).status_code == 403

    @pytest.mark.spec("IAC-1")
    async def test_a_revoked_grant_is_refused_on_the_next_request_of_the_same_token(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.OPERATOR)
            bob = await staff(api, client, "bob")
            asked = await ask(ada, "admin:config", minutes=60)
            await decide(bob, asked["id"], "approve")
            assert (await ada.get(RESTRICTED)).status_code == 200
            revoked = await decide(bob, asked["id"], "revoke", reason="incident closed")
            assert revoked.status_code == 200, revoked.text
            assert revoked.json()["status"] == "revoked"
            assert (await ada.get(RESTRICTED)).status_code == 403
            assert len(await mails(api, ada, "access_grant_revoked")) == 1
            assert await grant_events(api, asked["id"]) == [
                AccessEvent.GRANT_REQUESTED,
                AccessEvent.GRANT_APPROVED,
                AccessEvent.GRANT_REVOKED,
            ]

            # Revoked elsewhere (another server, the CLI): seen within the cache's second.
            again = await ask(ada, "admin:config", minutes=60)
            await decide(bob, again["id"], "approve")
            assert (await ada.get(RESTRICTED)).status_code == 200
            services = access_of(api)
            await services.run(
                lambda session: services.grants.revoke(
                    session, actor=OPERATOR, grant_id=again["id"], reason="from the CLI"
                )
            )
            api.clock.advance(seconds=1.01)
            assert (await ada.get(RESTRICTED)).status_code == 403

    @pytest.mark.spec("IAC-1")
    async def test_the_requester_can_withdraw_a_request_or_give_up_a_grant(self, api: Api) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.OPERATOR)
            bob = await staff(api, client, "bob")
            pending = await ask(ada, "admin:config")
            withdrawn = await ada.post(f"{ACCESS}/requests/{pending['id']}/withdraw")
            assert withdrawn.json()["status"] == "withdrawn"
            live = await ask(ada, "admin:config")
            await decide(bob, live["id"], "approve")
            assert (await ada.get(RESTRICTED)).status_code == 200
            given_up = await ada.post(f"{ACCESS}/requests/{live['id']}/withdraw")
            assert given_up.json()["status"] == "revoked"
            assert (await ada.get(RESTRICTED)).status_code == 403
            refused = await ask(ada, "admin:config")
            said_no = await decide(bob, refused["id"], "refuse", reason="not during close")
            assert said_no.json()["status"] == "refused"
            assert said_no.json()["decision_note"] == "not during close"
        assert len(await mails(api, ada, "access_request_refused")) == 1


class TestFactors:
    @pytest.mark.spec("IAC-1")
    async def test_a_staff_session_without_its_webauthn_factor_gets_nothing_from_a_grant(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            bob = await staff(api, client, "bob")
            async with api.services.unit_of_work() as session:
                eve = await api.services.accounts.create_user(
                    session,
                    username="eve",
                    email="eve@example.com",
                    password=PASSWORD,
                    role=Role.ADMIN,
                    email_verified=True,
                )
            password_only = (await login(client, "eve"))["access_token"]
            await set_level(api, eve.id, AccessLevel.OPERATOR)
            services = access_of(api)
            asked = await services.run(
                lambda session: services.grants.request(
                    session,
                    actor=Actor(eve.id),
                    permission="admin:config",
                    level=None,
                    reason="from the console",
                    minutes=30,
                )
            )
            assert (await decide(bob, asked.grant.id, "approve")).status_code == 200
            refused = await client.get(RESTRICTED, headers=bearer(password_only))
        assert is_problem(refused, 403, "forbidden")


class TestWhoMayApprove:
    @pytest.mark.spec("IAC-1", "RBAC-5")
    async def test_self_approval_and_approval_by_a_grant_the_requester_gave_are_refused(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol = await staff(api, client, "carol")
            bob = await staff(api, client, "bob", level=AccessLevel.ENGINEER)
            ada = await staff(api, client, "ada", level=AccessLevel.ENGINEER)
            # bob's access:approve comes from carol; ada's from bob.
            for asker, approver in ((bob, carol), (ada, bob)):
                lent = await ask(asker, "access:approve", minutes=60)
                assert (await decide(approver, lent["id"], "approve")).status_code == 200

            own = await ask(ada, "admin:users")
            before = await snapshot(api)
            refused = await decide(ada, own["id"], "approve")
            assert is_problem(refused, 403, "forbidden")
            assert "your own" in refused.json()["detail"]
            assert (await snapshot(api))[0] == before[0]

            # ada's authority to approve is a grant bob approved: she cannot approve bob.
            loop = await ask(bob, "admin:users")
            before = await snapshot(api)
            dependent = await decide(ada, loop["id"], "approve")
            assert is_problem(dependent, 403, "forbidden")
            assert (await snapshot(api))[0] == before[0]
            assert (await decide(carol, loop["id"], "approve")).status_code == 200
            mine = {g["id"]: g["status"] for g in (await ada.get(f"{ACCESS}/requests/mine")).json()}
        assert mine[own["id"]] == "pending"
        denied = await audit_events(api, AccessEvent.APPROVAL_DENIED)
        assert [(e["data"]["grant_id"], e["data"]["why"]) for e in denied] == [
            (own["id"], "self_approval"),
            (loop["id"], "dependent_authority"),
        ]

    @pytest.mark.spec("IAC-1", "RBAC-5")
    async def test_approval_authority_lent_through_a_third_admin_is_refused(self, api: Api) -> None:
        """Attack (L1): ada approves ben's `admin` level grant (it includes access:approve);
        ben approves gina's access:approve; gina then approves ada's own request. gina's
        authority comes from ada, two steps away."""
        async with api.client() as client:
            ada = await staff(api, client, "ada")  # standing admin level: may approve
            ben = await staff(api, client, "ben", level=AccessLevel.ENGINEER)
            gina = await staff(api, client, "gina", level=AccessLevel.ENGINEER)
            dee = await staff(api, client, "dee", level=AccessLevel.READ_ONLY)
            carol = await staff(api, client, "carol")  # standing, independent of everyone
            bens = await ask(ben, "admin", minutes=60)
            assert (await decide(ada, bens["id"], "approve")).status_code == 200
            ginas = await ask(gina, "access:approve", minutes=60)
            assert (await decide(ben, ginas["id"], "approve")).status_code == 200
            await set_level(api, ada.user_id, AccessLevel.READ_ONLY)
            adas = await ask(ada, "admin:users")
            before = await snapshot(api)
            lent = await decide(gina, adas["id"], "approve")
            after = await snapshot(api)
            # ben's authority comes straight from ada: refused as before.
            direct = await decide(ben, adas["id"], "approve")
            # gina's authority is not from dee: she may decide dee's request.
            dees = await ask(dee, "admin:users")
            unrelated = await decide(gina, dees["id"], "approve")
            # Someone whose authority does not come from ada approves her request.
            independent = await decide(carol, adas["id"], "approve")
        assert is_problem(lent, 403, "forbidden"), lent.text
        assert "through other admins" in lent.json()["detail"]
        assert after[0] == before[0]
        assert is_problem(direct, 403, "forbidden")
        assert unrelated.status_code == 200, unrelated.text
        assert independent.status_code == 200, independent.text
        denied = await audit_events(api, AccessEvent.APPROVAL_DENIED)
        assert [(e["data"]["grant_id"], e["data"]["why"]) for e in denied] == [
            (adas["id"], "dependent_authority"),
            (adas["id"], "dependent_authority"),
        ]
        approved = await audit_events(api, AccessEvent.GRANT_APPROVED)
        by_grant = {e["data"]["grant_id"]: e["data"]["authority"] for e in approved}
        assert by_grant[dees["id"]] == ginas["id"]
        assert by_grant[adas["id"]] == "standing"

    @pytest.mark.spec("IAC-1", "IAC-2")
    async def test_a_level_raise_by_authority_lent_through_a_third_admin_is_refused(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada")
            ben = await staff(api, client, "ben", level=AccessLevel.ENGINEER)
            gina = await staff(api, client, "gina", level=AccessLevel.ENGINEER)
            bens = await ask(ben, "admin", minutes=60)
            assert (await decide(ada, bens["id"], "approve")).status_code == 200
            ginas = await ask(gina, "admin", minutes=60)
            assert (await decide(ben, ginas["id"], "approve")).status_code == 200
            await set_level(api, ada.user_id, AccessLevel.READ_ONLY)
            raised = await gina.put(
                f"{ACCESS}/staff/{ada.user_id}/level", {"level": "admin", "reason": "rota"}
            )
        assert is_problem(raised, 403, "forbidden"), raised.text
        assert "someone else approved" in raised.json()["detail"]
        changed = await audit_events(api, AccessEvent.LEVEL_CHANGED)
        assert ("read-only", "admin") not in [(e["data"]["from"], e["data"]["to"]) for e in changed]

    @pytest.mark.spec("RBAC-5")
    async def test_traders_and_support_cannot_approve(self, api: Api) -> None:
        async with api.client() as client:
            tina = await signed_in_trader(api, client, "tina")
            sam = await staff(api, client, "sam", role=Role.SUPPORT)
            ada = await staff(api, client, "ada", level=AccessLevel.OPERATOR)
            asked = await ask(ada, "admin:config")
            before = await snapshot(api)
            for outsider in (tina, sam):
                response = await decide(outsider, asked["id"], "approve")
                assert is_problem(response, 403, "forbidden"), response.text
            # The service checks again whatever the route decided (defence in depth).
            services = access_of(api)
            with pytest.raises(Forbidden):
                await services.run(
                    lambda session: services.grants.approve(
                        session, actor=Actor(sam.user_id), grant_id=asked["id"]
                    )
                )
            with pytest.raises(Forbidden):
                await services.run(
                    lambda session: services.grants.approve(
                        session, actor=Actor(tina.user_id), grant_id=asked["id"]
                    )
                )
            assert (
                await tina.post(f"{ACCESS}/requests", {"level": "admin", "reason": "x y z"})
            ).status_code == 403
        after = await snapshot(api)
        assert after[0] == before[0]


class TestBadInput:
    @pytest.mark.spec("IAC-1")
    async def test_bad_requests_and_decisions_are_problems_that_change_nothing(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.OPERATOR)
            bob = await staff(api, client, "bob")
            carol = await staff(api, client, "carol", level=AccessLevel.OPERATOR)
            carols = await ask(carol, "admin:config")
            bad_requests = [
                ({"permission": "admin:everything", "reason": "why not"}, 422),
                ({"level": "superuser", "reason": "why not"}, 422),
                ({"permission": "admin:config", "level": "admin", "reason": "both"}, 422),
                ({"reason": "neither"}, 422),
                ({"permission": "admin:config", "reason": "zero", "minutes": 0}, 422),
                ({"permission": "admin:config", "reason": "negative", "minutes": -5}, 422),
                ({"permission": "admin:config", "reason": "over the cap", "minutes": 121}, 422),
                ({"permission": "admin:config", "reason": "a string", "minutes": "10"}, 422),
                ({"permission": "admin:config", "reason": ""}, 422),
                ({"permission": "admin:config", "reason": "   "}, 422),
                ({"permission": "admin:config", "reason": "x\u202ey"}, 422),
                ({"permission": "admin:config", "reason": "extra", "admin": True}, 422),
                ({"permission": "access:request", "reason": "held at every level"}, 422),
                ({"permission": "compliance:audit", "reason": "outside the role"}, 403),
                ({"permission": "account:view", "reason": "already held"}, 409),
            ]
            for body, status in bad_requests:
                before = await snapshot(api)
                response = await ada.post(f"{ACCESS}/requests", body)
                assert response.status_code == status, (body, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                assert await snapshot(api) == before, body

            mine = await ask(ada, "admin:config")
            before = await snapshot(api)
            duplicate = await ada.post(
                f"{ACCESS}/requests", {"permission": "admin:config", "reason": "again"}
            )
            assert is_problem(duplicate, 409, "conflict")
            refused = await decide(bob, mine["id"], "refuse", reason="no")
            assert is_problem(refused, 422, "invalid-input")  # a reason of 3 characters or more
            assert await snapshot(api) == before
            assert (await decide(bob, mine["id"], "refuse", reason="not today")).status_code == 200

            before = await snapshot(api)
            attempts = [
                await decide(bob, mine["id"], "approve"),  # a refused request
                await decide(bob, "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b", "approve"),
                await decide(bob, "not-an-id", "approve"),
                await ada.post(f"{ACCESS}/requests/{carols['id']}/withdraw"),  # carol's
                await decide(bob, carols["id"], "revoke", reason="not live yet"),
            ]
            assert [r.status_code for r in attempts] == [409, 404, 422, 404, 409]
            for response in attempts:
                assert response.headers["content-type"].startswith("application/problem+json")
            assert await snapshot(api) == before
            assert (await ada.get(RESTRICTED)).status_code == 403

    @pytest.mark.spec("IAC-1")
    async def test_an_undecided_request_expires_and_can_no_longer_be_approved(
        self, settings: Settings, engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        short = settings.model_copy(update={"access_request_ttl_minutes": 5})
        async with running_api(short, engine, clock) as api, api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.OPERATOR)
            bob = await staff(api, client, "bob")
            asked = await ask(ada, "admin:config")
            api.clock.advance(seconds=5 * 60 + 1)
            before = await snapshot(api)
            late = await decide(bob, asked["id"], "approve")
            assert is_problem(late, 409, "conflict")
            assert "expired" in late.json()["detail"]
            assert await snapshot(api) == before
            assert await record_expiries(access_of(api)) == 1
            assert len(await mails(api, ada, "access_grant_expired")) == 1


class TestCaps:
    @pytest.mark.spec("IAC-1")
    async def test_durations_are_capped_by_the_catalogue_and_the_setting(
        self, settings: Settings, engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        tight = settings.model_copy(update={"access_grant_max_minutes": 30})
        async with running_api(tight, engine, clock) as api, api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.READ_ONLY)
            over = await ada.post(
                f"{ACCESS}/requests",
                {"permission": "admin:config", "reason": "the setting", "minutes": 31},
            )
            assert is_problem(over, 422, "invalid-input")
            assert "30 minutes" in over.json()["detail"]
            capped = await ask(ada, "admin:config", minutes=None)
            assert capped["minutes"] == 30
            # The catalogue's cap for the admin level (60) is below the setting's default.
        async with running_api(settings, engine, clock) as api, api.client() as client:
            bob = await staff(api, client, "bob", level=AccessLevel.READ_ONLY)
            admin_level = await bob.post(
                f"{ACCESS}/requests", {"level": "admin", "reason": "the catalogue", "minutes": 61}
            )
            assert is_problem(admin_level, 422, "invalid-input")
            assert (await ask(bob, "admin", minutes=None))["minutes"] == 60


class TestLevels:
    @pytest.mark.spec("IAC-2")
    async def test_a_lowered_level_takes_effect_on_the_next_request(self, api: Api) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada")
            bob = await staff(api, client, "bob")
            assert (await ada.get(RESTRICTED)).status_code == 200
            lowered = await bob.put(
                f"{ACCESS}/staff/{ada.user_id}/level",
                {"level": "read-only", "reason": "quarterly review"},
            )
            assert lowered.status_code == 200, lowered.text
            assert lowered.json() == {
                "user_id": ada.user_id,
                "username": "ada",
                "previous": "admin",
                "level": "read-only",
            }
            assert (await ada.get(RESTRICTED)).status_code == 403
            assert (await ada.get(f"{ACCESS}/review")).status_code == 200  # a view permission
            own = await bob.put(
                f"{ACCESS}/staff/{bob.user_id}/level", {"level": "operator", "reason": "mine"}
            )
            assert is_problem(own, 403, "forbidden")
            same = await bob.put(
                f"{ACCESS}/staff/{ada.user_id}/level", {"level": "read-only", "reason": "again"}
            )
            assert is_problem(same, 409, "conflict")
        changed = await audit_events(api, AccessEvent.LEVEL_CHANGED)
        assert [(e["data"]["from"], e["data"]["to"]) for e in changed][-1] == ("admin", "read-only")

    @pytest.mark.spec("IAC-1", "IAC-2")
    async def test_a_raise_needs_independent_approval_authority_never_break_glass_or_lending(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            ada = await staff(api, client, "ada", level=AccessLevel.READ_ONLY)
            bob = await staff(api, client, "bob", level=AccessLevel.READ_ONLY)
            cyd = await staff(api, client, "cyd")  # standing admin level
            # bob takes admin:users by break-glass and tries to make ada a permanent admin.
            glass = await bob.post(
                f"{ACCESS}/break-glass",
                {"permission": "admin:users", "reason": "exchange outage", "minutes": 5},
            )
            raised_by_glass = await bob.put(
                f"{ACCESS}/staff/{ada.user_id}/level", {"level": "admin", "reason": "outage"}
            )
            # Lowering needs no second person: taking access away is always allowed.
            lowered = await bob.put(
                f"{ACCESS}/staff/{cyd.user_id}/level", {"level": "operator", "reason": "outage"}
            )
            # A standing admin (with standing access:approve elsewhere) may raise.
            dee = await staff(api, client, "dee")
            raised = await dee.put(
                f"{ACCESS}/staff/{ada.user_id}/level", {"level": "operator", "reason": "rota"}
            )
        assert glass.status_code == 201, glass.text
        assert is_problem(raised_by_glass, 403, "forbidden")
        assert "break-glass" in raised_by_glass.json()["detail"]
        assert lowered.status_code == 200, lowered.text
        assert raised.status_code == 200, raised.text
        changed = await audit_events(api, AccessEvent.LEVEL_CHANGED)
        assert ("read-only", "admin") not in [(e["data"]["from"], e["data"]["to"]) for e in changed]
