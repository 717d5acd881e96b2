"""Beneficial-owner links derived from shared devices and shared networks (pure: no I/O).

A link says two parties (accounts, or users with all their accounts) have one beneficial
owner. Compliance records `manual` links; this module derives two other kinds from what
identity saw at sign-in, each with its evidence (what was shared, when, how often):

- `device`: the same device fingerprint on devices of two users. A fingerprint is a
  handful of browser attributes, and one that more than `device_max_users` *traders* hold
  is a common configuration, not a device: it links nobody.
- `network`: sign-ins from the same network (an IPv4 /24 or IPv6 /48 by default) by two
  users within `network_window` of each other, on at least `network_min_occurrences`
  separate occasions (an occasion is a sign-in meeting the other user's within the
  window; those within one window of the last counted occasion are the same occasion, so a
  burst of sign-ins in one evening is one coincidence, not many). A network that more
  than `network_max_users` distinct *traders* signed in from over the lookback is a large
  NAT, a mobile carrier or a corporate proxy and makes no link at all.

**Only traders count, and only traders are linked.** A trader is a user with a trading
account that has executed at least once (the caller asks trading's service: `traders`).
The crowd caps exist to tell a popular configuration or a shared network from one device
or one household, but counted over every user they are the evader's to set: six throwaway
sign-ups on one fingerprint pushed it past the cap and dissolved the link between the two
users who trade. A user who never traded costs nothing to create, and no market abuse runs
through them; a trader is a funded account that executed. So users who never traded are
left out of the count and out of the links (a link is wanted between two parties whose
trades are judged as one owner's); one who starts trading is linked at the next derivation
pass. `traders` None counts every user (the rule before; for callers without trading).

A `bank_account` link (two accounts paying in from, or out to, one bank account) comes from
the funds package through `OwnerLinks.record_bank_account_links` (surveillance/service.py).

Networks and devices are named only by identity's keyed hashes (and the project's masking
of the address, core/masking.py): never an address or a raw fingerprint.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import combinations
from typing import Any, Protocol

from tradeguard.core.clock import NS_PER_SECOND, ns_to_iso


class LinkKind(StrEnum):
    MANUAL = "manual"
    DEVICE = "device"
    NETWORK = "network"
    BANK_ACCOUNT = "bank_account"


# Kinds a job or another package derives: compliance dismisses these (a false positive stays
# dismissed, whatever the next derivation finds); a manual link is removed instead.
DERIVED_KINDS = frozenset({LinkKind.DEVICE, LinkKind.NETWORK, LinkKind.BANK_ACCOUNT})


class LinkStatus(StrEnum):
    ACTIVE = "active"
    DISMISSED = "dismissed"


# Identity reports fingerprints that at most this many users (traders or not) hold: a bound
# on what one pass reads, far above any crowd of traders `device_max_users` allows.
DEVICE_SCAN_MAX_USERS = 1000


@dataclass(frozen=True, slots=True)
class LinkParameters:
    # How far back each derivation reads sign-ins.
    lookback_ns: int = 30 * 86_400 * NS_PER_SECOND
    # Two users' sign-ins on one network at most this far apart are one occasion ...
    network_window_ns: int = 6 * 3600 * NS_PER_SECOND
    # ... and this many separate occasions make a link.
    network_min_occurrences: int = 3
    # More distinct traders than this on one network in the lookback: a shared network.
    network_max_users: int = 5
    # More distinct traders than this with one device fingerprint: a common configuration.
    device_max_users: int = 3
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48


class NetworkSignInLike(Protocol):
    @property
    def user_id(self) -> str: ...
    @property
    def network_key(self) -> str: ...
    @property
    def network_masked(self) -> str: ...
    @property
    def at_ns(self) -> int: ...


class DeviceUseLike(Protocol):
    @property
    def user_id(self) -> str: ...
    @property
    def device_key(self) -> str: ...
    @property
    def first_seen_ns(self) -> int: ...
    @property
    def last_seen_ns(self) -> int: ...
    @property
    def sign_ins(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DerivedLink:
    """Two users one derivation found to share a device or a network."""

    kind: LinkKind
    user_a: str  # user_a < user_b
    user_b: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NetworkReport:
    links: list[DerivedLink]
    networks: int  # distinct networks read
    shared_networks: int  # ignored: more than `network_max_users` users


def _occasions(times: list[tuple[int, str]], a: str, b: str, window: int) -> list[int]:
    """The times of the separate occasions on which `a` and `b` met on one network."""
    last: dict[str, int] = {}
    found: list[int] = []
    for at, user in times:
        if user not in (a, b):
            continue
        other = b if user == a else a
        seen = last.get(other)
        if seen is not None and at - seen <= window and (not found or at - found[-1] > window):
            found.append(at)
        last[user] = at
    return found


def _counted(users: Iterable[str], traders: Collection[str] | None) -> list[str]:
    """The users that count toward a crowd and may be linked, sorted."""
    return sorted(u for u in users if traders is None or u in traders)


def network_links(
    sign_ins: Iterable[NetworkSignInLike],
    params: LinkParameters,
    *,
    traders: Collection[str] | None = None,
) -> NetworkReport:
    """The network links the sign-ins show (see the module docstring for the rule)."""
    by_network: dict[str, list[tuple[int, str]]] = defaultdict(list)
    masked: dict[str, str] = {}
    for s in sign_ins:
        by_network[s.network_key].append((s.at_ns, s.user_id))
        masked[s.network_key] = s.network_masked
    links: list[DerivedLink] = []
    shared = 0
    for key, times in by_network.items():
        signed_in = {user for _, user in times}
        users = _counted(signed_in, traders)
        if len(users) > params.network_max_users:
            shared += 1
            continue
        times.sort()
        for a, b in combinations(users, 2):
            occasions = _occasions(times, a, b, params.network_window_ns)
            if len(occasions) < params.network_min_occurrences:
                continue
            network = masked[key]
            prefix = params.ipv6_prefix if ":" in network else params.ipv4_prefix
            links.append(
                DerivedLink(
                    LinkKind.NETWORK,
                    a,
                    b,
                    {
                        "network_key": key,
                        "network": network,
                        "prefix_length": prefix,
                        "occurrences": len(occasions),
                        "first_at": ns_to_iso(occasions[0]),
                        "last_at": ns_to_iso(occasions[-1]),
                        "sign_ins": sum(1 for _, u in times if u in (a, b)),
                        "users_on_network": len(users),
                        "users_signed_in": len(signed_in),
                        "window_seconds": params.network_window_ns // NS_PER_SECOND,
                    },
                )
            )
    return NetworkReport(links, len(by_network), shared)


def device_links(
    devices: Iterable[DeviceUseLike],
    params: LinkParameters,
    *,
    traders: Collection[str] | None = None,
) -> list[DerivedLink]:
    """A link between every two traders whose devices share a fingerprint (at most
    `device_max_users` traders to the fingerprint)."""
    by_key: dict[str, dict[str, list[DeviceUseLike]]] = defaultdict(lambda: defaultdict(list))
    for d in devices:
        by_key[d.device_key][d.user_id].append(d)
    links: list[DerivedLink] = []
    for key, users in by_key.items():
        counted = _counted(users, traders)
        if not 2 <= len(counted) <= params.device_max_users:
            continue
        for a, b in combinations(counted, 2):
            pair = [*users[a], *users[b]]
            links.append(
                DerivedLink(
                    LinkKind.DEVICE,
                    a,
                    b,
                    {
                        "device_key": key,
                        "devices": len(pair),
                        "sign_ins": sum(d.sign_ins for d in pair),
                        # Shared from when the second of the two users first used it.
                        "shared_since": ns_to_iso(
                            max(
                                min(d.first_seen_ns for d in users[a]),
                                min(d.first_seen_ns for d in users[b]),
                            )
                        ),
                        "last_seen_at": ns_to_iso(max(d.last_seen_ns for d in pair)),
                        "users_on_device": len(counted),
                        "users_with_fingerprint": len(users),
                    },
                )
            )
    return links
