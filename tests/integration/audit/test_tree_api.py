"""/api/v1/audit: checkpoints, proofs and keys for compliance (compliance:audit), each
checked with the independent verifier and nothing but the published public key; bad input
gets an RFC 9457 problem and changes nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from tests.integration.access.support import Staff, enrol_staff
from tests.support import rfc9162
from tests.support.api import Api, is_problem
from tests.support.ledger import rewrite_behind_triggers, settle
from tests.support.trading import signed_in_trader
from tradeguard.access.domain import Role
from tradeguard.ledger.tree.keys import rotate_log_key
from tradeguard.ledger.tree.models import CheckpointRow

AUDIT = "/api/v1/audit"
UNKNOWN = "0190c5a0-0000-7000-8000-000000000000"


async def compliance(api: Api, client: httpx.AsyncClient) -> Staff:
    return await enrol_staff(api, client, "carol", Role.COMPLIANCE)


async def signed(api: Api, carol: Staff) -> dict[str, Any]:
    """Chain what has committed, then sign a checkpoint through the API."""
    await settle(api.engine)
    response = await carol.post(f"{AUDIT}/checkpoints")
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def active_vkey(carol: Staff) -> str:
    keys = (await carol.get(f"{AUDIT}/keys")).json()["keys"]
    return str(next(k["vkey"] for k in keys if k["active"]))


async def checkpoint_rows(api: Api) -> int:
    async with api.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(CheckpointRow))).scalar())


def b64(text: str) -> bytes:
    return base64.b64decode(text)


class TestCheckpoints:
    @pytest.mark.spec("AUD-3")
    async def test_compliance_signs_and_reads_checkpoints_that_verify_with_the_public_key(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol = await compliance(api, client)
            created = await carol.post(f"{AUDIT}/checkpoints")
            await settle(api.engine)
            first = await carol.post(f"{AUDIT}/checkpoints")
            unchanged = await carol.post(f"{AUDIT}/checkpoints")
            latest = await carol.get(f"{AUDIT}/checkpoints/latest")
            at_size = await carol.get(f"{AUDIT}/checkpoints/{first.json()['tree_size']}")
            vkey = await active_vkey(carol)
        assert created.status_code == 201
        assert first.status_code == 201
        assert unchanged.status_code == 200
        assert unchanged.json()["created"] is False
        body = latest.json()
        origin, size, root = rfc9162.verify_checkpoint(body["note"], vkey)
        assert (origin, size, root) == (body["origin"], body["tree_size"], b64(body["root_hash"]))
        assert body["key_id"] == vkey.split("+")[1]
        assert at_size.json()["note"] == body["note"]

    @pytest.mark.spec("AUD-3")
    async def test_a_rotated_key_stays_published_and_verifies_what_it_signed(
        self, api: Api
    ) -> None:
        settings = api.app.state.runtime.settings
        async with api.client() as client:
            carol = await compliance(api, client)
            old = await signed(api, carol)
            old_vkey = await active_vkey(carol)
            rotate_log_key(settings.ledger_keys_dir, settings.ledger_origin)
            new = await signed(api, carol)
            keys = (await carol.get(f"{AUDIT}/keys")).json()
        assert [k["active"] for k in keys["keys"]] == [True, False]
        assert keys["keys"][1]["vkey"] == old_vkey
        assert rfc9162.verify_checkpoint(old["note"], old_vkey)[1] == old["tree_size"]
        assert rfc9162.verify_checkpoint(new["note"], keys["keys"][0]["vkey"])
        assert new["key_id"] != old["key_id"]


class TestProofs:
    @pytest.mark.spec("AUD-2", "AUD-3")
    async def test_an_event_is_proven_in_the_signed_tree_and_the_tree_only_grew(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol = await compliance(api, client)
            first = await signed(api, carol)
            trader = await signed_in_trader(api, client, "tom")
            second = await signed(api, carol)
            by_seq = await carol.get(f"{AUDIT}/proofs/inclusion", params={"seq": 3})
            event_id = by_seq.json()["event_id"]
            by_id = await carol.get(f"{AUDIT}/proofs/inclusion", params={"event_id": event_id})
            older = await carol.get(
                f"{AUDIT}/proofs/inclusion",
                params={"event_id": event_id, "tree_size": first["tree_size"]},
            )
            consistency = await carol.get(
                f"{AUDIT}/proofs/consistency",
                params={"first": first["tree_size"], "second": second["tree_size"]},
            )
            vkey = await active_vkey(carol)
        assert trader.user_id
        _, size, root = rfc9162.verify_checkpoint(second["note"], vkey)
        proof = by_id.json()
        assert proof == by_seq.json()
        assert proof["tree_size"] == size
        body = b64(proof["event_body"])
        assert json.loads(body)["id"] == event_id
        assert rfc9162.verify_inclusion(
            2, size, rfc9162.leaf(body), [b64(h) for h in proof["proof"]], root
        )
        assert proof["checkpoint"]["note"] == second["note"]
        _, old_size, old_root = rfc9162.verify_checkpoint(first["note"], vkey)
        assert rfc9162.verify_inclusion(
            2, old_size, rfc9162.leaf(body), [b64(h) for h in older.json()["proof"]], old_root
        )
        link = consistency.json()
        assert rfc9162.verify_consistency(
            old_size, size, old_root, root, [b64(h) for h in link["proof"]]
        )
        assert link["first_checkpoint"]["note"] == first["note"]

    async def test_an_event_whose_body_was_altered_gets_a_problem_not_a_proof(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol = await compliance(api, client)
            await signed(api, carol)
            sound = await carol.get(f"{AUDIT}/proofs/inclusion", params={"seq": 2})
            body = b64(sound.json()["event_body"])
            async with api.engine.connect() as conn:
                pk = (
                    await conn.execute(text("SELECT event_pk FROM audit_chain WHERE seq = 2"))
                ).scalar_one()
            await rewrite_behind_triggers(
                api.engine,
                "audit_event",
                "UPDATE audit_event SET body = :b WHERE pk = :pk",
                {"b": body.replace(b"}", b" }", 1), "pk": pk},
            )
            altered = await carol.get(f"{AUDIT}/proofs/inclusion", params={"seq": 2})
            by_id = await carol.get(
                f"{AUDIT}/proofs/inclusion", params={"event_id": sound.json()["event_id"]}
            )
        assert sound.status_code == 200
        assert is_problem(altered, 500, "leaf-mismatch"), altered.text
        assert "seq 2 does not hash to its leaf" in altered.json()["detail"]
        assert is_problem(by_id, 500, "leaf-mismatch")


# Each bad request, by path and query: the answer it must get. One signed-in compliance
# officer and one signed checkpoint serve them all (the setup is the slow part).
BAD_INPUT: list[tuple[str, dict[str, str], int, str]] = [
    ("/checkpoints/abc", {}, 422, "invalid-input"),
    ("/checkpoints/-1", {}, 422, "invalid-input"),
    ("/checkpoints/99999999999999999999", {}, 422, "invalid-input"),
    ("/checkpoints/999999", {}, 404, "no-checkpoint"),
    ("/proofs/inclusion", {}, 422, "invalid-input"),
    ("/proofs/inclusion", {"seq": "1", "event_id": UNKNOWN}, 422, "invalid-input"),
    ("/proofs/inclusion", {"event_id": "not-a-uuid"}, 422, "invalid-input"),
    ("/proofs/inclusion", {"seq": "0"}, 422, "invalid-input"),
    ("/proofs/inclusion", {"seq": "x"}, 422, "invalid-input"),
    ("/proofs/inclusion", {"seq": "1", "tree_size": "0"}, 422, "invalid-input"),
    ("/proofs/inclusion", {"seq": "999999"}, 404, "unknown-event"),
    ("/proofs/inclusion", {"event_id": UNKNOWN}, 404, "unknown-event"),
    ("/proofs/inclusion", {"seq": "2", "tree_size": "1"}, 422, "tree-size-out-of-range"),
    (
        "/proofs/inclusion",
        {"seq": "1", "tree_size": "999999"},
        422,
        "tree-size-out-of-range",
    ),
    ("/proofs/consistency", {"first": "1"}, 422, "invalid-input"),
    ("/proofs/consistency", {"first": "-1", "second": "2"}, 422, "invalid-input"),
    ("/proofs/consistency", {"first": "a", "second": "2"}, 422, "invalid-input"),
    ("/proofs/consistency", {"first": "3", "second": "2"}, 422, "tree-size-out-of-range"),
    (
        "/proofs/consistency",
        {"first": "1", "second": "999999"},
        422,
        "tree-size-out-of-range",
    ),
]


def answers_with(response: httpx.Response, status: int, slug: str) -> bool:
    """is_problem that says False (not raises) on an answer without a problem body."""
    try:
        return is_problem(response, status, slug)
    except (KeyError, ValueError):
        return False


def case_id(path: str, params: dict[str, str]) -> str:
    return f"{path}?{'&'.join(f'{k}={v}' for k, v in params.items())}"


class TestBadInput:
    async def test_bad_input_is_a_problem_and_changes_nothing(self, api: Api) -> None:
        failures: list[str] = []
        async with api.client() as client:
            carol = await compliance(api, client)
            await signed(api, carol)
            before = await checkpoint_rows(api)
            for path, params, status, slug in BAD_INPUT:
                case = case_id(path, params)
                response = await carol.get(AUDIT + path, params=params)
                if not answers_with(response, status, slug):
                    failures.append(
                        f"{case}: wanted {status} {slug}, got {response.status_code} "
                        f"{response.text[:300]}"
                    )
                after = await checkpoint_rows(api)
                if after != before:
                    failures.append(f"{case}: checkpoint rows {before} -> {after}")
        assert not failures, "\n".join(failures)

    async def test_before_any_checkpoint_and_past_the_latest_the_answer_says_so(
        self, api: Api
    ) -> None:
        async with api.client() as client:
            carol = await compliance(api, client)
            await settle(api.engine)
            none_yet = await carol.get(f"{AUDIT}/checkpoints/latest")
            not_covered = await carol.get(f"{AUDIT}/proofs/inclusion", params={"seq": 1})
        assert is_problem(none_yet, 404, "no-checkpoint")
        assert is_problem(not_covered, 409, "event-not-checkpointed")

    async def test_a_trader_gets_nothing(self, api: Api) -> None:
        async with api.client() as client:
            tom = await signed_in_trader(api, client, "tom")
            answers = [
                await client.get(AUDIT + path, headers=tom.headers)
                for path in ("/checkpoints/latest", "/keys", "/proofs/consistency?first=0&second=0")
            ]
            posted = await client.post(f"{AUDIT}/checkpoints", headers=tom.headers)
        assert all(is_problem(a, 403, "forbidden") for a in [*answers, posted])
        assert await checkpoint_rows(api) == 0
