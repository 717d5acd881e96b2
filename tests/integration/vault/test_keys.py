"""The card vault's key management on its own database (SQLite and PostgreSQL): the key
table's guard, the re-wrap of every vault key under a new key-encrypting key (killed
half-way and resumed), the scheduled rotation, rewrap of stored PANs and retirement, each
step in the vault's access log."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import _drop_schema, _postgres_engine
from tests.support.api import TEST_ARGON2
from tests.support.cards import AMEX, MASTERCARD, TEST_PANS, VISA
from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, FrozenClock
from tradeguard.core.errors import ConfigurationError
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.keyring import DATA, DecryptionFailed, Keyring, UnknownKek
from tradeguard.crypto.providers import LocalFileKek
from tradeguard.crypto.service import (
    NS_PER_DAY,
    KeyEvent,
    KeyManagement,
    KeysElsewhere,
    KeysInTheVault,
)
from tradeguard.crypto.tasks import (
    VAULT_COMPONENT,
    KeyringWorker,
    key_policy_from,
    rewrap_class,
    rotate_master_key,
    vault_key_policy_from,
)
from tradeguard.db.engine import create_engine
from tradeguard.ledger.domain import Party
from tradeguard.vault import repository
from tradeguard.vault.domain import VaultRole
from tradeguard.vault.migrate import upgrade as upgrade_vault
from tradeguard.vault.server import create_vault_app
from tradeguard.vault.store import CARD_CLASS, CardVaultStore, VaultCaller, VaultNotMigrated
from tradeguard.web.app import create_app

OPERATOR = Party("operator", "test")
APP = VaultCaller(VaultRole.APP, "user:alice")
PAYMENT = VaultCaller(VaultRole.PAYMENT, "service:payments")
REFUSED = (DBAPIError, IntegrityError)
# What a rotation, its rewrap and the retirement that follows record, each.
ROTATION_EVENTS = (
    KeyEvent.KEY_ROTATED,
    KeyEvent.USAGE_COUNTED,
    KeyEvent.REWRAP_STARTED,
    KeyEvent.REWRAP_FINISHED,
    KeyEvent.KEY_RETIRED,
)


async def tokenize_all(store: CardVaultStore, pans: list[str]) -> dict[str, str]:
    """token -> PAN for each card stored."""
    stored = {}
    for pan in pans:
        card = await store.tokenize(APP, pan=pan, expiry_month=12, expiry_year=2030)
        stored[card.token] = pan
    return stored


async def revealed(store: CardVaultStore, tokens: dict[str, str]) -> dict[str, str]:
    return {token: (await store.detokenize(PAYMENT, token)).pan for token in tokens}


async def key_rows(engine: AsyncEngine) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT kind, version, state, kek_id, wrapped_key FROM crypto_key_version "
                "ORDER BY kind, version"
            )
        )
        return [tuple(row) for row in rows.all()]


async def key_events(store: CardVaultStore) -> list[tuple[str, str, str, dict[str, object]]]:
    """The vault's access-log rows of key operations: (operation, role, party, detail)."""
    async with store.unit_of_work() as session:
        log = await repository.access_log(session, limit=10_000)
    return [
        (row.operation, row.role, row.on_behalf_of, json.loads(row.detail or "{}"))
        for row in log
        if row.outcome == "done"
    ]


async def pan_versions(engine: AsyncEngine) -> dict[int, int]:
    async with engine.connect() as conn:
        blobs = (await conn.execute(text("SELECT pan_enc FROM vault_card"))).scalars().all()
    counts: dict[int, int] = {}
    for blob in blobs:
        version = int.from_bytes(bytes(blob)[3:7], "big")
        counts[version] = counts.get(version, 0) + 1
    return counts


def reopened(store: CardVaultStore, provider: LocalFileKek, *also: LocalFileKek) -> CardVaultStore:
    """Another process on the same vault database, given these key-encrypting keys only."""
    return CardVaultStore.open_with(
        engine=store.engine, provider=provider, clock=store.clock, ids=store.ids, also=also
    )


async def rotated_and_active(store: CardVaultStore, clock: FrozenClock) -> int:
    """Rotate the data key and let the new version activate (and its grace pass)."""
    async with store.unit_of_work() as session:
        made = await store.keys.rotate(session, CARD_CLASS, actor=OPERATOR)
    clock.advance(ns=store.keys.policy.activation_delay_ns + store.keys.policy.retire_grace_ns)
    await store.refresh_keys()
    return made.version


@pytest.fixture
def vault_kek(store: CardVaultStore) -> LocalFileKek:
    provider = store.keyring.provider
    assert isinstance(provider, LocalFileKek)
    return provider


class TestVaultKeyTableGuard:
    async def test_a_key_row_takes_a_rewrap_to_another_kek_and_nothing_more(
        self, store: CardVaultStore, vault_engine: AsyncEngine
    ) -> None:
        async with vault_engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE crypto_key_version SET wrapped_key = :w, kek_id = 'local:other' "
                    "WHERE kind = 'data' AND version = 1"
                ),
                {"w": os.urandom(60)},
            )
            # Retiring and counting usage stay allowed.
            await conn.execute(
                text(
                    "UPDATE crypto_key_version SET usage_count = 3, usage_counted_ns = 1 "
                    "WHERE kind = 'data' AND version = 1"
                )
            )
        for statement in (
            # The same KEK id: a swap, not a re-wrap.
            "UPDATE crypto_key_version SET wrapped_key = :w WHERE kind = 'data' AND version = 1",
            # A re-wrap that also moves the version's times, or its number.
            "UPDATE crypto_key_version SET kek_id = 'local:x', activates_ns = 1 "
            "WHERE kind = 'data' AND version = 1",
            "UPDATE crypto_key_version SET kek_id = 'local:x', version = 9 "
            "WHERE kind = 'data' AND version = 1",
            # A re-wrap that also retires (or a state that is not `retired`).
            "UPDATE crypto_key_version SET kek_id = 'local:x', state = 'retired' "
            "WHERE kind = 'data' AND version = 1",
            "UPDATE crypto_key_version SET state = 'pending' WHERE kind = 'data' AND version = 1",
            # Key history is never deleted.
            "DELETE FROM crypto_key_version",
        ):
            with pytest.raises(REFUSED, match="only ever retired or re-wrapped"):
                async with vault_engine.begin() as conn:
                    await conn.execute(text(statement), {"w": os.urandom(60)})
        assert len(await key_rows(vault_engine)) == 2

    async def test_a_retired_key_row_is_never_made_active_again(
        self, store: CardVaultStore, vault_engine: AsyncEngine
    ) -> None:
        async with vault_engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE crypto_key_version SET state = 'retired', retired_ns = 5 "
                    "WHERE kind = 'data' AND version = 1"
                )
            )
        with pytest.raises(REFUSED, match="only ever retired or re-wrapped"):
            async with vault_engine.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE crypto_key_version SET state = 'active', retired_ns = NULL "
                        "WHERE kind = 'data' AND version = 1"
                    )
                )

    async def test_a_card_row_takes_a_new_sealed_pan_and_nothing_more(
        self, store: CardVaultStore, vault_engine: AsyncEngine
    ) -> None:
        [token] = await tokenize_all(store, [VISA])
        async with vault_engine.begin() as conn:
            await conn.execute(
                text("UPDATE vault_card SET pan_enc = :p WHERE token = :t"),
                {"p": os.urandom(48), "t": token},
            )
        for statement in (
            "UPDATE vault_card SET last4 = '0000'",
            "UPDATE vault_card SET token = 'tok_other'",
            "UPDATE vault_card SET fingerprint = :p",
            "UPDATE vault_card SET pan_enc = :p, brand = 'amex'",
            "UPDATE vault_card SET created_by = 'user:mallory'",
        ):
            with pytest.raises(REFUSED, match="change only by re-encryption of the PAN"):
                async with vault_engine.begin() as conn:
                    await conn.execute(text(statement), {"p": os.urandom(32)})
        # The access log stays append-only.
        for statement in (
            "UPDATE vault_access_log SET outcome = 'x'",
            "DELETE FROM vault_access_log",
        ):
            with pytest.raises(REFUSED):
                async with vault_engine.begin() as conn:
                    await conn.execute(text(statement))
        # Forgetting a card is still a delete.
        assert await store.forget(APP, token)

    async def test_the_vault_key_service_refuses_the_platforms_classes(
        self, store: CardVaultStore
    ) -> None:
        async with store.unit_of_work() as session:
            with pytest.raises(KeysElsewhere, match="platform's database"):
                await store.keys.rotate(session, DataClass.TAX_ID, actor=OPERATOR)
        assert [e for e in await key_events(store) if e[0] == KeyEvent.KEY_ROTATED] == []


class TestSchema:
    async def test_a_vault_database_behind_the_code_is_refused_at_start(
        self, db_backend: str, tmp_path: Path, clock: FrozenClock
    ) -> None:
        if db_backend == "sqlite":
            engine, schema = create_engine(f"sqlite:///{tmp_path / 'old-vault.db'}"), None
        else:
            engine, schema = await _postgres_engine()
        try:
            await upgrade_vault(engine, "v0001_vault")
            old = CardVaultStore.open_with(
                engine=engine,
                provider=LocalFileKek(os.urandom(32)),
                clock=clock,
                ids=IdGenerator(clock),
            )
            with pytest.raises(VaultNotMigrated, match="run `tradeguard vault upgrade` first"):
                await old.start()
            assert not old.keyring.loaded
            assert await key_rows(engine) == []
        finally:
            await engine.dispose()
            if schema is not None:
                await _drop_schema(schema)


class TestRotateMaster:
    async def test_every_card_detokenizes_after_the_move_with_the_new_kek_only(
        self, store: CardVaultStore, vault_engine: AsyncEngine, vault_kek: LocalFileKek
    ) -> None:
        cards = await tokenize_all(store, [VISA, MASTERCARD, AMEX])
        new = LocalFileKek(os.urandom(32))

        run = await rotate_master_key(store.keys, store.sessions, new, actor=OPERATOR)

        assert run.finished
        assert (run.pending, run.rewrapped) == (2, 2)
        rows = await key_rows(vault_engine)
        assert {row[3] for row in rows} == {new.kek_id}
        # Only the wrapping changed: the PANs are the bytes they were.
        fresh = reopened(store, new)
        await fresh.refresh_keys()
        assert await revealed(fresh, cards) == cards
        assert fresh.fingerprint(VISA) == store.fingerprint(VISA)
        # The old KEK alone opens nothing now, and says which KEK it needs.
        with pytest.raises(UnknownKek, match=f"wrapped under {new.kek_id}"):
            await reopened(store, vault_kek).refresh_keys()
        events = await key_events(store)
        moved = [e for e in events if e[0] == KeyEvent.KEY_REWRAPPED]
        assert sorted((e[3]["kind"], e[3]["version"]) for e in moved) == [("data", 1), ("index", 1)]
        assert all(e[1:3] == ("operator", "operator:test") for e in moved)
        assert all(
            e[3]["from_kek_id"] == vault_kek.kek_id and e[3]["to_kek_id"] == new.kek_id
            for e in moved
        )
        assert [e[0] for e in events].count(KeyEvent.MASTER_ROTATED) == 1
        started = next(e for e in events if e[0] == KeyEvent.MASTER_ROTATION_STARTED)
        # The vault stores no platform pepper.
        assert started[3]["peppers_stored"] == 0
        # No key material in the log: nothing but ids and numbers.
        wrapped = [bytes(row[4]) for row in rows]  # type: ignore[arg-type]
        async with vault_engine.connect() as conn:
            log_text = " ".join(
                str(v)
                for row in (await conn.execute(text("SELECT * FROM vault_access_log"))).all()
                for v in row
            )
        assert not any(w.hex() in log_text for w in wrapped)

    async def test_killed_half_way_every_card_reads_and_a_rerun_finishes(
        self,
        store: CardVaultStore,
        vault_engine: AsyncEngine,
        vault_kek: LocalFileKek,
        clock: FrozenClock,
    ) -> None:
        cards = await tokenize_all(store, [VISA, MASTERCARD])
        await rotated_and_active(store, clock)
        cards |= await tokenize_all(store, [AMEX])
        new = LocalFileKek(os.urandom(32))

        class Killed(Exception):
            pass

        def kill_after_first(_: str) -> None:
            raise Killed

        interrupted = reopened(store, vault_kek, new)
        await interrupted.refresh_keys()
        with pytest.raises(Killed):
            await rotate_master_key(
                interrupted.keys, interrupted.sessions, new, actor=OPERATOR, on_key=kill_after_first
            )
        assert sorted(str(row[3]) for row in await key_rows(vault_engine)) == sorted(
            [new.kek_id, vault_kek.kek_id, vault_kek.kek_id]
        )
        # Half-way, a vault given both KEKs reads every card.
        both = reopened(store, vault_kek, new)
        await both.refresh_keys()
        assert await revealed(both, cards) == cards

        rerun = reopened(store, vault_kek, new)
        await rerun.refresh_keys()
        run = await rotate_master_key(rerun.keys, rerun.sessions, new, actor=OPERATOR)

        assert run.finished
        assert (run.pending, run.rewrapped) == (2, 2)
        only_new = reopened(store, new)
        await only_new.refresh_keys()
        assert await revealed(only_new, cards) == cards
        events = [e[0] for e in await key_events(store)]
        # Each of the three keys moved once, whichever run moved it.
        assert events.count(KeyEvent.KEY_REWRAPPED) == 3
        assert events.count(KeyEvent.MASTER_ROTATION_STARTED) == 2
        assert events.count(KeyEvent.MASTER_ROTATED) == 1

    async def test_a_second_run_to_the_same_kek_moves_nothing_and_changes_nothing(
        self, store: CardVaultStore, vault_engine: AsyncEngine, vault_kek: LocalFileKek
    ) -> None:
        cards = await tokenize_all(store, [VISA])
        new = LocalFileKek(os.urandom(32))
        await rotate_master_key(store.keys, store.sessions, new, actor=OPERATOR)
        before = await key_rows(vault_engine)

        again = reopened(store, new, vault_kek)
        await again.refresh_keys()
        run = await rotate_master_key(again.keys, again.sessions, new, actor=OPERATOR)

        assert run.finished
        assert (run.pending, run.rewrapped) == (0, 0)
        assert await key_rows(vault_engine) == before
        assert await revealed(again, cards) == cards

    async def test_a_wrong_kek_is_refused_before_anything_changes(
        self, store: CardVaultStore, vault_engine: AsyncEngine
    ) -> None:
        before = await key_rows(vault_engine)
        events = await key_events(store)
        wrong = reopened(store, LocalFileKek(os.urandom(32)))
        with pytest.raises(UnknownKek):
            await wrong.refresh_keys()
        with pytest.raises(UnknownKek, match="which was not given"):
            await rotate_master_key(
                wrong.keys, wrong.sessions, LocalFileKek(os.urandom(32)), actor=OPERATOR
            )
        assert await key_rows(vault_engine) == before
        assert await key_events(store) == events


class TestScheduledRotation:
    @pytest.mark.spec("PCI-4")
    async def test_the_vault_data_key_rotates_when_its_90_days_end_and_not_before(
        self, store: CardVaultStore, vault_engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        worker = KeyringWorker(
            store.keys, store.sessions, rotation_check_seconds=0, component=VAULT_COMPONENT
        )
        assert await worker.run_once() == []
        clock.advance(ns=90 * NS_PER_DAY - NS_PER_SECOND)
        assert await worker.run_once() == []
        clock.advance(seconds=1)

        [made] = await worker.run_once()

        assert (made.data_class, made.kind, made.version) == (CARD_CLASS, DATA, 2)
        assert made.activates_ns == clock.now_ns() + store.keys.policy.activation_delay_ns
        # Rotated once: the next check finds the new version young.
        assert await worker.run_once() == []
        [rotated] = [e for e in await key_events(store) if e[0] == KeyEvent.KEY_ROTATED]
        assert rotated[1:3] == ("system", "system:tradeguard")
        assert rotated[3]["reason"] == "scheduled"
        # Cards stored before still read; new ones seal under v2 once it activates.
        cards = await tokenize_all(store, [VISA])
        clock.advance(ns=store.keys.policy.activation_delay_ns)
        await store.refresh_keys()
        cards |= await tokenize_all(store, [MASTERCARD])
        assert await pan_versions(vault_engine) == {1: 1, 2: 1}
        assert await revealed(store, cards) == cards

    async def test_the_cryptoperiod_is_a_setting_of_the_vault(
        self, store: CardVaultStore, clock: FrozenClock, tmp_path: Path
    ) -> None:
        settings = Settings(data_dir=tmp_path, vault_key_rotation_days=30, _env_file=None)  # type: ignore[call-arg]
        store.keys.policy = vault_key_policy_from(settings)
        worker = KeyringWorker(store.keys, store.sessions, rotation_check_seconds=0)
        clock.advance(ns=30 * NS_PER_DAY - 1)
        assert await worker.run_once() == []
        clock.advance(ns=1)
        assert [m.version for m in await worker.run_once()] == [2]
        # The platform's per-class setting does not silently take the vault's class.
        with pytest.raises(ConfigurationError, match="TRADEGUARD_VAULT_KEY_ROTATION_DAYS"):
            key_policy_from(
                Settings(  # type: ignore[call-arg]
                    data_dir=tmp_path,
                    key_rotation_days_by_class={"card_vault": 30},
                    _env_file=None,
                )
            )

    async def test_the_vault_server_checks_the_rotation_while_it_serves(
        self, store: CardVaultStore, clock: FrozenClock
    ) -> None:
        clock.advance(ns=91 * NS_PER_DAY)
        app = create_vault_app(store)
        async with app.router.lifespan_context(app):
            for _ in range(200):
                async with store.sessions() as session:
                    latest = await store.keys.keyring.refresh(session)
                if 2 in latest.versions.get(CARD_CLASS, {}):
                    break
                await asyncio.sleep(0.05)
        assert 2 in latest.versions[CARD_CLASS]
        assert [
            e[3]["reason"] for e in await key_events(store) if e[0] == KeyEvent.KEY_ROTATED
        ] == ["scheduled"]

    @pytest.mark.spec("PCI-4")
    async def test_the_server_with_the_vault_in_process_rotates_its_key_when_due(
        self,
        store: CardVaultStore,
        vault_engine: AsyncEngine,
        engine: AsyncEngine,
        settings: Settings,
        clock: FrozenClock,
    ) -> None:
        # The vault's key made 91 days ago (by the fixture's store, on this vault database).
        clock.advance(ns=91 * NS_PER_DAY)
        app = create_app(
            settings.model_copy(update={"market_simulator": False, "surveillance_enabled": False}),
            clock=clock,
            engine=engine,
            argon2=TEST_ARGON2,
            run_workers=True,
            vault_engine=vault_engine,
        )
        async with app.router.lifespan_context(app):
            assert [t for t in asyncio.all_tasks() if t.get_name() == "vault-keyring"]
            for _ in range(200):
                if len(await key_rows(vault_engine)) == 3:
                    break
                await asyncio.sleep(0.05)
        assert [(row[0], row[1]) for row in await key_rows(vault_engine)] == [
            ("data", 1),
            ("data", 2),
            ("index", 1),
        ]
        [rotated] = [e for e in await key_events(store) if e[0] == KeyEvent.KEY_ROTATED]
        assert rotated[1:] == ("system", "system:tradeguard", {**rotated[3], "reason": "scheduled"})

    async def test_the_platform_key_service_still_refuses_the_vaults_class(
        self, store: CardVaultStore
    ) -> None:
        platform = KeyManagement(
            Keyring(LocalFileKek(os.urandom(32)), clock=store.clock), ledger=store.keys.ledger
        )
        async with store.unit_of_work() as session:
            with pytest.raises(KeysInTheVault, match="vault rotate-key"):
                await platform.rotate(session, CARD_CLASS, actor=OPERATOR)


class TestRewrapAndRetire:
    @pytest.mark.spec("PCI-4")
    async def test_rotate_rewrap_retire_and_every_card_still_reads(
        self, store: CardVaultStore, vault_engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        pans = list(TEST_PANS)[:6]
        cards = await tokenize_all(store, pans[:5])
        assert await rotated_and_active(store, clock) == 2
        cards |= await tokenize_all(store, pans[5:])
        async with store.unit_of_work() as session:
            assert await store.keys.count_usage(session, CARD_CLASS, actor=OPERATOR) == {1: 5, 2: 1}
            # v1 is still in use: it does not retire.
            assert await store.keys.retire_unused(session, CARD_CLASS, actor=OPERATOR) == []

        run = await rewrap_class(
            store.keys, store.sessions, CARD_CLASS, actor=OPERATOR, batch_size=2
        )

        assert (run.rewrapped, run.unreadable, run.finished) == (5, 0, True)
        assert await pan_versions(vault_engine) == {2: 6}
        async with store.unit_of_work() as session:
            assert await store.keys.retire_unused(session, CARD_CLASS, actor=OPERATOR) == [1]
        assert await revealed(store, cards) == cards
        async with store.unit_of_work() as session:
            status = {
                (s.kind, s.version): (s.state, s.usage_count)
                for s in await store.keys.status(session)
            }
        assert status == {
            ("data", 1): ("retired", 0),
            ("data", 2): ("encrypting", 6),
            ("index", 1): ("indexing", None),
        }
        assert set(ROTATION_EVENTS) <= {e[0] for e in await key_events(store)}

    async def test_a_retired_version_never_encrypts_or_decrypts_again(
        self, store: CardVaultStore, vault_engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        [old_token] = await tokenize_all(store, [VISA])
        async with vault_engine.connect() as conn:
            sealed_v1 = bytes(
                (await conn.execute(text("SELECT pan_enc FROM vault_card"))).scalar_one()
            )
        v2_activates = clock.now_ns() + store.keys.policy.activation_delay_ns
        await rotated_and_active(store, clock)
        await rewrap_class(store.keys, store.sessions, CARD_CLASS, actor=OPERATOR)
        async with store.unit_of_work() as session:
            assert await store.keys.retire_unused(session, CARD_CLASS, actor=OPERATOR) == [1]
        keyset = store.keyring.keyset

        # At any time, before v2 activated or long after, the encrypting key is never v1.
        for at in (v2_activates - 10 * NS_PER_DAY, v2_activates - 1, v2_activates, clock.now_ns()):
            chosen = keyset.encrypting(CARD_CLASS, at)
            assert chosen is None or chosen.version == 2
        cards = await tokenize_all(store, [MASTERCARD, AMEX])
        assert await pan_versions(vault_engine) == {2: 3}
        # A PAN sealed under v1 put back (from a copy kept elsewhere) no longer opens.
        await store.forget(APP, old_token)
        async with vault_engine.begin() as conn:
            row = (
                (
                    await conn.execute(
                        text("SELECT * FROM vault_card WHERE token = :t"), {"t": next(iter(cards))}
                    )
                )
                .mappings()
                .one()
            )
            await conn.execute(
                text(
                    "INSERT INTO vault_card (token, pan_enc, fingerprint, brand, last4, "
                    "expiry_month, expiry_year, created_ns, created_by, created_role) VALUES "
                    "(:token, :pan, :fingerprint, 'visa', '1111', 12, 2030, 1, 'user:x', 'app')"
                ),
                {"token": old_token, "pan": sealed_v1, "fingerprint": bytes(row["fingerprint"])},
            )
        with pytest.raises(DecryptionFailed, match="retired key card_vault v1"):
            await store.detokenize(PAYMENT, old_token)
        # And the key row cannot be made active again (the guard above, on this database).
        with pytest.raises(REFUSED):
            async with vault_engine.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE crypto_key_version SET state = 'active', retired_ns = NULL "
                        "WHERE kind = 'data' AND version = 1"
                    )
                )

    async def test_a_rewrap_stopped_half_way_resumes_where_it_stopped(
        self, store: CardVaultStore, vault_engine: AsyncEngine, clock: FrozenClock
    ) -> None:
        cards = await tokenize_all(store, list(TEST_PANS)[:7])
        await rotated_and_active(store, clock)

        first = await rewrap_class(
            store.keys, store.sessions, CARD_CLASS, actor=OPERATOR, batch_size=3, max_batches=1
        )

        assert (first.rewrapped, first.finished) == (3, False)
        assert await pan_versions(vault_engine) == {1: 4, 2: 3}
        assert await revealed(store, cards) == cards
        rest = await rewrap_class(
            store.keys, store.sessions, CARD_CLASS, actor=OPERATOR, batch_size=3
        )
        assert (rest.rewrapped, rest.finished) == (4, True)
        assert await pan_versions(vault_engine) == {2: 7}
        assert await revealed(store, cards) == cards
        events = [e[0] for e in await key_events(store)]
        assert events.count(KeyEvent.REWRAP_STARTED) == 1
        assert events.count(KeyEvent.REWRAP_RESUMED) == 1
        assert events.count(KeyEvent.REWRAP_FINISHED) == 1
