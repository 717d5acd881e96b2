"""Blind-index key rotation on SQLite and PostgreSQL: indexes stored before versions and
under v1 are found before, during and after a rotation; the same tax id on two accounts is
found mid-rotation; `reindex` moves every index to the new version in resumable batches (a
process killed half-way resumes); the old version retires when no index uses it and never
computes an index again; every operation is a ledger event; bad input changes nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.support.api import running_api
from tests.support.backup import location_of
from tests.support.funds import ROUTING, funds_of
from tests.support.ledger import event_bodies, event_types
from tests.support.tax_records import (
    TABLE,
    TAX_INDEX,
    create_table,
    holders,
    index_versions,
    store,
)
from tradeguard.access.domain import Role
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto import repository
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import blind_index_candidates, blind_index_matches, digits_only
from tradeguard.crypto.keyring import NoActiveKey
from tradeguard.crypto.service import KeyEvent, KeyManagement, KeysInTheVault
from tradeguard.crypto.tasks import reindex_class
from tradeguard.db.engine import unit_of_work
from tradeguard.funds.common import FundsConflict
from tradeguard.funds.models import BankAccount
from tradeguard.identity.container import IdentityServices, start_identity
from tradeguard.ledger.domain import Party

OPERATOR = Party("operator", "test")
TAX = DataClass.TAX_ID
SSN = "123-45-6789"
ROOT = Path(__file__).resolve().parents[3]


async def start(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> KeyManagement:
    identity = await start_identity(
        settings, clock=clock, ids=IdGenerator(clock), sessions=sessions
    )
    management = identity.key_management
    management.keyring.indexes = (TAX_INDEX,)
    return management


@pytest.fixture
async def management(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> KeyManagement:
    await create_table(engine)
    return await start(settings, sessions, clock)


async def rotate_and_activate(
    management: KeyManagement, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> int:
    async with unit_of_work(sessions) as session:
        made = await management.rotate_index(session, TAX, actor=OPERATOR)
    clock.advance(ns=management.policy.activation_delay_ns)
    async with sessions() as session:
        await management.keyring.refresh(session)
    return made.version


async def index_rows(engine: AsyncEngine) -> dict[str, bytes]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT id, tax_id_index FROM {TABLE}"))  # noqa: S608
        return {r.id: bytes(r.tax_id_index) for r in rows.all()}


class TestLookupAcrossRotation:
    @pytest.mark.spec("ENC-2")
    async def test_lookups_find_every_row_before_during_and_after_a_rotation(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        management: KeyManagement,
    ) -> None:
        keyring = management.keyring
        # Before: one row as written before index keys had versions, one under v1.
        await store(sessions, keyring, "a-old", SSN, untagged=True)
        await store(sessions, keyring, "b-v1", "123 45 6789")
        await store(sessions, keyring, "x-other", "111-22-3333")
        assert await index_versions(engine) == Counter({"untagged": 1, "v1": 2})
        assert await holders(sessions, keyring, SSN) == ["a-old", "b-v1"]

        # Rotated, not yet active: lookups already match under v2, writes stay under v1.
        async with unit_of_work(sessions) as session:
            made = await management.rotate_index(session, TAX, actor=OPERATOR)
        assert made.version == 2
        async with sessions() as session:
            await keyring.refresh(session)
        assert keyring.index_version(TAX) == 1
        assert len(blind_index_candidates(keyring, TAX, SSN, digits_only)) == 3
        await store(sessions, keyring, "c-pending", SSN)
        clock.advance(ns=management.policy.activation_delay_ns)

        # During: the same tax id on a new account is under v2, and every holder is found.
        await store(sessions, keyring, "d-v2", "123456789")
        assert await index_versions(engine) == Counter({"untagged": 1, "v1": 3, "v2": 1})
        assert await holders(sessions, keyring, SSN) == ["a-old", "b-v1", "c-pending", "d-v2"]
        assert await holders(sessions, keyring, "111223333") == ["x-other"]
        # Nothing retires while an index still uses v1.
        clock.advance(ns=management.policy.retire_grace_ns)
        async with unit_of_work(sessions) as session:
            assert await management.retire_unused_index(session, TAX, actor=OPERATOR) == []

        # After: reindexed, v1 retires, and every holder is still found (under v2 only).
        run = await reindex_class(management, sessions, TAX, actor=OPERATOR, batch_size=2)
        assert (run.finished, run.rewrapped, run.unreadable) == (True, 4, 0)
        assert await index_versions(engine) == Counter({"v2": 5})
        async with unit_of_work(sessions) as session:
            assert await management.count_index_usage(session, TAX, actor=OPERATOR) == {2: 5}
            assert await management.retire_unused_index(session, TAX, actor=OPERATOR) == [1]
        assert await holders(sessions, keyring, SSN) == ["a-old", "b-v1", "c-pending", "d-v2"]
        assert len(blind_index_candidates(keyring, TAX, SSN, digits_only)) == 1
        # Another process started now finds them too, and knows no v1.
        fresh = await start(settings, sessions, clock)
        assert await holders(sessions, fresh.keyring, SSN) == ["a-old", "b-v1", "c-pending", "d-v2"]
        assert set(fresh.keyring.keyset.index_keys[TAX]) == {2}

        types = await event_types(engine)
        assert types.count(KeyEvent.INDEX_ROTATED) == 1
        assert types.count(KeyEvent.REINDEX_STARTED) == 1
        assert types.count(KeyEvent.REINDEX_FINISHED) == 1
        assert types.count(KeyEvent.INDEX_RETIRED) == 1
        assert types.count(KeyEvent.INDEX_USAGE_COUNTED) == 1
        async with engine.connect() as conn:
            recorded = await conn.execute(
                text(
                    "SELECT version, usage_count FROM crypto_key_version "
                    "WHERE data_class = 'tax_id' AND kind = 'index' ORDER BY version"
                )
            )
            assert [tuple(r) for r in recorded.all()] == [(1, 0), (2, 5)]
        retired = [b for b in await event_bodies(engine) if b["type"] == KeyEvent.INDEX_RETIRED]
        assert retired[0]["data"] == {"data_class": "tax_id", "version": 1, "usage_count": 0}

    async def test_a_duplicate_is_found_mid_reindex_whichever_version_each_row_is_under(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        management: KeyManagement,
    ) -> None:
        keyring = management.keyring
        for n in range(6):
            await store(sessions, keyring, f"r{n}", f"900-00-000{n}")
        await store(sessions, keyring, "z-first", SSN, untagged=True)
        await rotate_and_activate(management, sessions, clock)
        # Half-way: the first batches moved to v2, the untagged row (last by id) not yet.
        run = await reindex_class(
            management, sessions, TAX, actor=OPERATOR, batch_size=2, max_batches=2
        )
        assert not run.finished
        assert await index_versions(engine) == Counter({"v2": 4, "v1": 2, "untagged": 1})
        # A second account opened with the same tax id is a duplicate of the unmoved row.
        await store(sessions, keyring, "a-second", "123456789")
        assert (await index_rows(engine))["a-second"][:7].hex() == "03000200000002"
        assert await holders(sessions, keyring, SSN) == ["a-second", "z-first"]


class TestReindexResumes:
    async def test_a_batch_that_fails_is_rolled_back_and_the_rerun_resumes(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        management: KeyManagement,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        for n in range(9):
            await store(sessions, management.keyring, f"r{n}", f"900-00-000{n}")
        await rotate_and_activate(management, sessions, clock)
        real = repository.swap_values
        calls = 0

        async def swap_then_fail(*args: Any, **kwargs: Any) -> int:
            nonlocal calls
            calls += 1
            changed = await real(*args, **kwargs)
            if calls == 3:
                raise ConnectionResetError("the process died here")
            return changed

        monkeypatch.setattr(repository, "swap_values", swap_then_fail)
        with pytest.raises(ConnectionResetError):
            await reindex_class(management, sessions, TAX, actor=OPERATOR, batch_size=2)
        monkeypatch.setattr(repository, "swap_values", real)
        # Two batches committed, the third rolled back with its progress.
        assert await index_versions(engine) == Counter({"v2": 4, "v1": 5})
        run = await reindex_class(management, sessions, TAX, actor=OPERATOR, batch_size=2)
        assert (run.finished, run.rewrapped) == (True, 5)
        assert await index_versions(engine) == Counter({"v2": 9})
        types = await event_types(engine)
        assert types.count(KeyEvent.REINDEX_STARTED) == 1
        assert types.count(KeyEvent.REINDEX_RESUMED) == 1
        assert types.count(KeyEvent.REINDEX_FINISHED) == 1
        for n in range(9):
            assert await holders(sessions, management.keyring, f"90000000{n}") == [f"r{n}"]

    async def test_a_reindex_process_killed_half_way_resumes_where_it_stopped(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        management: KeyManagement,
    ) -> None:
        rows = 120
        for n in range(rows):
            await store(sessions, management.keyring, f"r{n:04d}", f"7{n:08d}")
        await rotate_and_activate(management, sessions, clock)
        where = await location_of(engine)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.reindex_worker",
            str(settings.data_dir),
            where.url,
            where.pg_schema or "-",
            "5",
            "40",
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            for _ in range(3000):
                if await progress_done(engine) >= 30 or process.returncode is not None:
                    break
                await asyncio.sleep(0.01)
            process.send_signal(signal.SIGKILL)
        finally:
            _, err = await process.communicate()
        assert process.returncode == -signal.SIGKILL, err.decode()
        moved = await index_versions(engine)
        assert 0 < moved["v2"] < rows
        assert moved["v2"] == await progress_done(engine)
        # Killed half-way, every row is still found by its tax id.
        for n in range(0, rows, 7):
            assert await holders(sessions, management.keyring, f"7{n:08d}") == [f"r{n:04d}"]

        run = await reindex_class(management, sessions, TAX, actor=OPERATOR, batch_size=50)
        assert run.finished
        assert run.rewrapped == rows - moved["v2"]
        assert await index_versions(engine) == Counter({"v2": rows})
        assert await progress_done(engine) == rows
        types = await event_types(engine)
        assert types.count(KeyEvent.REINDEX_STARTED) == 1
        assert types.count(KeyEvent.REINDEX_RESUMED) == 1
        assert types.count(KeyEvent.REINDEX_FINISHED) == 1


async def progress_done(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        done = await conn.scalar(
            text("SELECT rows_rewrapped FROM crypto_rewrap_progress WHERE location = :l"),
            {"l": "index:" + TAX_INDEX.name},
        )
    return int(done or 0)


class TestRetiredIndexVersion:
    async def test_a_retired_version_never_computes_an_index_again(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        management: KeyManagement,
    ) -> None:
        keyring = management.keyring
        await store(sessions, keyring, "a", SSN)
        before = (await index_rows(engine))["a"]
        await rotate_and_activate(management, sessions, clock)
        await reindex_class(management, sessions, TAX, actor=OPERATOR)
        clock.advance(ns=management.policy.retire_grace_ns)
        async with unit_of_work(sessions) as session:
            assert await management.retire_unused_index(session, TAX, actor=OPERATOR) == [1]
        # Neither this process nor a new one holds v1: no store, no lookup, no bare index.
        for ring in (keyring, (await start(settings, sessions, clock)).keyring):
            assert 1 not in ring.keyset.index_keys[TAX]
            assert all(c[:7].hex() == "03000200000002" for c in ring.index_candidates(TAX, "1"))
            with pytest.raises(NoActiveKey):
                ring.blind_index(TAX, "123456789")
        # A v1 index copied back in by someone with database access matches nothing.
        async with engine.begin() as conn:
            await conn.execute(
                text(f"UPDATE {TABLE} SET tax_id_index = :v WHERE id = 'a'"),  # noqa: S608
                {"v": before},
            )
        assert await holders(sessions, keyring, SSN) == []
        # The key table refuses to bring v1 back.
        with pytest.raises(Exception, match="only ever retired"):
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE crypto_key_version SET state = 'active', retired_ns = NULL "
                        "WHERE data_class = 'tax_id' AND kind = 'index' AND version = 1"
                    )
                )


class TestBadInput:
    async def test_the_card_vault_index_key_is_not_rotated_here(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        management: KeyManagement,
    ) -> None:
        before = await key_rows(engine)
        with pytest.raises(KeysInTheVault):
            async with unit_of_work(sessions) as session:
                await management.rotate_index(session, DataClass.CARD_VAULT, actor=OPERATOR)
        assert await key_rows(engine) == before

    async def test_an_index_whose_value_does_not_decrypt_is_left_and_keeps_its_version(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
        management: KeyManagement,
    ) -> None:
        keyring = management.keyring
        await store(sessions, keyring, "a", SSN)
        await store(sessions, keyring, "b", "987-65-4321")
        await store(sessions, keyring, "c", "555-55-5555")
        async with engine.begin() as conn:
            # Someone moves a's sealed tax id onto b, and blanks c's while keeping its index.
            await conn.execute(
                text(
                    f"UPDATE {TABLE} SET tax_id = (SELECT tax_id FROM {TABLE} WHERE id = 'a') "  # noqa: S608
                    "WHERE id = 'b'"
                )
            )
            await conn.execute(text(f"UPDATE {TABLE} SET tax_id = NULL WHERE id = 'c'"))  # noqa: S608
        await rotate_and_activate(management, sessions, clock)
        run = await reindex_class(management, sessions, TAX, actor=OPERATOR)
        assert (run.rewrapped, run.unreadable) == (1, 2)
        assert await index_versions(engine) == Counter({"v2": 1, "v1": 2})
        clock.advance(ns=management.policy.retire_grace_ns)
        async with unit_of_work(sessions) as session:
            assert await management.retire_unused_index(session, TAX, actor=OPERATOR) == []
        # The copied ciphertext did not give b a's tax id.
        assert await holders(sessions, keyring, "987654321") == ["b"]

    async def test_index_bytes_that_are_no_index_are_recomputed(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        management: KeyManagement,
    ) -> None:
        await store(sessions, management.keyring, "a", SSN)
        async with engine.begin() as conn:
            await conn.execute(text(f"UPDATE {TABLE} SET tax_id_index = :v"), {"v": b"junk"})  # noqa: S608
        assert await holders(sessions, management.keyring, SSN) == []
        run = await reindex_class(management, sessions, TAX, actor=OPERATOR)
        assert (run.rewrapped, run.unreadable) == (1, 0)
        assert await holders(sessions, management.keyring, SSN) == ["a"]


async def key_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM crypto_key_version ORDER BY 1, 2, 3"))
        return [tuple(r) for r in rows.all()]


class TestFundsBankAccountIndex:
    """The one catalogued index column of this release: bank account numbers (funds)."""

    async def test_bank_accounts_are_found_mid_rotation_and_reindexed_as_funds_indexes_them(
        self, settings: Settings, engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        number = "000123456789"
        async with running_api(settings, engine, clock) as api:
            identity: IdentityServices = api.app.state.identity
            funds = funds_of(api)
            management = identity.key_management
            keyring = management.keyring
            users = []
            for name in ("banka", "bankb"):
                async with identity.unit_of_work() as session:
                    made = await identity.accounts.create_user(
                        session,
                        username=name,
                        email=f"{name}@example.org",
                        password=f"Tr0ub4dor&3 horse staple {len(users)} battery",
                        role=Role.TRADER,
                    )
                users.append(made.id)

            async def add(user_id: str) -> str:
                async with identity.unit_of_work() as session:
                    row = await funds.banks.add(
                        session,
                        user_id=user_id,
                        routing_number=ROUTING,
                        account_number=number,
                        account_type="checking",
                        nickname="main",
                        actor=Party("user", user_id),
                    )
                    return row.id

            async def holders() -> list[str]:
                async with identity.sessions() as session:
                    found = await session.scalars(
                        select(BankAccount.user_id).where(
                            blind_index_matches(
                                BankAccount.account_index,
                                keyring,
                                DataClass.BANK_DETAILS,
                                # Leading zeros dropped, as funds indexes it.
                                f"{ROUTING}:{number.lstrip('0')}",
                                str,
                            )
                        )
                    )
                    return sorted(found)

            await add(users[0])
            async with unit_of_work(identity.sessions) as session:
                await management.rotate_index(session, DataClass.BANK_DETAILS, actor=OPERATOR)
            clock.advance(ns=management.policy.activation_delay_ns)
            async with identity.sessions() as session:
                await keyring.refresh(session)
            await add(users[1])
            # The same account on two customers, under two index versions: found as one.
            assert await holders() == sorted(users)

            run = await reindex_class(
                management, identity.sessions, DataClass.BANK_DETAILS, actor=OPERATOR
            )
            assert (run.finished, run.rewrapped, run.unreadable) == (True, 1, 0)
            # Recomputed from the sealed number and the routing number, the index is the one
            # funds computes: its own duplicate check (exact equality) finds the account.
            with pytest.raises(FundsConflict, match="already on your profile"):
                await add(users[0])
            clock.advance(ns=management.policy.retire_grace_ns)
            async with unit_of_work(identity.sessions) as session:
                retired = await management.retire_unused_index(
                    session, DataClass.BANK_DETAILS, actor=OPERATOR
                )
            assert retired == [1]
            assert await holders() == sorted(users)
