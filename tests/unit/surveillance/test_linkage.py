"""Beneficial-owner links derived from shared networks and devices, and owners joined by
them (pure): the occasion rule, the shared-network and common-fingerprint caps, and the
evidence (keyed hashes and masked values only)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.identity.networks import masked_network, network_prefix
from tradeguard.surveillance.linkage import (
    LinkKind,
    LinkParameters,
    device_links,
    network_links,
)
from tradeguard.surveillance.owners import MAX_EVIDENCE_LINKS, BeneficialOwners, OwnerLink

HOUR = 3600 * NS_PER_SECOND
DAY = 24 * HOUR
PARAMS = LinkParameters()  # a 6 h window, 3 occasions, at most 5 users on a network
NET = "k" * 32


@dataclass(frozen=True)
class SignIn:
    user_id: str
    at_ns: int
    network_key: str = NET
    network_masked: str = "198.51.*.*"


@dataclass(frozen=True)
class Device:
    user_id: str
    device_key: str
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    sign_ins: int = 1


def evenings(
    users: tuple[str, str], days: int, *, gap_ns: int = 600 * NS_PER_SECOND, at_ns: int = 0
) -> list[SignIn]:
    """Each day at `at`, one user signs in and the other `gap` later."""
    first, second = users
    return [
        s
        for day in range(days)
        for s in (SignIn(first, day * DAY + at_ns), SignIn(second, day * DAY + at_ns + gap_ns))
    ]


class TestNetworkLinks:
    def test_two_users_meeting_on_one_network_on_three_occasions_are_linked(self) -> None:
        report = network_links(evenings(("u2", "u1"), 3), PARAMS)
        [link] = report.links
        assert (link.kind, link.user_a, link.user_b) == (LinkKind.NETWORK, "u1", "u2")
        assert link.evidence["occurrences"] == 3
        assert link.evidence["network_key"] == NET
        assert link.evidence["network"] == "198.51.*.*"
        assert link.evidence["prefix_length"] == 24
        assert link.evidence["sign_ins"] == 6
        assert link.evidence["users_on_network"] == 2
        assert link.evidence["first_at"] < link.evidence["last_at"]

    def test_occasions_below_the_threshold_link_nobody(self) -> None:
        assert network_links(evenings(("u1", "u2"), 2), PARAMS).links == []

    def test_a_burst_of_sign_ins_within_one_window_is_one_occasion(self) -> None:
        # Both users sign in again and again one evening: one coincidence, not ten.
        burst = [SignIn("u1" if i % 2 else "u2", i * 60 * NS_PER_SECOND) for i in range(10)]
        assert network_links(burst, PARAMS).links == []

    def test_sign_ins_further_apart_than_the_window_never_meet(self) -> None:
        apart = evenings(("u1", "u2"), 5, gap_ns=7 * HOUR)
        assert network_links(apart, PARAMS).links == []

    def test_a_network_with_more_users_than_allowed_links_nobody(self) -> None:
        # Three pairs, each meeting at its own time of day (eight hours apart: never together).
        pairs = (("u1", "u2"), ("u3", "u4"), ("u5", "u6"))
        crowd = [s for i, pair in enumerate(pairs) for s in evenings(pair, 3, at_ns=i * 8 * HOUR)]
        report = network_links(crowd, PARAMS)
        assert report.links == []
        assert (report.networks, report.shared_networks) == (1, 1)
        # The same sign-ins with a cap of six users: each pair that met is linked.
        wide = network_links(crowd, LinkParameters(network_max_users=6))
        assert {(x.user_a, x.user_b) for x in wide.links} == {
            ("u1", "u2"),
            ("u3", "u4"),
            ("u5", "u6"),
        }

    def test_users_who_never_traded_do_not_crowd_a_network_and_are_not_linked(self) -> None:
        pairs = (("u1", "u2"), ("u3", "u4"), ("u5", "u6"))
        crowd = [s for i, pair in enumerate(pairs) for s in evenings(pair, 3, at_ns=i * 8 * HOUR)]
        # Only u1 and u2 traded: two traders on the network, linked to each other only.
        report = network_links(crowd, PARAMS, traders={"u1", "u2", "elsewhere"})
        [link] = report.links
        assert (link.user_a, link.user_b) == ("u1", "u2")
        assert (link.evidence["users_on_network"], link.evidence["users_signed_in"]) == (2, 6)
        assert report.shared_networks == 0
        # Six traders are a crowd as before.
        everyone = {f"u{i}" for i in range(1, 7)}
        assert network_links(crowd, PARAMS, traders=everyone).links == []

    def test_networks_are_judged_apart(self) -> None:
        split = [
            SignIn(s.user_id, s.at_ns, network_key=f"{s.user_id}-{i % 2}")
            for i, s in enumerate(evenings(("u1", "u2"), 3))
        ]
        assert network_links(split, PARAMS).links == []

    def test_an_ipv6_network_says_its_own_prefix_length(self) -> None:
        v6 = [
            SignIn(s.user_id, s.at_ns, network_masked="2001:db8:*") for s in evenings(("a", "b"), 3)
        ]
        [link] = network_links(v6, PARAMS).links
        assert link.evidence["prefix_length"] == 48

    @given(
        st.lists(
            st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.integers(0, 20 * DAY)), max_size=40
        )
    )
    def test_occasions_are_never_fewer_than_needed_and_at_least_a_window_apart(
        self, raw: list[tuple[str, int]]
    ) -> None:
        report = network_links([SignIn(u, t) for u, t in raw], PARAMS)
        for link in report.links:
            assert link.evidence["occurrences"] >= PARAMS.network_min_occurrences
            assert link.user_a < link.user_b


class TestDeviceLinks:
    def test_two_users_with_one_fingerprint_are_linked_with_when_and_how_often(self) -> None:
        devices = [
            Device("u2", "d" * 32, first_seen_ns=5 * DAY, last_seen_ns=9 * DAY, sign_ins=4),
            Device("u1", "d" * 32, first_seen_ns=2 * DAY, last_seen_ns=6 * DAY, sign_ins=3),
            Device("u3", "e" * 32),
        ]
        [link] = device_links(devices, PARAMS)
        assert (link.kind, link.user_a, link.user_b) == (LinkKind.DEVICE, "u1", "u2")
        assert link.evidence["device_key"] == "d" * 32
        assert link.evidence["sign_ins"] == 7
        assert link.evidence["devices"] == 2
        assert link.evidence["shared_since"].startswith("1970-01-06")  # the second user's first
        assert link.evidence["last_seen_at"].startswith("1970-01-10")

    def test_a_fingerprint_of_more_users_than_allowed_is_a_common_configuration(self) -> None:
        many = [Device(f"u{i}", "d" * 32) for i in range(4)]
        assert device_links(many, PARAMS) == []
        assert len(device_links(many, LinkParameters(device_max_users=4))) == 6

    def test_throwaway_users_on_a_fingerprint_do_not_dissolve_the_traders_link(self) -> None:
        """Six sign-ups that never traded on the fingerprint of the two who trade."""
        devices = [Device(f"u{i}", "d" * 32) for i in range(8)]
        assert device_links(devices, PARAMS) == []  # every user counted: the evasion
        [link] = device_links(devices, PARAMS, traders={"u0", "u1"})
        assert (link.user_a, link.user_b) == ("u0", "u1")
        assert link.evidence["users_on_device"] == 2
        assert link.evidence["users_with_fingerprint"] == 8
        # Four traders on it: a common configuration, as before.
        assert device_links(devices, PARAMS, traders={"u0", "u1", "u2", "u3"}) == []
        # A trader alone with throwaways is linked to nobody.
        assert device_links(devices, PARAMS, traders={"u0"}) == []

    def test_one_users_devices_alike_link_nobody(self) -> None:
        assert device_links([Device("u1", "d" * 32), Device("u1", "d" * 32)], PARAMS) == []


class TestNetworkPrefix:
    @pytest.mark.parametrize(
        ("ip", "network"),
        [
            ("203.0.113.7", "203.0.113.0/24"),
            ("::ffff:203.0.113.7", "203.0.113.0/24"),
            ("2001:db8:85a3:1:2:3:4:5", "2001:db8:85a3::/48"),
            ("not an address", None),
            (None, None),
            ("", None),
        ],
    )
    def test_an_address_is_read_as_its_network(self, ip: str | None, network: str | None) -> None:
        assert network_prefix(ip, ipv4_prefix=24, ipv6_prefix=48) == network

    @pytest.mark.parametrize(
        ("network", "shown"),
        [
            ("203.0.113.0/24", "203.0.*.*"),
            ("203.0.0.0/16", "203.0.*.*"),
            ("10.0.0.0/8", "10.0.0.0/8"),  # wider than the mask: says less than a /16
            ("2001:db8:85a3::/48", "2001:db8:*"),
            ("2001::/16", "2001::/16"),
        ],
    )
    def test_a_network_is_shown_masked_never_narrower_than_the_masking(
        self, network: str, shown: str
    ) -> None:
        assert masked_network(network) == shown

    def test_an_overlong_address_is_not_read(self) -> None:
        assert network_prefix("1" * 65, ipv4_prefix=24, ipv6_prefix=48) is None


class TestOwnersWithDerivedLinks:
    def test_a_user_link_joins_users_and_a_reviewer_sees_which_links_did(self) -> None:
        users = {"a1": "u3", "b1": "u1", "c1": "u2"}
        device = OwnerLink("L1", "device", user_a="u1", user_b="u3", evidence={"device_key": "d"})
        bank = OwnerLink("L2", "bank_account", account_a="b1", account_b="c1")
        owners = BeneficialOwners(users, owner_links=[device, bank])
        assert {owners.owner(a) for a in users} == {"u1"}
        assert [link.id for link in owners.links_of("u1")] == ["L1", "L2"]
        assert device.summary() == {
            "link_id": "L1",
            "kind": "device",
            "user_a": "u1",
            "user_b": "u3",
            "evidence": {"device_key": "d"},
        }
        assert BeneficialOwners(users).links_of("u1") == []

    def test_an_alert_names_at_most_a_bounded_number_of_links(self) -> None:
        links = [OwnerLink(f"L{i}", "network", user_a="u0", user_b=f"u{i}") for i in range(1, 50)]
        assert len(BeneficialOwners({}, owner_links=links).links_of("u0")) == MAX_EVIDENCE_LINKS

    def test_a_link_without_a_pair_joins_nothing(self) -> None:
        owners = BeneficialOwners({"a1": "u1"}, owner_links=[OwnerLink("L", "device", user_a="u1")])
        assert owners.owner("a1") == "u1"
        assert owners.links_of("u1") == []
