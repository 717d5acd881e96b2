"""Admin user management over HTTP: lock and unlock, role changes, forced sign-out and the
four-eyes factor reset; every action audited, shown to its target, never on oneself."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.access import set_level
from tests.support.api import PASSWORD, Api, bearer, is_problem, register_verified
from tests.support.backoffice import (
    BACKOFFICE,
    REASON,
    UNKNOWN_ID,
    access_log,
    customer,
    events_of,
    staff,
    token_works,
)
from tests.support.cases import Cases
from tests.support.trading import Trader
from tradeguard.access.domain import AccessLevel, Role
from tradeguard.backoffice.common import Actor
from tradeguard.backoffice.container import BackofficeServices
from tradeguard.core.errors import Forbidden
from tradeguard.identity.staff import Member

USERS = f"{BACKOFFICE}/users"
RESETS = f"{BACKOFFICE}/factor-resets"


def backoffice_of(api: Api) -> BackofficeServices:
    services: BackofficeServices = api.app.state.backoffice
    return services


async def password_login(client: httpx.AsyncClient, login: str = "alice") -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"login": login, "password": PASSWORD})


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/token/refresh", json={"refresh_token": token})


async def user_row(admin: Trader, username: str) -> dict[str, Any]:
    response = await admin.get(USERS, params={"q": username})
    assert response.status_code == 200, response.text
    [row] = response.json()["items"]
    return dict(row)


class TestLock:
    @pytest.mark.spec("RBAC-1", "IAC-4")
    async def test_a_locked_user_cannot_sign_in_and_their_sessions_end_at_once(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            ada = await staff(api, desk, "ada", Role.ADMIN)
            locked = await ada.post(f"{USERS}/{alice.user_id}/lock", {"reason": REASON})
            old_token = await token_works(client, alice.trader.access)
            sign_in = await password_login(client)
            again = await ada.post(f"{USERS}/{alice.user_id}/lock", {"reason": REASON})
            row = await user_row(ada, "alice")
        assert locked.status_code == 200, locked.text
        # Both of her sessions: the password-only one she enrolled TOTP in, and the full one.
        assert locked.json() == {"user_id": alice.user_id, "status": "locked", "sessions_ended": 2}
        assert not old_token
        # The same answer as a wrong password: the lock is not revealed to whoever signs in.
        assert sign_in.status_code == 401
        assert sign_in.json()["detail"] == "invalid username or password"
        assert is_problem(again, 409, "nothing-to-change")
        assert row["status"] == "locked"
        [identity_event] = await events_of(api, "identity:user:locked")
        assert identity_event["actor"] == {"kind": "staff", "id": ada.user_id}
        assert identity_event["data"]["reason"] == REASON
        assert len(await events_of(api, "backoffice:user:locked")) == 1
        [mail] = [m for m in await api.outbox(to=alice.email) if m["subject"].endswith("locked")]
        assert "cannot sign in" in mail["body"]

    @pytest.mark.spec("RBAC-1")
    async def test_unlock_lets_the_user_sign_in_again_and_clears_the_throttle_lock(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            ada = await staff(api, desk, "ada", Role.ADMIN)
            for _ in range(5):
                wrong = await client.post(
                    "/api/v1/auth/login", json={"login": "alice", "password": "wrong guess 1234"}
                )
                assert wrong.status_code == 401
                api.clock.advance(seconds=20)
            throttled = await password_login(client)
            assert (
                await ada.post(f"{USERS}/{alice.user_id}/lock", {"reason": REASON})
            ).status_code == 200
            unlocked = await ada.post(f"{USERS}/{alice.user_id}/unlock", {"reason": REASON})
            signed_in = await password_login(client)
            log = await access_log(await _signed_in_again(api, alice.trader))
        assert is_problem(throttled, 429, "too-many-requests")
        assert unlocked.status_code == 200, unlocked.text
        assert unlocked.json()["cleared"] == ["sign_in_throttle", "staff_lock"]
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["status"] == "mfa_required"
        assert [e["action"] for e in log["items"]] == ["account_unlocked", "account_locked"]
        assert {e["reason"] for e in log["items"]} == {REASON}
        assert {e["staff_role"] for e in log["items"]} == {"ADMIN"}


async def _signed_in_again(api: Api, trader: Trader) -> Trader:
    await trader.sign_in_again()
    return trader


class TestRoleAndSignOut:
    @pytest.mark.spec("RBAC-1", "IAC-3")
    async def test_a_customer_cannot_be_made_staff_their_own_keys_would_sign_in_as_staff(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            ada = await staff(api, desk, "ada", Role.ADMIN)
            to_staff = await ada.put(
                f"{USERS}/{alice.user_id}/role", {"role": "SUPPORT", "reason": REASON}
            )
            still_signed_in = await token_works(client, alice.trader.access)
        assert is_problem(to_staff, 409, "conflict")
        assert "invite-staff" in to_staff.json()["detail"]
        assert still_signed_in
        assert await events_of(api, "identity:user:role_changed") == []

    @pytest.mark.spec("RBAC-1", "IAC-1")
    async def test_a_role_change_ends_sessions_grants_and_requests_and_resets_the_level(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            ada = await staff(api, desk, "ada", Role.ADMIN)
            carol = await staff(api, client, "carol", Role.COMPLIANCE)
            await set_level(api, carol.user_id, AccessLevel.READ_ONLY)
            pending = await carol.post(
                "/api/v1/access/requests", {"permission": "customer:unmask", "reason": REASON}
            )
            old_token = carol.access
            to_admin = await ada.put(
                f"{USERS}/{carol.user_id}/role", {"role": "ADMIN", "reason": REASON}
            )
            old_token_works = await token_works(client, old_token)
            same = await ada.put(
                f"{USERS}/{carol.user_id}/role", {"role": "ADMIN", "reason": REASON}
            )
            back = await ada.put(
                f"{USERS}/{carol.user_id}/role", {"role": "TRADER", "reason": REASON}
            )
            requests = (await ada.get("/api/v1/access/requests")).json()
        member = await staff_member(api, carol.user_id)
        assert pending.status_code == 201, pending.text
        assert to_admin.status_code == 200, to_admin.text
        assert to_admin.json()["previous_role"] == "COMPLIANCE"
        assert to_admin.json()["sessions_ended"] >= 1
        assert not old_token_works
        assert is_problem(same, 409, "nothing-to-change")
        # Staff never become customers (the lock off-boards them): see TestStaffStaysStaff.
        assert is_problem(back, 409, "staff-stays-staff")
        # What was asked for under the old role is withdrawn; nothing stays open.
        mine = [r for r in requests if r["id"] == pending.json()["id"]]
        assert [r["status"] for r in mine] == ["withdrawn"]
        changes = await events_of(api, "identity:user:role_changed")
        assert [(e["data"]["from"], e["data"]["to"]) for e in changes] == [
            ("COMPLIANCE", "ADMIN"),
        ]
        assert member is not None
        assert member.level is AccessLevel.READ_ONLY  # the new role starts at read-only

    @pytest.mark.spec("RBAC-1", "IAC-4")
    async def test_forced_sign_out_revokes_every_token_at_once(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.21") as laptop:
            alice = await customer(api, client, phone=False)
            second_access = await alice.trader.sign_in()  # another full session
            # A user without a second factor yet: her session has a refresh token to try.
            await register_verified(api, laptop, "carol")
            carol = (await password_login(laptop, "carol")).json()
            carol_id = api.services.verifier.verify(carol["access_token"]).subject
            async with api.client("198.51.100.20") as desk:
                ada = await staff(api, desk, "ada", Role.ADMIN)
                signed_out = await ada.post(f"{USERS}/{alice.user_id}/sign-out", {"reason": REASON})
                carol_out = await ada.post(f"{USERS}/{carol_id}/sign-out", {"reason": REASON})
            # The very next request with any of the sessions' tokens is refused.
            first_token = await token_works(client, alice.trader.access)
            second_token = await token_works(client, second_access)
            carol_token = await token_works(laptop, carol["access_token"])
            carol_refresh = await refresh(laptop, carol["refresh_token"])
            await alice.trader.sign_in_again()
            log = await access_log(alice.trader)
        assert signed_out.status_code == 200, signed_out.text
        assert signed_out.json()["sessions_ended"] == 3
        assert not first_token
        assert not second_token
        assert carol_out.json()["sessions_ended"] == 1
        assert not carol_token
        assert carol_refresh.status_code == 401
        revoked = await events_of(api, "identity:session:revoked")
        assert {e["data"]["reason"] for e in revoked} == {"staff_sign_out"}
        assert {e["actor"]["id"] for e in revoked} == {ada.user_id}
        assert [e["action"] for e in log["items"]] == ["signed_out"]


class TestStaffStaysStaff:
    """Attack (H2): one admin demotes another staff member to TRADER; the account could then
    never be staff again and the email never be re-invited. Refused: lock to off-board."""

    @pytest.mark.spec("RBAC-1", "IAC-3")
    @pytest.mark.parametrize("victim_role", [Role.ADMIN, Role.COMPLIANCE, Role.SUPPORT])
    async def test_an_admin_cannot_turn_a_staff_member_into_a_customer(
        self, api: Api, victim_role: Role
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            ada = await staff(api, desk, "ada", Role.ADMIN)
            ben = await staff(api, client, "ben", victim_role)
            demoted = await ada.put(
                f"{USERS}/{ben.user_id}/role", {"role": "TRADER", "reason": REASON}
            )
            ben_still_works = await token_works(client, ben.access)
            row = await user_row(ada, "ben")
            lock = await ada.post(f"{USERS}/{ben.user_id}/lock", {"reason": REASON})
        assert is_problem(demoted, 409, "staff-stays-staff")
        assert "lock" in demoted.json()["detail"]
        assert ben_still_works
        assert row["role"] == victim_role.value
        assert await events_of(api, "identity:user:role_changed") == []
        assert await events_of(api, "backoffice:user:role_changed") == []
        # Off-boarding is the lock, which is still open to the admin.
        assert lock.status_code == 200, lock.text


class TestSelfAction:
    @pytest.mark.spec("RBAC-1", "IAC-1")
    async def test_an_admin_cannot_act_on_their_own_account(self, api: Api) -> None:
        async with api.client("198.51.100.20") as desk:
            ada = await staff(api, desk, "ada", Role.ADMIN)
            me = f"{USERS}/{ada.user_id}"
            attempts = [
                await ada.post(f"{me}/lock", {"reason": REASON}),
                await ada.post(f"{me}/unlock", {"reason": REASON}),
                await ada.put(f"{me}/role", {"role": "TRADER", "reason": REASON}),
                await ada.post(f"{me}/sign-out", {"reason": REASON}),
                await ada.post(f"{me}/factor-resets", {"reason": REASON}),
            ]
            still_admin = await ada.get(USERS)
        for response in attempts:
            assert is_problem(response, 403, "self-action-refused"), response.text
        assert still_admin.status_code == 200
        assert await events_of(api, "identity:user:locked") == []
        assert await events_of(api, "identity:user:role_changed") == []
        assert await events_of(api, "backoffice:factor_reset:requested") == []

    @pytest.mark.spec("RBAC-5")
    async def test_the_services_refuse_what_the_actor_may_not_do_whatever_the_route(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            sam = await staff(api, desk, "sam", Role.SUPPORT)
        services = backoffice_of(api)
        support = Actor.staff(
            user_id=sam.user_id,
            role=Role.SUPPORT,
            permissions=frozenset({"account:view", "customer:read", "customer:unmask"}),
        )
        admin = Actor.staff(
            user_id=UNKNOWN_ID, role=Role.ADMIN, permissions=frozenset({"admin:users"})
        )
        with pytest.raises(Forbidden):
            async with services.unit_of_work() as session:
                await services.users.lock(
                    session, user_id=alice.user_id, reason=REASON, actor=support
                )
        with pytest.raises(Forbidden):
            async with services.unit_of_work() as session:
                await services.customers.unmask(
                    session, customer_id=alice.user_id, field="email", reason=REASON, actor=admin
                )
        assert await events_of(api, "identity:user:locked") == []
        assert await events_of(api, "backoffice:customer:unmasked") == []


class TestFactorReset:
    @pytest.mark.spec("RBAC-1", "ACCT-1", "IAC-4")
    async def test_a_reset_needs_a_second_admin_and_then_the_user_starts_over(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client)
            ada = await staff(api, desk, "ada", Role.ADMIN)
            abe = await staff(api, desk, "abe", Role.ADMIN)
            requested = await ada.post(f"{USERS}/{alice.user_id}/factor-resets", {"reason": REASON})
            request_id = requested.json()["id"]
            duplicate = await abe.post(f"{USERS}/{alice.user_id}/factor-resets", {"reason": REASON})
            pending = await abe.get(RESETS)
            by_requester = await ada.post(f"{RESETS}/{request_id}/approve", {})
            factors_meanwhile = (await alice.trader.get("/api/v1/auth/mfa")).json()
            approved = await abe.post(
                f"{RESETS}/{request_id}/approve", {"note": "Identity checked by video call"}
            )
            twice = await abe.post(f"{RESETS}/{request_id}/approve", {})
            old_token = await token_works(client, alice.trader.access)
            fresh = await password_login(client)
        assert requested.status_code == 201, requested.text
        assert requested.json()["status"] == "pending"
        assert requested.json()["requested_by"] == f"staff:{ada.user_id}"
        assert is_problem(duplicate, 409, "reset-already-pending")
        assert [r["id"] for r in pending.json()] == [request_id]
        assert is_problem(by_requester, 403, "second-approver-required")
        assert len([f for f in factors_meanwhile if f["status"] == "active"]) == 2
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "approved"
        assert approved.json()["decided_by"] == f"staff:{abe.user_id}"
        assert is_problem(twice, 409, "reset-request-closed")
        assert not old_token
        # Only the password now: a session that can look and enrol, not trade (ACCT-1).
        assert fresh.status_code == 200
        assert fresh.json()["status"] != "mfa_required"
        claims = api.services.verifier.verify(fresh.json()["access_token"])
        assert list(claims.permissions) == ["account:view"]
        async with api.client() as client:
            factors = await client.get(
                "/api/v1/auth/mfa", headers=bearer(fresh.json()["access_token"])
            )
            log = (
                await client.get(
                    "/api/v1/me/access-log", headers=bearer(fresh.json()["access_token"])
                )
            ).json()
        assert factors.json() == []
        [reset] = await events_of(api, "identity:factors:reset")
        assert reset["actor"] == {"kind": "staff", "id": ada.user_id}
        assert reset["data"]["approved_by"] == {"kind": "staff", "id": abe.user_id}
        assert reset["data"]["factors"] == ["sms", "totp"]
        subjects = [m["subject"] for m in await api.outbox(to=alice.email)]
        assert "A reset of your tradeguard sign-in factors was requested" in subjects
        assert "Your tradeguard sign-in factors were reset" in subjects
        assert [e["action"] for e in log["items"]] == ["factors_reset", "factor_reset_requested"]
        assert "second admin" in log["items"][0]["description"]

    async def test_an_expired_request_cannot_be_approved(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            ada = await staff(api, desk, "ada", Role.ADMIN)
            abe = await staff(api, desk, "abe", Role.ADMIN)
            requested = await ada.post(f"{USERS}/{alice.user_id}/factor-resets", {"reason": REASON})
            api.clock.advance(seconds=24 * 3600 + 1)
            await abe.sign_in_again()
            listed = await abe.get(RESETS, params={"pending": "false"})
            late = await abe.post(f"{RESETS}/{requested.json()['id']}/approve", {})
            await alice.trader.sign_in_again()
            factors = (await alice.trader.get("/api/v1/auth/mfa")).json()
        assert is_problem(late, 409, "reset-request-closed")
        assert listed.json()[0]["status"] == "expired"
        assert [f["kind"] for f in factors if f["status"] == "active"] == ["totp"]
        assert await events_of(api, "identity:factors:reset") == []

    async def test_a_refused_request_changes_nothing_and_stays_closed(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            ada = await staff(api, desk, "ada", Role.ADMIN)
            abe = await staff(api, desk, "abe", Role.ADMIN)
            requested = await ada.post(f"{USERS}/{alice.user_id}/factor-resets", {"reason": REASON})
            request_id = requested.json()["id"]
            refused = await abe.post(
                f"{RESETS}/{request_id}/refuse", {"reason": "The caller failed the identity check"}
            )
            approve_after = await abe.post(f"{RESETS}/{request_id}/approve", {})
            still = await token_works(client, alice.trader.access)
            unknown = await abe.post(f"{RESETS}/{UNKNOWN_ID}/approve", {})
        assert refused.status_code == 200
        assert refused.json()["status"] == "refused"
        assert is_problem(approve_after, 409, "reset-request-closed")
        assert is_problem(unknown, 404, "not-found")
        assert still
        # The user was warned a reset was asked for; they are told it will not happen (L3a).
        subjects = [m["subject"] for m in await api.outbox(to=alice.email)]
        assert "The reset of your tradeguard sign-in factors was refused" in subjects
        assert "Your tradeguard sign-in factors were reset" not in subjects


BAD_ADMIN_INPUTS: dict[str, tuple[str, dict[str, Any]]] = {
    "lock-no-reason": ("lock", {}),
    "lock-empty-reason": ("lock", {"reason": ""}),
    "lock-short-reason": ("lock", {"reason": "too short"}),
    "lock-oversized-reason": ("lock", {"reason": "y" * 501}),
    "lock-extra-member": ("lock", {"reason": REASON, "force": True}),
    "role-unknown": ("role", {"role": "ROOT", "reason": REASON}),
    "role-no-reason": ("role", {"role": "ADMIN"}),
    "sign-out-control-characters": (
        "sign-out",
        {"reason": "\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u000b"},
    ),
    "reset-markup-reason": ("factor-resets", {"reason": "<p></p>"}),
}


class TestAdminInputs:
    async def test_bad_input_is_a_problem_and_changes_nothing(self, api: Api) -> None:
        cases = Cases()
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            ada = await staff(api, desk, "ada", Role.ADMIN)
            for case_id, (path, body) in BAD_ADMIN_INPUTS.items():
                url = f"{USERS}/{alice.user_id}/{path}"
                response = await (ada.put(url, body) if path == "role" else ada.post(url, body))
                row = await user_row(ada, "alice")
                still = await token_works(client, alice.trader.access)
                revoked = await events_of(api, "identity:session:revoked")
                resets = await events_of(api, "backoffice:factor_reset:requested")
                with cases.case(case_id):
                    assert is_problem(response, 422, "invalid-input"), response.text
                    assert row["status"] == "active"
                    assert row["role"] == "TRADER"
                    assert still
                    assert revoked == []
                    assert resets == []
        cases.check()

    async def test_bad_and_unknown_ids_change_nothing(self, api: Api) -> None:
        async with api.client("198.51.100.20") as desk:
            ada = await staff(api, desk, "ada", Role.ADMIN)
            malformed = await ada.post(f"{USERS}/1;DROP TABLE users/lock", {"reason": REASON})
            short = await ada.post(f"{USERS}/1234/lock", {"reason": REASON})
            unknown = await ada.post(f"{USERS}/{UNKNOWN_ID}/lock", {"reason": REASON})
            bad_cursor = await ada.get(USERS, params={"cursor": "'; --"})
            bad_status = await ada.get(USERS, params={"status": "deleted"})
        assert malformed.status_code in {404, 422}
        assert is_problem(short, 422, "invalid-input")
        assert is_problem(unknown, 404, "not-found")
        assert is_problem(bad_cursor, 422, "invalid-input")
        assert is_problem(bad_status, 422, "invalid-input")
        assert await events_of(api, "identity:user:locked") == []

    @pytest.mark.spec("RBAC-1", "RBAC-6")
    async def test_support_and_compliance_cannot_manage_users_and_the_denials_are_audited(
        self, api: Api
    ) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            alice = await customer(api, client, phone=False)
            sam = await staff(api, desk, "sam", Role.SUPPORT)
            cleo = await staff(api, desk, "cleo", Role.COMPLIANCE)
            responses = [
                await who.post(f"{USERS}/{alice.user_id}/lock", {"reason": REASON})
                for who in (sam, cleo)
            ] + [await who.get(USERS) for who in (sam, cleo)]
            still = await token_works(client, alice.trader.access)
        assert [r.status_code for r in responses] == [403] * 4
        assert still
        denied = [
            e
            for e in await events_of(api, "access:permission:checked")
            if e["data"]["permission"] == "admin:users"
        ]
        assert [e["data"]["allowed"] for e in denied] == [False] * 4


class TestListing:
    async def test_admins_list_and_search_users_with_emails_masked(self, api: Api) -> None:
        async with api.client() as client, api.client("198.51.100.20") as desk:
            await customer(api, client, phone=False)
            ada = await staff(api, desk, "ada", Role.ADMIN)
            await staff(api, desk, "abe", Role.ADMIN)
            first = await ada.get(USERS, params={"limit": 2})
            rest = await ada.get(USERS, params={"limit": 2, "cursor": first.json()["next_cursor"]})
            admins = await ada.get(USERS, params={"role": "ADMIN"})
            by_email = await ada.get(USERS, params={"q": "abe@example.com"})
        assert [u["username"] for u in first.json()["items"]] == ["abe", "ada"]
        assert [u["username"] for u in rest.json()["items"]] == ["alice"]
        assert rest.json()["next_cursor"] is None
        assert [u["username"] for u in admins.json()["items"]] == ["abe", "ada"]
        assert [u["email"]["masked"] for u in by_email.json()["items"]] == ["a***@e***.com"]
        assert "@example.com" not in json.dumps([first.json(), rest.json()])
        assert len(await events_of(api, "backoffice:user:listed")) == 4


async def staff_member(api: Api, user_id: str) -> Member | None:
    from tradeguard.identity import staff as staff_directory  # noqa: PLC0415 - a test peeks

    async with api.services.unit_of_work() as session:
        return await staff_directory.member(session, user_id)
