"""A customer's cards through the HTTP API, detokenization by role, and the PCI scan: after
a full flow, no table of either database and no log line holds a test PAN or CVV in clear
(SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api, audit_events, is_problem, running_api
from tests.support.cards import AMEX, AMEX_CVV, CVV, MASTERCARD, VISA
from tests.support.cases import Cases
from tests.support.trading import Trader, signed_in_trader
from tradeguard.access.domain import Role, permissions_for
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.ledger.domain import Party
from tradeguard.vault.cards import CardCaller, CustomerCards
from tradeguard.vault.cards_models import CustomerCardRow
from tradeguard.vault.container import VaultServices
from tradeguard.vault.domain import VaultAccessDenied
from tradeguard.web.logging import JsonFormatter, RedactionFilter

CARDS = "/api/v1/me/cards"


@pytest.fixture
async def api(
    settings: Settings, engine: AsyncEngine, vault_engine: AsyncEngine, clock: FrozenClock
) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock, vault_engine=vault_engine) as running:
        yield running


def vault_of(api: Api) -> VaultServices:
    services: VaultServices = api.app.state.vault
    return services


def cards_of(api: Api) -> CustomerCards:
    return vault_of(api).cards


@pytest.fixture
async def alice(api: Api) -> Trader:
    return await signed_in_trader(api, api.client(), "alice")


def card(pan: str = VISA, month: int = 12, year: int = 2030, **extra: Any) -> dict[str, Any]:
    return {"pan": pan, "expiry_month": month, "expiry_year": year, **extra}


BAD_NUMBERS: list[tuple[str, str]] = [
    ("4111111111111112", "checksum"),
    ("41111111111", "length"),
    ("4111 1111 1111 111O", "not_digits"),
    ("9111111111111110", "unknown_brand"),
]


class TestCustomerCards:
    @pytest.mark.spec("PCI-2")
    async def test_a_customer_adds_lists_and_removes_a_card_seen_masked_only(
        self, api: Api, alice: Trader
    ) -> None:
        added = await alice.post(CARDS, card("4111 1111 1111 1111"))
        assert added.status_code == 201, added.text
        body = added.json()
        assert (body["brand"], body["last4"], body["masked"]) == ("visa", "1111", "***1111")
        assert "token" not in body
        listed = await alice.get(CARDS)
        assert [c["id"] for c in listed.json()] == [body["id"]]
        assert VISA not in listed.text
        assert VISA[:6] not in listed.text
        removed = await alice.delete(f"{CARDS}/{body['id']}")
        assert removed.status_code == 204
        assert (await alice.get(CARDS)).json() == []
        store = vault_of(api).store
        assert store is not None
        async with store.unit_of_work() as session:
            assert (await session.execute(text("SELECT count(*) FROM vault_card"))).scalar() == 0
        events = [e["type"] for e in await audit_events(api)]
        assert "vault:card:added" in events
        assert "vault:card:removed" in events

    @pytest.mark.spec("PCI-2")
    async def test_the_same_card_twice_on_a_profile_is_refused_and_leaves_no_second_pan(
        self, api: Api, alice: Trader
    ) -> None:
        assert (await alice.post(CARDS, card(VISA))).status_code == 201
        again = await alice.post(CARDS, card("4111-1111-1111-1111", month=1, year=2031))
        assert is_problem(again, 409, "card-already-added"), again.text
        store = vault_of(api).store
        assert store is not None
        async with store.unit_of_work() as session:
            assert (await session.execute(text("SELECT count(*) FROM vault_card"))).scalar() == 1

    @pytest.mark.spec("PCI-2")
    async def test_a_bad_number_gets_a_problem_that_does_not_repeat_it(
        self, api: Api, alice: Trader
    ) -> None:
        store = vault_of(api).store
        assert store is not None
        cases = Cases()
        for pan, reason in BAD_NUMBERS:
            response = await alice.post(CARDS, card(pan))
            async with store.unit_of_work() as session:
                stored = (await session.execute(text("SELECT count(*) FROM vault_card"))).scalar()
            with cases.case(reason):
                assert is_problem(response, 422, "card-number-invalid"), response.text
                assert response.json()["reason"] == reason
                assert pan not in response.text
                assert pan.replace(" ", "")[-4:] not in response.text
                assert stored == 0
        cases.check()

    @pytest.mark.spec("PCI-2")
    async def test_oversized_input_and_a_security_code_are_refused_without_echo(
        self, api: Api, alice: Trader
    ) -> None:
        huge = await alice.post(CARDS, card("4" * 5000))
        assert huge.status_code == 422
        assert "4444444444" not in huge.text
        # A security code is for a payment authorization only (PCI DSS 3.3.1), never for
        # storing a card: the field does not exist, and the refusal does not echo it.
        with_cvv = await alice.post(CARDS, card(MASTERCARD, cvv="9753"))
        assert with_cvv.status_code == 422
        assert "9753" not in with_cvv.text
        assert MASTERCARD not in with_cvv.text

    async def test_another_customers_card_cannot_be_removed(self, api: Api, alice: Trader) -> None:
        added = (await alice.post(CARDS, card(VISA))).json()
        bob = await signed_in_trader(api, api.client(), "bob")
        response = await bob.delete(f"{CARDS}/{added['id']}")
        assert is_problem(response, 404, "card-not-found")
        assert len((await alice.get(CARDS)).json()) == 1

    async def test_a_session_without_a_second_factor_may_not_manage_cards(self, api: Api) -> None:
        from tests.support.api import bearer, login, register_verified  # noqa: PLC0415

        client = api.client()
        await register_verified(api, client, "carol")
        access = (await login(client, "carol"))["access_token"]
        response = await client.post(CARDS, json=card(VISA), headers=bearer(access))
        assert is_problem(response, 403, "forbidden"), response.text


class TestDetokenize:
    @pytest.mark.spec("PCI-2", "RBAC-5", "RBAC-6")
    @pytest.mark.parametrize("role", list(Role))
    async def test_no_person_may_detokenize_and_each_refusal_is_audited(
        self, api: Api, alice: Trader, role: Role
    ) -> None:
        added = (await alice.post(CARDS, card(VISA))).json()
        async with cards_of(api).unit_of_work() as session:
            row = await session.get(CustomerCardRow, added["id"])
            assert row is not None
            token = row.token
        caller = CardCaller(Party("user", alice.user_id), frozenset(permissions_for(role)))
        with pytest.raises(VaultAccessDenied) as denied:
            await cards_of(api).detokenize(caller=caller, token=token, request_id="r1")
        problem = denied.value.to_problem()
        assert problem["status"] == 403
        assert problem["type"].endswith("/vault-access-denied")
        events = await audit_events(api, "vault:token:detokenize_denied")
        assert [e["data"]["token"] for e in events] == [token]
        assert events[0]["actor"] == {"kind": "user", "id": alice.user_id}
        assert events[0]["data"]["allowed"] is False

    @pytest.mark.spec("PCI-2")
    async def test_the_payment_service_detokenizes_and_it_is_audited_without_the_pan(
        self, api: Api, alice: Trader
    ) -> None:
        added = (await alice.post(CARDS, card(AMEX))).json()
        async with cards_of(api).unit_of_work() as session:
            token = (
                await session.execute(
                    select(CustomerCardRow.token).where(CustomerCardRow.id == added["id"])
                )
            ).scalar_one()
        payment = CardCaller.payment_service()
        revealed = await cards_of(api).detokenize(caller=payment, token=token)
        assert revealed.pan == AMEX
        prepared = await cards_of(api).authorization_card(caller=payment, token=token, cvv=AMEX_CVV)
        assert prepared.secret.value == AMEX_CVV
        events = await audit_events(api, "vault:token:detokenized")
        assert [(e["data"]["token"], e["data"]["purpose"]) for e in events] == [
            (token, "detokenize"),
            (token, "authorization"),
        ]
        assert events[0]["actor"] == {"kind": "service", "id": "payments"}
        assert AMEX not in repr(events)
        assert AMEX_CVV not in repr(events)


@pytest.fixture
def platform_log() -> Iterator[io.StringIO]:
    """Every log record at DEBUG, as the platform's handler writes it (JSON lines after its
    redaction filter, web/logging.py): what an operator's log files would hold."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def _dump(engine: AsyncEngine) -> list[tuple[str, bytes]]:
    """Every value of every table, as bytes (text encoded, binary as is)."""
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        values: list[tuple[str, bytes]] = []
        for table in tables:
            rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()  # noqa: S608
            for row in rows:
                for value in row:
                    if value is None:
                        continue
                    raw = (
                        bytes(value)
                        if isinstance(value, (bytes, memoryview))
                        else str(value).encode()
                    )
                    values.append((table, raw))
    return values


class TestNoCardDataInClear:
    @pytest.mark.spec("PCI-2", "ENC-2")
    async def test_after_a_full_flow_no_table_of_either_database_and_no_log_line_holds_a_pan_or_cvv(
        self,
        api: Api,
        alice: Trader,
        engine: AsyncEngine,
        vault_engine: AsyncEngine,
        platform_log: io.StringIO,
    ) -> None:
        pans = [VISA, MASTERCARD, AMEX]
        secrets = [CVV, AMEX_CVV, "9753"]
        ids = []
        for pan in pans:
            response = await alice.post(CARDS, card(pan))
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        # Attempts that carry card data where it does not belong.
        await alice.post(CARDS, card(VISA))  # duplicate
        await alice.post(CARDS, card(MASTERCARD, cvv="9753"))
        await alice.post(CARDS, card(VISA[:-1] + "2"))
        payment = CardCaller.payment_service()
        cards = cards_of(api)
        async with cards.unit_of_work() as session:
            tokens = (await session.execute(select(CustomerCardRow.token))).scalars().all()
        for token, secret in zip(sorted(tokens), [CVV, AMEX_CVV, CVV], strict=True):
            await cards.detokenize(caller=payment, token=token)
            # A code of the wrong length for the brand is refused: the point is the records.
            with contextlib.suppress(Exception):
                await cards.authorization_card(caller=payment, token=token, cvv=secret)
        # A PAN sent where a token belongs, by a person and by the payment service.
        person = CardCaller(Party("user", alice.user_id), frozenset(permissions_for(Role.ADMIN)))
        for caller in (person, payment):
            with contextlib.suppress(Exception):
                await cards.detokenize(caller=caller, token=MASTERCARD)
        await alice.delete(f"{CARDS}/{ids[0]}")

        needles = [p.encode() for p in pans] + [p[:6].encode() + p[-4:].encode() for p in pans]
        for database in (engine, vault_engine):
            for table, value in await _dump(database):
                for needle in needles:
                    assert needle not in value, f"card data in clear in {table}"
                for secret in secrets:
                    # Security codes are short: look for them as whole values or JSON fields.
                    assert value != secret.encode(), f"a security code in {table}"
                    assert f'"{secret}"'.encode() not in value, f"a security code in {table}"
        log_text = platform_log.getvalue()
        assert "/api/v1/me/cards" in log_text  # the capture saw the flow
        for pan in pans:
            assert pan not in log_text
        for secret in secrets:
            assert f"'{secret}'" not in log_text
            assert f'"{secret}"' not in log_text
