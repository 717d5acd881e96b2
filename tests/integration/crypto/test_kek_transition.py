"""The keyring across a change of key-encrypting key, with local master keys only (no KMS
peer needed): rows unwrap under the KEK they name, a running keyring keeps keys whose rows
moved to a KEK it was not given, peppers come from the stored secret once there is one, and
the database allows exactly one new change of a key row (a re-wrap to another KEK)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.envelope import FieldBinding
from tradeguard.crypto.keyring import Keyring, KeyringNotLoaded, UnknownKek
from tradeguard.crypto.peppers import COUNTER_KEY_PEPPER, PEPPER_PURPOSES
from tradeguard.crypto.providers import LocalFileKek
from tradeguard.crypto.service import KeyManagement
from tradeguard.crypto.tasks import rotate_master_key
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party
from tradeguard.ledger.service import Ledger

OPERATOR = Party(kind="operator", id="test")
BINDING = FieldBinding("tax_id", "customers", "tax_id_enc", b"customer-9")


async def started(
    provider: LocalFileKek, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> KeyManagement:
    management = KeyManagement(
        Keyring(provider, clock=clock), ledger=Ledger(clock=clock, ids=IdGenerator(clock))
    )
    async with unit_of_work(sessions) as session:
        await management.ensure_keys(session)
    async with sessions() as session:
        await management.keyring.refresh(session)
    return management


class TestKekTransition:
    async def test_local_to_local_keeps_values_and_peppers_and_names_unknown_keks(
        self, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
    ) -> None:
        old, new = LocalFileKek(os.urandom(32)), LocalFileKek(os.urandom(32))
        management = await started(old, sessions, clock)
        running = await started(old, sessions, clock)  # another process, already started
        sealed = management.keyring.seal(b"111-22-3333", BINDING, DataClass.TAX_ID)
        peppers = {p: management.keyring.derive_secret(p) for p in PEPPER_PURPOSES}

        run = await rotate_master_key(management, sessions, new, actor=OPERATOR)

        assert run.finished
        # A process with the new key only: everything, peppers from the stored secrets (the
        # new master key would derive others).
        fresh = Keyring(new, clock=clock)
        async with sessions() as session:
            await fresh.refresh(session)
        assert fresh.open(sealed, BINDING, DataClass.TAX_ID) == b"111-22-3333"
        assert {p: fresh.derive_secret(p) for p in PEPPER_PURPOSES} == peppers
        assert new.legacy.derive_secret(COUNTER_KEY_PEPPER) != peppers[COUNTER_KEY_PEPPER]
        # A process that started before, with the old key only, keeps reading.
        async with sessions() as session:
            await running.keyring.refresh(session)
        assert running.keyring.open(sealed, BINDING, DataClass.TAX_ID) == b"111-22-3333"
        # A process started now with the old key only: refused, naming what to give it.
        stale = Keyring(old, clock=clock)
        async with sessions() as session:
            with pytest.raises(UnknownKek, match=r"wrapped under local:[0-9a-f]+, which this"):
                await stale.refresh(session)

    async def test_peppers_need_the_table_read_and_a_listed_purpose(
        self, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock
    ) -> None:
        keyring = Keyring(LocalFileKek(os.urandom(32)), clock=clock)
        with pytest.raises(KeyringNotLoaded):
            keyring.derive_secret(COUNTER_KEY_PEPPER)
        management = await started(LocalFileKek(os.urandom(32)), sessions, clock)
        with pytest.raises(ValueError, match="not a pepper purpose"):
            management.keyring.derive_secret("somewhere.new")

    async def test_the_database_allows_a_rewrap_to_another_kek_and_nothing_more(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        clock: FrozenClock,
    ) -> None:
        await started(LocalFileKek(os.urandom(32)), sessions, clock)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE crypto_key_version SET wrapped_key = wrapped_key || wrapped_key, "
                    "kek_id = 'local:other' "
                    "WHERE data_class = 'tax_id' AND kind = 'data' AND version = 1"
                )
            )
        for statement in (
            # The same KEK id: a swap, not a re-wrap.
            "UPDATE crypto_key_version SET wrapped_key = wrapped_key || wrapped_key "
            "WHERE data_class = 'tax_id' AND kind = 'data' AND version = 1",
            # A re-wrap that also moves the version's times.
            "UPDATE crypto_key_version SET kek_id = 'local:third', activates_ns = 1 "
            "WHERE data_class = 'tax_id' AND kind = 'data' AND version = 1",
            # A legacy row (no wrapped key) cannot gain one.
            "UPDATE crypto_key_version SET kek_id = 'local:x', wrapped_key = (SELECT "
            "k.wrapped_key FROM crypto_key_version k WHERE k.kind = 'index' LIMIT 1) "
            "WHERE kind = 'legacy'",
        ):
            with pytest.raises(DBAPIError, match="only ever retired or re-wrapped"):
                async with engine.begin() as conn:
                    await conn.execute(text(statement))
