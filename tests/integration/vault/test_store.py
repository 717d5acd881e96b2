"""The vault store on its own database (SQLite and PostgreSQL): tokens, fingerprints,
sealed PANs bound to their token, roles, the vault's access log, its own migrations."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.cards import AMEX, AMEX_CVV, CVV, MASTERCARD, TEST_PANS, VISA
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import DecryptionFailed
from tradeguard.vault import domain, repository
from tradeguard.vault.container import open_store
from tradeguard.vault.domain import (
    CardBrand,
    InvalidCardNumber,
    InvalidCardSecret,
    TokenFormat,
    TokenNotFound,
    VaultAccessDenied,
    VaultRole,
    luhn_valid,
)
from tradeguard.vault.migrate import head_revision
from tradeguard.vault.models import VaultCardRow
from tradeguard.vault.store import CardVaultStore, VaultCaller, VaultUnavailable

APP = VaultCaller(VaultRole.APP, "user:alice", "req-1")
PAYMENT = VaultCaller(VaultRole.PAYMENT, "service:payments", "req-2")


async def tokenize(
    store: CardVaultStore, pan: str = VISA, token_format: TokenFormat | None = None
) -> str:
    card = await store.tokenize(
        APP, pan=pan, expiry_month=12, expiry_year=2030, token_format=token_format
    )
    return card.token


class TestTokenize:
    @pytest.mark.spec("PCI-2")
    async def test_a_card_is_stored_sealed_and_only_the_payment_role_reads_it_back(
        self, store: CardVaultStore, vault_engine: AsyncEngine
    ) -> None:
        card = await store.tokenize(APP, pan="4111 1111 1111 1111", expiry_month=12, expiry_year=30)
        assert (card.brand, card.last4, card.expiry.year) == (CardBrand.VISA, "1111", 2030)
        async with vault_engine.connect() as conn:
            stored = (await conn.execute(text("SELECT pan_enc FROM vault_card"))).scalar_one()
        assert VISA.encode() not in bytes(stored)
        revealed = await store.detokenize(PAYMENT, card.token)
        assert revealed.pan == VISA
        assert revealed.expiry.month == 12

    @pytest.mark.spec("PCI-2")
    async def test_every_test_pan_round_trips_in_every_token_format(
        self, store: CardVaultStore
    ) -> None:
        for pan in TEST_PANS:
            for token_format in TokenFormat:
                token = await tokenize(store, pan, token_format)
                assert token != pan
                if token_format is not TokenFormat.OPAQUE:
                    assert luhn_valid(token)
                    assert token[-4:] == pan[-4:]
                assert (await store.detokenize(PAYMENT, token)).pan == pan

    @pytest.mark.spec("PCI-2")
    async def test_the_same_card_gets_a_new_token_each_time_and_the_same_fingerprint(
        self, store: CardVaultStore
    ) -> None:
        first = await store.tokenize(APP, pan=VISA, expiry_month=1, expiry_year=2030)
        again = await store.tokenize(
            APP, pan="4111-1111-1111-1111", expiry_month=2, expiry_year=2031
        )
        other = await store.tokenize(APP, pan=MASTERCARD, expiry_month=1, expiry_year=2030)
        assert first.token != again.token
        assert first.fingerprint == again.fingerprint
        assert other.fingerprint != first.fingerprint
        # The fingerprint is keyed: not a plain hash anyone could compute from the PAN.
        assert first.fingerprint != hashlib.sha256(VISA.encode()).hexdigest()
        assert set(await store.duplicates(APP, VISA)) == {first.token, again.token}
        described = await store.describe(APP, [first.token, other.token, "tok_unknown"])
        assert {c.fingerprint for c in described} == {first.fingerprint, other.fingerprint}

    @pytest.mark.spec("PCI-2")
    async def test_short_format_preserving_tokens_stay_unique_when_draws_collide(
        self, store: CardVaultStore
    ) -> None:
        # A 13-digit Visa keeping its first six and last four leaves 2 free digits (100
        # tokens): collisions are certain, and each is refused and drawn again.
        tokens = [
            await tokenize(store, "4222222222222", TokenFormat.LUHN_SIX_T_FOUR) for _ in range(40)
        ]
        assert len(set(tokens)) == 40

    async def test_a_format_preserving_token_is_never_the_pan_of_a_stored_card(
        self,
        vault_engine: AsyncEngine,
        tmp_path: Path,
        clock: FrozenClock,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # The table-level format (TRADEGUARD_VAULT_TOKEN_FORMAT), and a token space forced
        # small: the first draw is exactly another stored card's number.
        settings = Settings(  # type: ignore[call-arg]
            data_dir=tmp_path, vault_token_format="luhn_six_t_four", _env_file=None
        )
        store = open_store(settings, clock=clock, ids=IdGenerator(clock), engine=vault_engine)
        await store.start()
        try:
            other = next(
                pan
                for pan in (f"42222212{d}2222" for d in range(10))
                if luhn_valid(pan) and pan != "4222222222222"
            )
            stored = await tokenize(store, other, TokenFormat.OPAQUE)
            draws = iter(["120", "340"])
            monkeypatch.setattr(domain, "_random_digits", lambda count: next(draws))
            token = await tokenize(store, "4222222222222")
            assert token != other
            assert token[:8] == "42222234"
            assert token.endswith("2222")
            assert luhn_valid(token)
            # Every draw the PAN of a stored card: refused, nothing stored.
            monkeypatch.setattr(domain, "_random_digits", lambda count: "120")
            with pytest.raises(VaultUnavailable):
                await tokenize(store, "4222222222222")
            async with store.unit_of_work() as session:
                assert await repository.card_count(session) == 2
            assert (await store.detokenize(PAYMENT, stored)).pan == other
        finally:
            await store.close()

    async def test_invalid_cards_are_refused_and_nothing_is_stored(
        self, store: CardVaultStore
    ) -> None:
        for bad in ("4111111111111112", "411111111111", "4111x1111", "1" * 500):
            with pytest.raises(InvalidCardNumber):
                await tokenize(store, bad)
        async with store.unit_of_work() as session:
            assert await repository.card_count(session) == 0


class TestRoles:
    @pytest.mark.spec("PCI-2")
    async def test_the_app_role_may_not_detokenize_and_the_refusal_is_logged(
        self, store: CardVaultStore
    ) -> None:
        token = await tokenize(store)
        with pytest.raises(VaultAccessDenied) as denied:
            await store.detokenize(APP, token)
        assert denied.value.status == 403
        with pytest.raises(VaultAccessDenied):
            await store.authorization_card(APP, token, CVV)
        async with store.unit_of_work() as session:
            # The card operations (the key operations, outcome `done`, come first: key creation).
            log = [r for r in await repository.access_log(session) if r.outcome != "done"]
        assert [(r.operation, r.role, r.outcome, r.token) for r in log] == [
            ("tokenize", "app", "allowed", token),
            ("detokenize", "app", "denied", token),
            ("authorize", "app", "denied", token),
        ]
        assert log[1].on_behalf_of == "user:alice"

    async def test_a_refused_security_code_is_logged_invalid_never_allowed(
        self, store: CardVaultStore
    ) -> None:
        token = await tokenize(store)  # a Visa: three digits
        for bad in ("12", "12a", "1234"):
            with pytest.raises(InvalidCardSecret):
                await store.authorization_card(PAYMENT, token, bad)
        await store.authorization_card(PAYMENT, token, CVV)
        async with store.unit_of_work() as session:
            log = [r for r in await repository.access_log(session) if r.outcome != "done"]
        assert [(r.operation, r.outcome, r.token) for r in log] == [
            ("tokenize", "allowed", token),
            ("authorize", "invalid", token),
            ("authorize", "invalid", token),
            ("authorize", "invalid", token),
            ("authorize", "allowed", token),
        ]

    async def test_a_pan_sent_as_a_token_is_not_written_to_the_access_log(
        self, store: CardVaultStore
    ) -> None:
        with pytest.raises(VaultAccessDenied):
            await store.detokenize(APP, MASTERCARD)
        with pytest.raises(TokenNotFound):
            await store.detokenize(PAYMENT, MASTERCARD)
        async with store.unit_of_work() as session:
            log = await repository.access_log(session)
        assert [r.token for r in log if r.outcome != "done"] == [None, None]

    @pytest.mark.spec("PCI-2")
    async def test_an_authorization_takes_the_security_code_for_the_brand_and_keeps_it_nowhere(
        self, store: CardVaultStore, vault_engine: AsyncEngine
    ) -> None:
        token = await tokenize(store, AMEX)
        with pytest.raises(InvalidCardSecret):
            await store.authorization_card(PAYMENT, token, CVV)  # Amex needs four digits
        prepared = await store.authorization_card(PAYMENT, token, AMEX_CVV)
        assert prepared.secret.value == AMEX_CVV
        assert AMEX_CVV not in repr(prepared)
        assert AMEX not in repr(prepared)
        columns = {
            c["name"]
            for name in ("vault_card", "vault_access_log")
            for c in await _columns(vault_engine, name)
        }
        assert not {c for c in columns if "cvv" in c or "cvc" in c or "secret" in c}

    async def test_forget_removes_the_card_for_good(self, store: CardVaultStore) -> None:
        token = await tokenize(store)
        assert await store.forget(APP, token) is True
        assert await store.forget(APP, token) is False
        with pytest.raises(TokenNotFound):
            await store.detokenize(PAYMENT, token)


async def _columns(engine: AsyncEngine, table: str) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: inspect(c).get_columns(table))


class TestSealing:
    @pytest.mark.spec("PCI-2", "ENC-2")
    async def test_a_sealed_pan_copied_to_another_token_does_not_open(
        self, store: CardVaultStore
    ) -> None:
        token = await tokenize(store)
        async with store.unit_of_work() as session:
            row = await repository.card(session, token)
            assert row is not None
            session.add(
                VaultCardRow(
                    token="tok_" + "a" * 26,
                    pan_enc=row.pan_enc,
                    fingerprint=row.fingerprint,
                    brand=row.brand,
                    last4=row.last4,
                    expiry_month=row.expiry_month,
                    expiry_year=row.expiry_year,
                    created_ns=row.created_ns,
                    created_by="attacker",
                    created_role="app",
                )
            )
        with pytest.raises(DecryptionFailed):
            await store.detokenize(PAYMENT, "tok_" + "a" * 26)

    async def test_card_rows_are_never_updated_and_the_access_log_is_append_only(
        self, store: CardVaultStore, vault_engine: AsyncEngine
    ) -> None:
        await tokenize(store)
        for statement in (
            "UPDATE vault_card SET last4 = '0000'",
            "UPDATE vault_access_log SET outcome = 'allowed'",
            "DELETE FROM vault_access_log",
        ):
            with pytest.raises((DBAPIError, IntegrityError)):
                async with vault_engine.begin() as conn:
                    await conn.execute(text(statement))

    async def test_the_vault_keeps_its_keys_and_its_migrations_to_itself(
        self, store: CardVaultStore, vault_engine: AsyncEngine
    ) -> None:
        async with vault_engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            classes = (
                (await conn.execute(text("SELECT DISTINCT data_class FROM crypto_key_version")))
                .scalars()
                .all()
            )
            version = (
                await conn.execute(text("SELECT version_num FROM vault_alembic_version"))
            ).scalar_one()
        assert {"vault_card", "vault_access_log", "crypto_key_version"} <= tables
        assert "alembic_version" not in tables
        assert "users" not in tables
        assert classes == ["card_vault"]
        assert version == head_revision()


class TestMainDatabase:
    @pytest.mark.spec("PCI-2")
    async def test_the_main_database_has_no_vault_table(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            card_columns = await conn.run_sync(
                lambda c: [col["name"] for col in inspect(c).get_columns("customer_card")]
            )
        assert "vault_card" not in tables
        assert sorted(card_columns) == sorted(
            [
                "id",
                "user_id",
                "token",
                "brand",
                "last4",
                "expiry_month",
                "expiry_year",
                "fingerprint",
                "created_ns",
            ]
        )
        _ = select  # the column list is the contract: no pan, no cvv
