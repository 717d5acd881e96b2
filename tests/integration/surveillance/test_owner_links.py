"""Beneficial-owner links derived from sign-ins (issue #12, linked accounts), on SQLite and
PostgreSQL: users who sign in on one device, or on one network on separate occasions, are
linked with their evidence (keyed hashes and masked values, never an address or a
fingerprint); a crowded network or a single coincidence links nobody; a derived link joins
the users' accounts into one owner (a cross between them is a wash trade, MAN-1) until
compliance dismisses it, and a dismissed link stays dismissed. Every link created or
dismissed is a ledger event; the funds package's bank-account links go through the same
store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.surveillance.support import (
    MONDAY_OPEN,
    Customer,
    chain,
    customer,
    order,
    surveillance_of,
)
from tests.support.access import staff
from tests.support.api import Api, audit_events, is_problem, login, running_api
from tests.support.trading import add_instrument, signed_in_trader, street_order
from tradeguard.access.domain import AccessLevel, Role
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.core.errors import InvalidInput
from tradeguard.core.orders import Side
from tradeguard.identity.models import Device
from tradeguard.ledger.domain import Party
from tradeguard.surveillance.linkage import LinkKind, LinkStatus
from tradeguard.surveillance.linking import DerivationResult
from tradeguard.surveillance.models import SurveillanceLink
from tradeguard.surveillance.repository import AlertFilter
from tradeguard.surveillance.service import (
    BankAccountLink,
    LinkDismissed,
    LinkIsDerived,
    LinkNotFound,
)

LINKS = "/api/v1/surveillance/links"
UNKNOWN = "0190c5a0-0000-7000-8000-000000000000"
OPERATOR = Party("operator", "test")
HOME_A, HOME_B = "198.51.100.10", "198.51.100.20"  # one /24
ELSEWHERE = "192.0.2.44"
TABLET = {
    "platform": "iPadOS",
    "screen": "1024x768",
    "language": "en-GB",
    "timezone": "Europe/London",
}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_OPEN)


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running_api(settings, engine, clock) as running:
        yield running


def own_device(name: str) -> dict[str, str]:
    """Device attributes of this user's own laptop (a fingerprint nobody else has)."""
    return {"platform": f"Linux {name}", "screen": "1920x1080", "language": "en-US"}


async def sign_in(api: Api, who: str, *, ip: str, device: dict[str, str] | None = None) -> None:
    """A real sign-in through the API from `ip`, on the device the attributes describe."""
    async with api.client(ip) as client:
        await login(client, who, device=device or own_device(who))


async def derive(api: Api) -> DerivationResult:
    deriver = surveillance_of(api).deriver
    assert deriver is not None
    return await deriver.run_once(force=True)


async def links(api: Api) -> list[SurveillanceLink]:
    services = surveillance_of(api)
    async with services.unit_of_work() as session:
        rows = list(await services.links.all(session))
        for row in rows:
            session.expunge(row)
        return rows


async def evenings_on_one_network(api: Api, first: str, second: str, occasions: int) -> None:
    """On each of `occasions` days, `first` signs in at home and `second` ten minutes later
    from another address of the same /24."""
    for _ in range(occasions):
        await sign_in(api, first, ip=HOME_A)
        api.clock.advance(seconds=600)
        await sign_in(api, second, ip=HOME_B)
        api.clock.advance(seconds=86_400)


def assert_pseudonymous(text: str, *, fingerprints: Sequence[bytes] = ()) -> None:
    for address in (HOME_A, HOME_B, ELSEWHERE, "198.51.100.", "198.51.100.0/24"):
        assert address not in text
    for fingerprint in fingerprints:
        assert fingerprint.hex() not in text


async def fingerprints(api: Api) -> list[bytes]:
    async with api.services.unit_of_work() as session:
        return list((await session.execute(select(Device.fingerprint))).scalars())


async def a_market(api: Api) -> None:
    await add_instrument(api, "ACME", "50.00")
    await street_order(api, "ACME", Side.SELL, 50_000, "50.02")
    await street_order(api, "ACME", Side.BUY, 50_000, "49.98")


async def trader(api: Api, name: str) -> Customer:
    """A customer who has traded (bought 100 ACME from the street): only traders count
    toward a crowd on a device or a network, and only traders are linked."""
    who = await customer(api, name)
    await order(api, who, who.accounts[0], "buy", 100, "50.02")
    return who


async def cross(api: Api, seller: Customer, buyer: Customer, quantity: int) -> None:
    """`seller` rests a sale at 50.00 inside the street's spread and `buyer` takes it: an
    internal match between the two."""
    await order(api, seller, seller.accounts[0], "sell", quantity, "50.00")
    api.clock.advance(seconds=1)
    await order(api, buyer, buyer.accounts[0], "buy", quantity, "50.00")
    api.clock.advance(seconds=20)


async def wash_alerts(api: Api) -> list[Any]:
    services = surveillance_of(api)
    await chain(api)
    await services.consumer.run()
    async with services.unit_of_work() as session:
        return list(await services.alerts.search(session, AlertFilter(alert_type="WASH_TRADE")))


async def two_users_on_one_tablet(api: Api) -> tuple[Customer, Customer]:
    """Ursula and Victor, each with a funded account and a position to sell, who sign in
    on one tablet from different networks."""
    await a_market(api)
    ursula, victor = await customer(api, "ursula"), await customer(api, "victor")
    await order(api, victor, victor.accounts[0], "buy", 2000, "50.02")
    await order(api, ursula, ursula.accounts[0], "buy", 2000, "50.02")
    await sign_in(api, "ursula", ip=HOME_A, device=TABLET)
    api.clock.advance(seconds=3600)
    await sign_in(api, "victor", ip=ELSEWHERE, device=TABLET)
    api.clock.advance(seconds=60)
    return ursula, victor


class TestSharedDevice:
    @pytest.mark.spec("MAN-1")
    async def test_two_users_sharing_a_device_who_cross_each_other_raise_a_wash_alert_naming_the_link(
        self, api: Api
    ) -> None:
        ursula, victor = await two_users_on_one_tablet(api)
        # Not linked yet: a cross between two owners changes beneficial ownership.
        await cross(api, victor, ursula, 300)
        assert await wash_alerts(api) == []
        result = await derive(api)
        [link] = await links(api)
        assert result.created == 1
        assert (link.kind, link.status) == (LinkKind.DEVICE, LinkStatus.ACTIVE)
        assert {link.user_a, link.user_b} == {ursula.user_id, victor.user_id}
        assert link.evidence["users_on_device"] == 2
        assert link.evidence["sign_ins"] == 2
        assert len(link.evidence["device_key"]) == 32
        # Linked: their next crosses are one owner's trades with itself.
        await cross(api, victor, ursula, 300)
        await cross(api, ursula, victor, 300)
        [alert] = await wash_alerts(api)
        assert set(alert.accounts) == {ursula.accounts[0], victor.accounts[0]}
        assert alert.owner == min(ursula.user_id, victor.user_id)
        assert alert.evidence["self_matched_quantity"] >= 300
        [named] = alert.evidence["owner_links"]
        assert named["link_id"] == link.id
        assert named["kind"] == "device"
        assert named["evidence"]["device_key"] == link.evidence["device_key"]
        # Neither the alert, the link nor their ledger events carry an address or a
        # fingerprint in clear.
        [added] = await audit_events(api, "surveillance:link:added")
        [raised] = await audit_events(api, "surveillance:alert:raised")
        assert added["actor"] == {"kind": "system", "id": "surveillance"}
        assert added["data"]["kind"] == "device"
        assert added["data"]["link_id"] == link.id
        text = json.dumps([alert.evidence, link.evidence, link.reason, added, raised])
        assert_pseudonymous(text, fingerprints=await fingerprints(api))

    async def test_derivation_is_idempotent_and_a_common_configuration_links_nobody(
        self, api: Api
    ) -> None:
        await two_users_on_one_tablet(api)
        assert (await derive(api)).created == 1
        assert (await derive(api)).created == 0
        # Two more traders with the same attributes: four traders on one fingerprint is a
        # common configuration (device_max_users is 3), not a device; nothing new is linked.
        for name in ("wendy", "xavier"):
            await trader(api, name)
            await sign_in(api, name, ip=ELSEWHERE, device=TABLET)
        assert (await derive(api)).created == 0
        assert len(await links(api)) == 1
        assert len(await audit_events(api, "surveillance:link:added")) == 1

    async def test_throwaway_users_on_the_fingerprint_do_not_dissolve_the_link(
        self, api: Api
    ) -> None:
        """The evasion: six sign-ups that never trade, on the two traders' tablet, made it
        eight users on one fingerprint, past the cap, and linked nobody. Only traders
        count, and only traders are linked."""
        ursula, victor = await two_users_on_one_tablet(api)
        throwaways = []
        for n in range(6):
            throwaways.append(await customer(api, f"throwaway{n}"))
            await sign_in(api, f"throwaway{n}", ip=ELSEWHERE, device=TABLET)
        result = await derive(api)
        [link] = await links(api)
        assert result.created == 1
        assert {link.user_a, link.user_b} == {ursula.user_id, victor.user_id}
        assert link.evidence["users_on_device"] == 2
        assert link.evidence["users_with_fingerprint"] == 8
        # A throwaway that trades counts from the next pass: three traders is still a
        # device (linked to both), a fourth would make it a common configuration.
        first = throwaways[0]
        await order(api, first, first.accounts[0], "buy", 100, "50.02")
        assert (await derive(api)).created == 2
        second = throwaways[1]
        await order(api, second, second.accounts[0], "buy", 100, "50.02")
        assert (await derive(api)).created == 0


class TestSharedNetwork:
    async def test_two_users_signing_in_on_one_24_on_separate_occasions_are_linked(
        self, api: Api
    ) -> None:
        await a_market(api)
        alice, bob = await trader(api, "alice"), await trader(api, "bob")
        await evenings_on_one_network(api, "alice", "bob", 3)
        result = await derive(api)
        [link] = await links(api)
        assert result.created == 1
        assert link.kind == LinkKind.NETWORK
        assert (link.user_a, link.user_b) == tuple(sorted((alice.user_id, bob.user_id)))
        evidence = link.evidence
        assert evidence["occurrences"] == 3
        assert evidence["prefix_length"] == 24
        assert evidence["network"] == "198.51.*.*"  # the project's masking: a /16
        assert len(evidence["network_key"]) == 32
        assert evidence["sign_ins"] == 6
        assert evidence["users_on_network"] == 2
        assert evidence["window_seconds"] == 6 * 3600
        [added] = await audit_events(api, "surveillance:link:added")
        assert added["data"]["user_id"] == link.user_a
        assert added["data"]["linked_user_id"] == link.user_b
        assert_pseudonymous(json.dumps([evidence, link.reason, added]))

    async def test_a_network_many_users_sign_in_from_links_nobody(self, api: Api) -> None:
        # A carrier's or an office's network: six users (more than network_max_users = 5),
        # signing in side by side every day.
        await a_market(api)
        names = [f"commuter{i}" for i in range(6)]
        for name in names:
            await trader(api, name)
        for _ in range(3):
            for name in names:
                await sign_in(api, name, ip=HOME_A)
                api.clock.advance(seconds=60)
            api.clock.advance(seconds=86_400)
        result = await derive(api)
        assert result.created == 0
        assert result.shared_networks == 1
        assert await links(api) == []
        assert await audit_events(api, "surveillance:link:added") == []

    async def test_users_who_never_traded_neither_crowd_a_network_nor_are_linked(
        self, api: Api
    ) -> None:
        # Two traders and six sign-ups that never traded meet on one /24 every evening:
        # eight users, but two traders, well within network_max_users.
        await a_market(api)
        alice, bob = await trader(api, "alice"), await trader(api, "bob")
        names = [f"throwaway{i}" for i in range(6)]
        for name in names:
            await customer(api, name)
        for _ in range(3):
            for name in ("alice", "bob", *names):
                await sign_in(api, name, ip=HOME_A)
                api.clock.advance(seconds=60)
            api.clock.advance(seconds=86_400)
        result = await derive(api)
        [link] = await links(api)
        assert (result.created, result.shared_networks) == (1, 0)
        assert (link.user_a, link.user_b) == tuple(sorted((alice.user_id, bob.user_id)))
        assert link.evidence["users_on_network"] == 2
        assert link.evidence["users_signed_in"] == 8

    async def test_a_single_coincidence_below_the_repeat_threshold_links_nobody(
        self, api: Api
    ) -> None:
        await customer(api, "alice")
        await customer(api, "bob")
        # One evening both sign in on the network, several times (one occasion) ...
        for _ in range(3):
            await sign_in(api, "alice", ip=HOME_A)
            api.clock.advance(seconds=300)
            await sign_in(api, "bob", ip=HOME_B)
            api.clock.advance(seconds=300)
        # ... and on other days each alone, hours apart from the other.
        for _ in range(3):
            api.clock.advance(seconds=86_400)
            await sign_in(api, "alice", ip=HOME_A)
            api.clock.advance(seconds=8 * 3600)
            await sign_in(api, "bob", ip=HOME_B)
        result = await derive(api)
        assert result.created == 0
        assert await links(api) == []

    async def test_sign_ins_older_than_the_lookback_are_not_read(self, api: Api) -> None:
        await a_market(api)
        await trader(api, "alice")
        await trader(api, "bob")
        await evenings_on_one_network(api, "alice", "bob", 3)
        api.clock.advance(seconds=31 * 86_400)
        assert (await derive(api)).sign_ins == 0
        assert await links(api) == []


class TestSchedule:
    async def test_a_worker_skips_a_pass_another_ran_within_the_interval(self, api: Api) -> None:
        await a_market(api)
        await trader(api, "alice")
        await trader(api, "bob")
        deriver = surveillance_of(api).deriver
        assert deriver is not None
        await evenings_on_one_network(api, "alice", "bob", 2)
        first = await deriver.run_once()  # two occasions: not yet
        # The third occasion, five minutes later: a pass now is within the 15-minute
        # interval of the last one and is skipped; the next one due links them.
        await sign_in(api, "alice", ip=HOME_A)
        api.clock.advance(seconds=300)
        await sign_in(api, "bob", ip=HOME_B)
        skipped = await deriver.run_once()
        api.clock.advance(seconds=900)
        due = await deriver.run_once()
        assert (first.ran, first.created) == (True, 0)
        assert (skipped.ran, skipped.created) == (False, 0)
        assert (due.ran, due.created) == (True, 1)


class TestDismissal:
    @pytest.mark.spec("MAN-1")
    async def test_a_dismissed_link_stays_dismissed_and_the_owners_split_again(
        self, api: Api
    ) -> None:
        ursula, victor = await two_users_on_one_tablet(api)
        await derive(api)
        [link] = await links(api)
        await cross(api, victor, ursula, 300)
        await cross(api, ursula, victor, 300)
        [alert] = await wash_alerts(api)
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE, AccessLevel.OPERATOR)
            dismissed = await carol.post(
                f"{LINKS}/{link.id}/dismiss", {"reason": "a family tablet, reviewed"}
            )
            listed = await carol.get(LINKS)
        assert dismissed.status_code == 200, dismissed.text
        body = dismissed.json()
        assert body["status"] == "dismissed"
        assert body["dismissed_by"] == f"staff:{carol.user_id}"
        assert body["dismiss_reason"] == "a family tablet, reviewed"
        [shown] = [row for row in listed.json() if row["id"] == link.id]
        assert (shown["kind"], shown["status"]) == ("device", "dismissed")
        assert shown["evidence"]["device_key"] == link.evidence["device_key"]
        [event] = await audit_events(api, "surveillance:link:dismissed")
        assert event["actor"] == {"kind": "staff", "id": carol.user_id}
        assert event["data"]["link_id"] == link.id
        assert event["data"]["reason"] == "a family tablet, reviewed"
        # Both sign in on the tablet again: the derivation leaves the dismissed link alone.
        await sign_in(api, "ursula", ip=HOME_A, device=TABLET)
        await sign_in(api, "victor", ip=ELSEWHERE, device=TABLET)
        assert (await derive(api)).created == 0
        [still] = [row for row in await links(api) if row.kind == LinkKind.DEVICE]
        assert (still.id, still.status) == (link.id, LinkStatus.DISMISSED)
        # Past the wash window, their crosses are two owners' trades again: no new alert.
        api.clock.advance(seconds=1200)
        await cross(api, victor, ursula, 300)
        await cross(api, ursula, victor, 300)
        after = await wash_alerts(api)
        assert [a.id for a in after] == [alert.id]
        assert after[0].occurrences == alert.occurrences

    async def test_two_accounts_of_one_user_are_not_linked_by_hand(self, api: Api) -> None:
        mallory = await customer(api, "mallory", accounts=2)
        services = surveillance_of(api)
        with pytest.raises(InvalidInput, match="already share an owner"):
            async with services.unit_of_work() as session:
                await services.links.add(
                    session,
                    account_a=mallory.accounts[0],
                    account_b=mallory.accounts[1],
                    reason="same person",
                    actor=OPERATOR,
                )
        assert await links(api) == []
        assert await audit_events(api, "surveillance:link:added") == []

    async def test_bad_dismissals_are_problems_that_change_nothing(self, api: Api) -> None:
        await two_users_on_one_tablet(api)
        await derive(api)
        [link] = await links(api)
        mallory = await customer(api, "mallory")
        mel = await customer(api, "mel")
        services = surveillance_of(api)
        async with services.unit_of_work() as session:
            manual = await services.links.add(
                session,
                account_a=mallory.accounts[0],
                account_b=mel.accounts[0],
                reason="same person",
                actor=OPERATOR,
            )
        async with api.client() as client:
            carol = await staff(api, client, "carol", Role.COMPLIANCE, AccessLevel.OPERATOR)
            reader = await staff(api, client, "rita", Role.COMPLIANCE, AccessLevel.READ_ONLY)
            trader = await signed_in_trader(api, client, "tim")
            reason = {"reason": "not the same person"}
            unknown = await carol.post(f"{LINKS}/{UNKNOWN}/dismiss", reason)
            malformed = await carol.post(f"{LINKS}/not-a-link/dismiss", reason)
            short = await carol.post(f"{LINKS}/{link.id}/dismiss", {"reason": "no"})
            extra = await carol.post(f"{LINKS}/{link.id}/dismiss", {**reason, "x": 1})
            control = await carol.post(f"{LINKS}/{link.id}/dismiss", {"reason": "evil \u202e text"})
            of_manual = await carol.post(f"{LINKS}/{manual.id}/dismiss", reason)
            by_reader = await reader.post(f"{LINKS}/{link.id}/dismiss", reason)
            by_trader = await trader.post(f"{LINKS}/{link.id}/dismiss", reason)
            listed_by_trader = await trader.get(LINKS)
            done = await carol.post(f"{LINKS}/{link.id}/dismiss", reason)
            again = await carol.post(f"{LINKS}/{link.id}/dismiss", reason)
            bad_filter = await carol.get(LINKS, params={"kind": "telepathy"})
            bad_limit = await carol.get(LINKS, params={"limit": 0})
            by_kind = await carol.get(LINKS, params={"kind": "manual"})
            newest = await carol.get(LINKS, params={"limit": 1})
            older = await carol.get(LINKS, params={"before": manual.id})
        assert is_problem(unknown, 404, "link-not-found")
        assert malformed.status_code == 422
        assert short.status_code == 422
        assert extra.status_code == 422
        assert is_problem(control, 422, "invalid-input")
        assert is_problem(of_manual, 409, "link-is-manual")
        assert by_reader.status_code == 403
        assert by_trader.status_code == 403
        assert listed_by_trader.status_code == 403
        for refused in (unknown, malformed, of_manual, by_reader, by_trader, listed_by_trader):
            assert refused.headers["content-type"].startswith("application/problem+json")
        assert done.status_code == 200
        assert is_problem(again, 409, "link-dismissed")
        assert bad_filter.status_code == 422
        assert bad_limit.status_code == 422
        assert [row["id"] for row in by_kind.json()] == [manual.id]
        # Newest first, a page at a time.
        assert [row["id"] for row in newest.json()] == [manual.id]
        assert [row["id"] for row in older.json()] == [link.id]
        # Only the one good dismissal changed anything.
        assert len(await audit_events(api, "surveillance:link:dismissed")) == 1
        statuses = {row.id: row.status for row in await links(api)}
        assert statuses == {link.id: "dismissed", manual.id: "active"}


class TestBankAccountLinks:
    async def test_the_funds_entry_point_records_links_with_clean_evidence_once(
        self, api: Api
    ) -> None:
        alice, bob = await customer(api, "alice"), await customer(api, "bob")
        services = surveillance_of(api)
        pair = BankAccountLink(
            alice.accounts[0],
            bob.accounts[0],
            {"bank_account_key": "b" * 32, "bank_account": "****6789", "transfers": 4},
        )
        async with services.unit_of_work() as session:
            [row] = await services.links.record_bank_account_links(session, [pair])
        async with services.unit_of_work() as session:
            assert await services.links.record_bank_account_links(session, [pair]) == []
        assert row.kind == LinkKind.BANK_ACCOUNT
        assert (row.account_a, row.account_b) == tuple(
            sorted(pair[:2] if False else (alice.accounts[0], bob.accounts[0]))
        )
        assert row.evidence["bank_account"] == "****6789"
        [added] = await audit_events(api, "surveillance:link:added")
        assert added["actor"] == {"kind": "system", "id": "funds"}
        assert added["data"]["kind"] == "bank_account"
        # A derived link is dismissed, not removed (removed, it would come back).
        async with services.unit_of_work() as session:
            with pytest.raises(LinkIsDerived):
                await services.links.remove(session, link_id=row.id, reason="wrong", actor=OPERATOR)
        async with services.unit_of_work() as session:
            await services.links.dismiss(
                session, link_id=row.id, reason="joint account", actor=OPERATOR
            )
        async with services.unit_of_work() as session:
            with pytest.raises(LinkDismissed):
                await services.links.dismiss(
                    session, link_id=row.id, reason="joint account", actor=OPERATOR
                )
            with pytest.raises(LinkNotFound):
                await services.links.dismiss(
                    session, link_id=UNKNOWN, reason="joint account", actor=OPERATOR
                )

    @pytest.mark.parametrize(
        "evidence",
        [
            {"bank_account": "DE89 3704 0044 0532 0130 00"},  # an IBAN's digits
            {"routing": "021000021"},
            {"Bad Key": "x"},
            {"note": "evil \x1b[2J"},
            {"nested": {"a": 1}},
            {f"k{i}": i for i in range(21)},
        ],
    )
    async def test_unclean_evidence_or_unknown_accounts_record_nothing(
        self, api: Api, evidence: dict[str, Any]
    ) -> None:
        alice, bob = await customer(api, "alice"), await customer(api, "bob")
        services = surveillance_of(api)
        good = BankAccountLink(alice.accounts[0], bob.accounts[0], {"transfers": 2})
        for batch in (
            [good, BankAccountLink(alice.accounts[0], bob.accounts[0], evidence)],
            [good, BankAccountLink(alice.accounts[0], UNKNOWN, {})],
            [good, BankAccountLink(alice.accounts[0], alice.accounts[0], {})],
        ):
            async with services.unit_of_work() as session:
                with pytest.raises(InvalidInput):
                    await services.links.record_bank_account_links(session, batch)
        assert await links(api) == []
        assert await audit_events(api, "surveillance:link:added") == []
