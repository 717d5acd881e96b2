"""Account recovery after a takeover (ATO-3) through the staff API against the real app and
database (SQLite and PostgreSQL): the owner's "no" to "was this you?" after an intruder
signed in from another country and sold their shares; then staff open a recovery,
re-verify identity (failed and successful attempts, the attempt limit, a new document),
reset the credentials and reverse the fraudulent sale with four eyes, read the timeline
from the ledger and close the case, lifting the freeze."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.support.access import staff
from tests.support.api import Api, audit_events, bearer, is_problem, login
from tests.support.kyc import british_applicant, kyc_record_on_file, upload_passport
from tests.support.ledger import settle
from tests.support.takeover import (
    GB,
    SE,
    Customer,
    answer,
    customer,
    frozen,
    prompt_token,
    sign_in_from,
    withdrawal,
    works,
)
from tests.support.trading import (
    Trader,
    add_instrument,
    funded_account,
    reconcile,
    street_order,
    trading_of,
)
from tradeguard.access.domain import Role
from tradeguard.config import Settings
from tradeguard.core.orders import Side
from tradeguard.db.engine import unit_of_work
from tradeguard.fraud.models import RecoveryCase, RecoveryMark, RecoveryProposal
from tradeguard.identity.models import MfaFactor
from tradeguard.ledger.domain import Party
from tradeguard.trading.models import (
    Execution,
    ExecutionReversal,
    JournalEntry,
    JournalTransaction,
    Position,
)

RECOVERIES = "/api/v1/admin/fraud/recoveries"
SAMPLE_ID = "0190a3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"
BIRTH = "1985-04-12"
POSTAL = "SW1A 1AA"
TAX4 = "6789"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Fast jets: the second sign-in minutes later from Sweden is new, not impossible.
    return settings.model_copy(update={"takeover_max_speed_kmh": 20_000.0})


@dataclass
class Scene:
    alice: Customer
    intruder: Trader
    account_id: str
    document_id: str  # her verified passport on file before the takeover
    ada: Trader
    bob: Trader


async def taken_over(api: Api, *, trade: bool = True) -> Scene:
    """Alice holds 100 ACME; someone signs in with her credentials from Sweden and sells
    them all; Alice answers "no" to "was this you?" (withdrawals freeze, a review opens)."""
    await add_instrument(api, "ACME", "10.00")
    alice = await customer(api, ip=GB)
    owner = Trader(alice.username, alice.user_id, alice.access, alice.home)
    # Her KYC record (birth date, postcode, tax reference's last four) and passport on file.
    document_id = await kyc_record_on_file(api, owner, british_applicant())
    account = await funded_account(api, owner, "10000.00")
    if trade:
        await street_order(api, "ACME", Side.SELL, 100, "10.00")
        bought = await owner.order(
            account,
            client_order_id="b1",
            symbol="ACME",
            side="buy",
            type="limit",
            quantity=100,
            limit_price="10.00",
        )
        assert bought.status_code == 201, bought.text
    api.clock.advance(seconds=600)
    intruder = await sign_in_from(api, alice, SE)
    if trade:
        await street_order(api, "ACME", Side.BUY, 100, "10.00")
        sold = await intruder.order(
            account,
            client_order_id="s1",
            symbol="ACME",
            side="sell",
            type="limit",
            quantity=100,
            limit_price="10.00",
        )
        assert sold.status_code == 201, sold.text
    api.clock.advance(seconds=60)
    refused = await withdrawal(api, alice.user_id, "9000.00")  # the intruder tries
    assert (await answer(api, await prompt_token(api, alice), "no")).status_code == 200
    assert refused is not None
    ada = await staff(api, api.client("198.51.100.30"), "ada", Role.COMPLIANCE)
    bob = await staff(api, api.client("198.51.100.31"), "bob", Role.COMPLIANCE)
    return Scene(alice, intruder, account, document_id, ada, bob)


async def open_case(scene: Scene) -> dict[str, Any]:
    reviews = await scene.ada.get("/api/v1/takeover/reviews", params={"status": "open"})
    [review] = reviews.json()
    opened = await scene.ada.post(RECOVERIES, {"review_id": review["id"]})
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    assert body["user_id"] == scene.alice.user_id
    return body


async def verify(member: Trader, case_id: str, **stated: str) -> Any:
    body = {"method": "kyc_record", "birth_date": BIRTH, "postal_code": POSTAL}
    body["tax_id_last4"] = TAX4
    body.update(stated)
    return await member.post(f"{RECOVERIES}/{case_id}/verify", body)


async def state(api: Api) -> tuple[int, int, int, int]:
    """Cases, proposals, marks, reversals: what a refused step must leave alone."""
    async with api.services.unit_of_work() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(model))
            for model in (RecoveryCase, RecoveryProposal, RecoveryMark, ExecutionReversal)
        ]
    return tuple(int(c or 0) for c in counts)  # type: ignore[return-value]


async def holdings(api: Api, account_id: str) -> tuple[int, Decimal]:
    """(ACME shares, settled plus unsettled cash) of the account."""
    services = trading_of(api)
    async with unit_of_work(services.sessions) as session:
        account = await services.accounts.get(session, account_id)
        balances = await services.accounts.balances(session, account)
        position = await session.get(Position, (account_id, "ACME"))
    shares = position.quantity if position is not None else 0
    return shares, balances.cash_settled + balances.cash_unsettled


class TestRecovery:
    @pytest.mark.spec("ATO-3")
    async def test_end_to_end_recovery_after_a_takeover(self, api: Api, settings: Settings) -> None:
        scene = await taken_over(api)
        ada, bob, alice = scene.ada, scene.bob, scene.alice
        shares_before_theft = 100
        assert await frozen(api, alice.user_id)
        assert (await holdings(api, scene.account_id))[0] == 0  # sold by the intruder
        case = await open_case(scene)
        case_id = case["id"]
        again = await bob.post(RECOVERIES, {"user_id": alice.user_id})
        assert is_problem(again, 409, "recovery-step-refused"), again.text

        # Nothing consequential before identity is re-verified.
        early = await ada.post(
            f"{RECOVERIES}/{case_id}/proposals",
            {"action": "reset_credentials", "reason": "intruder knows the password"},
        )
        assert is_problem(early, 409, "identity-not-verified"), early.text

        # A wrong answer spends an attempt and says nothing of the record.
        wrong = await verify(ada, case_id, tax_id_last4="1234")
        assert wrong.status_code == 200, wrong.text
        assert wrong.json() == {"verified": False, "method": "kyc_record", "attempts_left": 2}
        for secret in (TAX4, BIRTH, "1985", "SW1A"):
            assert secret not in wrong.text
        right = await verify(ada, case_id, postal_code="sw1a-1aa")
        assert right.json() == {"verified": True, "method": "kyc_record", "attempts_left": 0}
        twice = await verify(ada, case_id)
        assert is_problem(twice, 409, "recovery-step-refused")

        # Credentials: proposed by one, the proposer's own approval refused, another approves.
        proposed = await ada.post(
            f"{RECOVERIES}/{case_id}/proposals",
            {"action": "reset_credentials", "reason": "intruder knows the password"},
        )
        assert proposed.status_code == 201, proposed.text
        proposal_id = proposed.json()["id"]
        own = await ada.post(f"{RECOVERIES}/proposals/{proposal_id}/approve")
        assert is_problem(own, 403, "four-eyes-required"), own.text
        # Past the takeover lock, the stolen password and TOTP still sign in from Sweden.
        api.clock.advance(seconds=settings.login_lockout_seconds + 60)
        intruder_again = await sign_in_from(api, alice, SE)
        assert await works(intruder_again.client, intruder_again.access)
        await ada.sign_in_again()
        await bob.sign_in_again()
        approved = await bob.post(f"{RECOVERIES}/proposals/{proposal_id}/approve")
        assert approved.status_code == 200, approved.text
        done = approved.json()
        assert done["sessions_ended"] >= 1
        assert done["factors_removed"] == 1
        assert done["proposal"]["decided_by"] == bob.user_id
        assert done["case"]["credentials_reset_at"] is not None
        assert not await works(intruder_again.client, intruder_again.access)
        async with api.services.unit_of_work() as session:
            factors = await session.scalar(
                select(func.count())
                .select_from(MfaFactor)
                .where(MfaFactor.user_id == alice.user_id, MfaFactor.revoked_ns.is_(None))
            )
        assert factors == 0
        # The old password no longer signs in; the owner got a reset link and a notice.
        async with api.client(GB) as client:
            with pytest.raises(AssertionError):
                await login(client, alice.username)
        templates = [m["template"] for m in await api.outbox(to=alice.email)]
        assert "password_reset" in templates
        assert "staff_account_change" in templates
        replay = await bob.post(f"{RECOVERIES}/proposals/{proposal_id}/approve")
        assert is_problem(replay, 409, "recovery-step-refused")

        # The timeline, from the ledger, in chain order.
        await settle(api.engine)
        timeline = await ada.get(f"{RECOVERIES}/{case_id}/timeline")
        assert timeline.status_code == 200, timeline.text
        entries = timeline.json()["entries"]
        seqs = [e["seq"] for e in entries]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        lines = [e["line"] for e in entries]
        assert any(line.startswith("Sign-in assessed from SE") for line in lines), lines
        assert any(line.startswith("Sign-in assessed from GB") for line in lines)
        [sale] = [e for e in entries if e["line"] == "Trade executed: sold 100 ACME at 10.00"]
        assert [e for e in entries if e["line"] == "Trade executed: bought 100 ACME at 10.00"]
        assert any(e["category"] == "security" for e in entries)
        assert any(e["type"] == "fraud:prompt:denied" for e in entries)
        assert any(e["type"] == "fraud:withdrawal:assessed" for e in entries)
        assert [e["seq"] for e in entries if e["type"] == "fraud:sign_in:assessed"] == sorted(
            e["seq"] for e in entries if e["type"] == "fraud:sign_in:assessed"
        )
        # Addresses only masked: the network, never the connection.
        assert SE not in timeline.text
        assert GB not in timeline.text
        assert any(e["ip"] == "89.160.*.*" for e in entries)
        execution_id = sale["references"]["execution_id"]

        # Reversal: marked first, proposed by one, approved by another.
        unmarked = await ada.post(
            f"{RECOVERIES}/{case_id}/proposals",
            {
                "action": "reverse_execution",
                "reason": "sold by the intruder",
                "execution_id": execution_id,
            },
        )
        assert is_problem(unmarked, 409, "recovery-step-refused")
        marked = await ada.post(
            f"{RECOVERIES}/{case_id}/marks", {"seq": sale["seq"], "note": "sold by the intruder"}
        )
        assert marked.status_code == 201, marked.text
        assert (marked.json()["kind"], marked.json()["ref_id"]) == ("execution", execution_id)
        remarked = await bob.post(
            f"{RECOVERIES}/{case_id}/marks", {"seq": sale["seq"], "note": "again"}
        )
        assert is_problem(remarked, 409, "recovery-step-refused")
        proposed = await ada.post(
            f"{RECOVERIES}/{case_id}/proposals",
            {
                "action": "reverse_execution",
                "reason": "sold by the intruder",
                "execution_id": execution_id,
            },
        )
        assert proposed.status_code == 201, proposed.text
        _, cash_after_theft = await holdings(api, scene.account_id)
        own = await ada.post(f"{RECOVERIES}/proposals/{proposed.json()['id']}/approve")
        assert is_problem(own, 403, "four-eyes-required")
        reversed_ = await bob.post(f"{RECOVERIES}/proposals/{proposed.json()['id']}/approve")
        assert reversed_.status_code == 200, reversed_.text
        services = trading_of(api)
        async with unit_of_work(services.sessions) as session:
            execution = await session.get(Execution, execution_id)
            assert execution is not None
            proceeds = execution.notional - execution.fee
        shares_now, cash_now = await holdings(api, scene.account_id)
        assert shares_now == shares_before_theft
        assert cash_now == cash_after_theft - proceeds
        assert reversed_.json()["reversal"]["position_after"] == shares_before_theft
        # Compensating entries, against the firm's error account; the original untouched.
        async with unit_of_work(services.sessions) as session:
            kinds = (
                (
                    await session.execute(
                        select(JournalTransaction.kind).where(
                            JournalTransaction.execution_id == execution_id
                        )
                    )
                )
                .scalars()
                .all()
            )
            books = (
                (
                    await session.execute(
                        select(JournalEntry.book)
                        .join(JournalTransaction, JournalEntry.txn_id == JournalTransaction.id)
                        .where(JournalTransaction.kind == "reversal")
                    )
                )
                .scalars()
                .all()
            )
            still = await session.get(Execution, execution_id)
        assert sorted(kinds) == ["fill", "reversal"]
        assert "firm:error" in books
        assert still is not None
        assert still.quantity == 100
        report = await reconcile(api)
        assert report["ok"], report["problems"]
        [event] = await audit_events(api, "trading:execution:reversed")
        assert event["data"]["execution_id"] == execution_id
        assert event["actor"] == {"kind": "staff", "id": bob.user_id}
        assert event["data"]["approved_by"] == {"kind": "staff", "id": ada.user_id}

        # Reversed once only.
        twice = await ada.post(
            f"{RECOVERIES}/{case_id}/proposals",
            {"action": "reverse_execution", "reason": "again", "execution_id": execution_id},
        )
        assert is_problem(twice, 409, "recovery-step-refused"), twice.text
        async with unit_of_work(services.sessions) as session:
            with pytest.raises(Exception, match="already reversed"):
                await services.reversals.reverse_execution(
                    session,
                    execution_id,
                    reason="direct second attempt",
                    actor=Party("staff", bob.user_id),
                )

        # Close as recovered: the freeze lifts on the second member's approval.
        closing = await ada.post(
            f"{RECOVERIES}/{case_id}/proposals",
            {"action": "close", "reason": "owner secured, sale reversed", "outcome": "recovered"},
        )
        assert closing.status_code == 201, closing.text
        assert await frozen(api, alice.user_id)
        closed = await bob.post(f"{RECOVERIES}/proposals/{closing.json()['id']}/approve")
        assert closed.status_code == 200, closed.text
        assert closed.json()["freezes_lifted"] == 1
        assert closed.json()["case"]["status"] == "closed"
        assert closed.json()["case"]["outcome"] == "recovered"
        assert not await frozen(api, alice.user_id)
        shown = (await ada.get(f"{RECOVERIES}/{case_id}")).json()
        assert shown["reversed_executions"] == [execution_id]
        assert [p["status"] for p in shown["proposals"]] == ["approved"] * 3
        after = await ada.post(f"{RECOVERIES}/{case_id}/marks", {"seq": 1, "note": "late"})
        assert is_problem(after, 409, "recovery-step-refused")
        # Every step is in the ledger, about the user, with the acting member.
        types = [
            e["type"] for e in await audit_events(api) if e["type"].startswith("fraud:recovery:")
        ]
        for expected in (
            "fraud:recovery:opened",
            "fraud:recovery:identity_not_verified",
            "fraud:recovery:identity_verified",
            "fraud:recovery:proposed",
            "fraud:recovery:approved",
            "fraud:recovery:credentials_reset",
            "fraud:recovery:timeline_viewed",
            "fraud:recovery:marked",
            "fraud:recovery:closed",
        ):
            assert expected in types, expected
        for event in await audit_events(api, "fraud:recovery:closed"):
            assert event["subject"] == {"kind": "user", "id": alice.user_id}
            assert event["actor"] == {"kind": "staff", "id": bob.user_id}

    @pytest.mark.spec("ATO-3")
    async def test_record_attempts_are_limited_then_only_a_new_document_verifies(
        self, api: Api, settings: Settings
    ) -> None:
        scene = await taken_over(api, trade=False)
        case_id = (await open_case(scene))["id"]
        for left in (2, 1, 0):
            wrong = await verify(scene.ada, case_id, birth_date="1990-01-01")
            assert wrong.json() == {
                "verified": False,
                "method": "kyc_record",
                "attempts_left": left,
            }
        # Even the right answer is refused now.
        locked = await verify(scene.bob, case_id)
        assert is_problem(locked, 409, "recovery-step-refused"), locked.text
        # The document on file when the case opened does not count; a new verified one does.
        document = {"method": "document"}
        same = await scene.ada.post(f"{RECOVERIES}/{case_id}/verify", document)
        assert is_problem(same, 409, "recovery-step-refused")
        # Alice signs in again at home past the takeover lock and uploads new passports: one
        # the sandbox sends to review (its documented test number) is not enough.
        api.clock.advance(seconds=settings.login_lockout_seconds + 60)
        owner = await sign_in_from(api, scene.alice, GB, same_device=True)
        await scene.ada.sign_in_again()
        identity = british_applicant()["identity"]
        waiting = await upload_passport(api, owner, identity, number="REVIEW001")
        assert waiting["status"] == "review", waiting
        pending = await scene.ada.post(f"{RECOVERIES}/{case_id}/verify", document)
        assert is_problem(pending, 409, "recovery-step-refused")
        newer = await upload_passport(api, owner, identity, number="C02X00T48")
        assert newer["status"] == "verified", newer
        assert newer["id"] != scene.document_id
        fresh = await scene.ada.post(f"{RECOVERIES}/{case_id}/verify", document)
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["verified"] is True
        assert fresh.json()["method"] == "document"
        [event] = await audit_events(api, "fraud:recovery:identity_verified")
        assert event["data"]["method"] == "document"
        # Nothing the caller stated reached the ledger.
        for event in await audit_events(api):
            if event["type"].startswith("fraud:recovery:"):
                text = str(event)
                assert "1990-01-01" not in text
                assert TAX4 not in text

    @pytest.mark.spec("ATO-3")
    async def test_record_attempts_belong_to_the_user_across_cases(self, api: Api) -> None:
        # Closing a case and opening another must not give three fresh guesses at the
        # tax id's last four: the attempts are the user's, over a window.
        scene = await taken_over(api, trade=False)
        case_id = (await open_case(scene))["id"]
        for left in (2, 1):
            wrong = await verify(scene.ada, case_id, tax_id_last4="0000")
            assert wrong.json()["attempts_left"] == left, wrong.text
        closing = await scene.ada.post(
            f"{RECOVERIES}/{case_id}/proposals",
            {"action": "close", "reason": "unreachable", "outcome": "closed_without_recovery"},
        )
        assert closing.status_code == 201, closing.text
        closed = await scene.bob.post(f"{RECOVERIES}/proposals/{closing.json()['id']}/approve")
        assert closed.status_code == 200, closed.text
        again = await scene.ada.post(RECOVERIES, {"user_id": scene.alice.user_id})
        assert again.status_code == 201, again.text
        second = again.json()["id"]
        assert second != case_id
        last = await verify(scene.ada, second, tax_id_last4="0001")
        assert last.json() == {"verified": False, "method": "kyc_record", "attempts_left": 0}
        refused = await verify(scene.bob, second)
        assert is_problem(refused, 409, "recovery-step-refused"), refused.text
        assert "new identity document" in refused.json()["detail"]

    @pytest.mark.spec("ATO-3")
    async def test_closing_without_recovery_keeps_the_freeze_and_needs_two_members(
        self, api: Api
    ) -> None:
        scene = await taken_over(api, trade=False)
        case_id = (await open_case(scene))["id"]
        early = await scene.ada.post(
            f"{RECOVERIES}/{case_id}/proposals",
            {"action": "close", "reason": "owner secured", "outcome": "recovered"},
        )
        assert is_problem(early, 409, "identity-not-verified")
        closing = await scene.ada.post(
            f"{RECOVERIES}/{case_id}/proposals",
            {
                "action": "close",
                "reason": "owner unreachable",
                "outcome": "closed_without_recovery",
            },
        )
        assert closing.status_code == 201
        withdrawn = await scene.ada.post(f"{RECOVERIES}/proposals/{closing.json()['id']}/withdraw")
        assert withdrawn.json()["status"] == "withdrawn"
        gone = await scene.bob.post(f"{RECOVERIES}/proposals/{closing.json()['id']}/approve")
        assert is_problem(gone, 409, "recovery-step-refused")
        closing = await scene.ada.post(
            f"{RECOVERIES}/{case_id}/proposals",
            {
                "action": "close",
                "reason": "owner unreachable",
                "outcome": "closed_without_recovery",
            },
        )
        closed = await scene.bob.post(f"{RECOVERIES}/proposals/{closing.json()['id']}/approve")
        assert closed.status_code == 200, closed.text
        assert closed.json()["freezes_lifted"] == 0
        assert await frozen(api, scene.alice.user_id)


class TestRefusals:
    @pytest.mark.spec("ATO-3")
    async def test_callers_without_fraud_recover_are_refused(self, api: Api) -> None:
        scene = await taken_over(api, trade=False)
        sam = await staff(api, api.client("198.51.100.32"), "sam", Role.SUPPORT)
        before = await state(api)
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", RECOVERIES, None),
            ("POST", RECOVERIES, {"user_id": scene.alice.user_id}),
            ("GET", f"{RECOVERIES}/{SAMPLE_ID}", None),
            ("GET", f"{RECOVERIES}/{SAMPLE_ID}/timeline", None),
            ("POST", f"{RECOVERIES}/{SAMPLE_ID}/verify", {"method": "document"}),
            ("POST", f"{RECOVERIES}/{SAMPLE_ID}/marks", {"seq": 1, "note": "abc"}),
            (
                "POST",
                f"{RECOVERIES}/{SAMPLE_ID}/proposals",
                {"action": "reset_credentials", "reason": "abc"},
            ),
            ("POST", f"{RECOVERIES}/proposals/{SAMPLE_ID}/approve", None),
            ("POST", f"{RECOVERIES}/proposals/{SAMPLE_ID}/withdraw", None),
        ]
        async with api.client() as anonymous:
            for method, path, body in calls:
                response = await anonymous.request(method, path, json=body)
                assert response.status_code == 401, (path, response.text)
                for member, headers, client in (
                    (sam, sam.headers, sam.client),
                    (None, bearer(scene.intruder.access), scene.intruder.client),
                ):
                    refused = await client.request(method, path, json=body, headers=headers)
                    assert refused.status_code in {401, 403}, (member, path, refused.text)
        assert await state(api) == before

    @pytest.mark.spec("ATO-3")
    async def test_bad_input_is_a_problem_and_changes_nothing(self, api: Api) -> None:
        scene = await taken_over(api, trade=False)
        ada = scene.ada
        case_id = (await open_case(scene))["id"]
        before = await state(api)
        bad: list[tuple[str, dict[str, Any] | None, int]] = [
            (RECOVERIES, {}, 422),
            (RECOVERIES, {"user_id": "not-an-id"}, 422),
            (RECOVERIES, {"user_id": SAMPLE_ID}, 404),
            (RECOVERIES, {"user_id": ada.user_id}, 403),
            (RECOVERIES, {"user_id": scene.alice.user_id, "colour": "red"}, 422),
            (f"{RECOVERIES}/{case_id}/verify", {"method": "telepathy"}, 422),
            (
                f"{RECOVERIES}/{case_id}/verify",
                {
                    "method": "kyc_record",
                    "birth_date": "12/04/1985",
                    "postal_code": "x1",
                    "tax_id_last4": "6789",
                },
                422,
            ),
            (
                f"{RECOVERIES}/{case_id}/verify",
                {
                    "method": "kyc_record",
                    "birth_date": BIRTH,
                    "postal_code": POSTAL,
                    "tax_id_last4": "67 9",
                },
                422,
            ),
            (
                f"{RECOVERIES}/{case_id}/verify",
                {
                    "method": "kyc_record",
                    "birth_date": BIRTH,
                    "postal_code": "<script>",
                    "tax_id_last4": TAX4,
                },
                422,
            ),
            (f"{RECOVERIES}/{SAMPLE_ID}/verify", {"method": "document"}, 404),
            (f"{RECOVERIES}/{case_id}/marks", {"seq": 0, "note": "abc"}, 422),
            (f"{RECOVERIES}/{case_id}/marks", {"seq": 10**12, "note": "abc"}, 404),
            (
                f"{RECOVERIES}/{case_id}/proposals",
                {"action": "delete_account", "reason": "abc"},
                422,
            ),
            (f"{RECOVERIES}/{case_id}/proposals", {"action": "close", "reason": "abc"}, 422),
            (
                f"{RECOVERIES}/{case_id}/proposals",
                {"action": "reverse_execution", "reason": "abc", "execution_id": SAMPLE_ID},
                409,
            ),
            (f"{RECOVERIES}/proposals/{SAMPLE_ID}/approve", None, 404),
        ]
        for path, body, status in bad:
            response = await ada.post(path, body)
            assert response.status_code == status, (path, body, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert TAX4 not in response.text
            assert "<script>" not in response.text
        for query in ({"since": "yesterday"}, {"since": "2026-01-05T00:00:00"}, {"colour": "red"}):
            response = await ada.get(f"{RECOVERIES}/{case_id}/timeline", params=query)
            assert response.status_code in {400, 422}, (query, response.text)
        backwards = await ada.get(
            f"{RECOVERIES}/{case_id}/timeline",
            params={"since": "2026-01-05T12:00:00Z", "until": "2026-01-05T11:00:00Z"},
        )
        assert is_problem(backwards, 422, "invalid-input")
        assert (await ada.get(f"{RECOVERIES}/{SAMPLE_ID}")).status_code == 404
        assert await state(api) == before
        [case] = (await ada.get(RECOVERIES, params={"status": "open"})).json()
        assert case["record_attempts"] == 0
