"""The checkpoint monitor reading the API (compliance:audit) of a real app: a log that keeps
growing passes; a checkpoint swapped behind the database's triggers is a fork, a log cut
short is a rollback, a forged larger head is a rewritten history."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.access.support import Staff, enrol_staff
from tests.support.api import Api
from tests.support.ledger import rewrite_behind_triggers, settle
from tradeguard.access.domain import Role
from tradeguard.ledger.tree.monitor import AlarmKind, ApiSource, MonitorState, check_source
from tradeguard.ledger.tree.note import Checkpoint, VerifierKey, sign_note
from tradeguard.ledger.tree.service import LedgerTree

AUDIT = "/api/v1/audit"


def api_source(carol: Staff) -> ApiSource:
    async def fetch(path: str, params: dict[str, str]) -> tuple[int, Any]:
        response = await carol.get(path, params=params)
        return response.status_code, response.json()

    return ApiSource("https://testserver", fetch)


async def checkpoint(api: Api, carol: Staff) -> int:
    await settle(api.engine)
    response = await carol.post(f"{AUDIT}/checkpoints")
    assert response.status_code in (200, 201), response.text
    return int(response.json()["tree_size"])


def keys_of(api: Api) -> list[VerifierKey]:
    tree: LedgerTree = api.app.state.ledger_tree
    return tree.keys().verifiers


async def forge(api: Api, *, size: int, root: bytes) -> None:
    """Replace the stored checkpoint at `size` with one over another tree, signed with the
    log's key (a stolen key and full database access)."""
    tree: LedgerTree = api.app.state.ledger_tree
    signer = tree.keys().active
    note = sign_note(Checkpoint(tree.origin, size, root).text, signer)
    await rewrite_behind_triggers(
        api.engine,
        "audit_checkpoint",
        "UPDATE audit_checkpoint SET note = :note, root_hash = :root WHERE tree_size = :size",
        {"note": note, "root": root, "size": size},
    )


async def seen_state(api: Api, carol: Staff) -> MonitorState:
    result = await check_source(None, api_source(carol), keys_of(api))
    assert result.alarms == []
    assert result.state is not None
    return result.state


class TestMonitorOverTheApi:
    @pytest.mark.spec("AUD-2")
    async def test_a_growing_log_passes(self, api: Api) -> None:
        async with api.client() as client:
            carol = await enrol_staff(api, client, "carol", Role.COMPLIANCE)
            first = await checkpoint(api, carol)
            state = await seen_state(api, carol)
            second = await checkpoint(api, carol)
            result = await check_source(state, api_source(carol), keys_of(api))
        assert result.alarms == []
        assert [c.size for c in result.accepted] == [second]
        assert result.state is not None
        assert (state.size, result.state.size) == (first, second)

    @pytest.mark.spec("AUD-2", "ENC-3")
    async def test_a_checkpoint_swapped_at_the_seen_size_is_a_fork(self, api: Api) -> None:
        async with api.client() as client:
            carol = await enrol_staff(api, client, "carol", Role.COMPLIANCE)
            size = await checkpoint(api, carol)
            state = await seen_state(api, carol)
            await forge(api, size=size, root=bytes(32))
            result = await check_source(state, api_source(carol), keys_of(api))
        assert [a.kind for a in result.alarms] == [AlarmKind.FORK]
        assert result.state == state

    @pytest.mark.spec("AUD-2")
    async def test_a_log_cut_below_the_seen_size_is_a_rollback(self, api: Api) -> None:
        async with api.client() as client:
            carol = await enrol_staff(api, client, "carol", Role.COMPLIANCE)
            first = await checkpoint(api, carol)
            second = await checkpoint(api, carol)
            state = await seen_state(api, carol)
            await rewrite_behind_triggers(
                api.engine,
                "audit_checkpoint",
                "DELETE FROM audit_checkpoint WHERE tree_size > :size",
                {"size": first},
            )
            result = await check_source(state, api_source(carol), keys_of(api))
        assert state.size == second
        assert [a.kind for a in result.alarms] == [AlarmKind.ROLLBACK]
        assert result.alarms[0].observed_size == first

    @pytest.mark.spec("AUD-2")
    async def test_a_forged_larger_head_is_a_rewritten_history(self, api: Api) -> None:
        async with api.client() as client:
            carol = await enrol_staff(api, client, "carol", Role.COMPLIANCE)
            await checkpoint(api, carol)
            state = await seen_state(api, carol)
            larger = await checkpoint(api, carol)
            await forge(api, size=larger, root=bytes(range(32)))
            result = await check_source(state, api_source(carol), keys_of(api))
        assert [a.kind for a in result.alarms] == [AlarmKind.INCONSISTENT]
        assert result.state == state
