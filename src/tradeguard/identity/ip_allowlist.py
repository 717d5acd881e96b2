"""Per-user IP allowlists (SESS-4, ACCT-3): IPv4 and IPv6 CIDRs (pure)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from tradeguard.core.errors import InvalidInput

MAX_ENTRIES = 50


def normalize(cidrs: Iterable[str]) -> list[str]:
    """Validate and canonicalize CIDRs; refuse host bits, junk and over-long lists."""
    result: list[str] = []
    for raw in cidrs:
        text = raw.strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise InvalidInput(
                f"{text[:60]!r} is not a CIDR block (e.g. 203.0.113.0/24 or 2001:db8::/32)"
            ) from None
        canonical = str(network)
        if canonical not in result:
            result.append(canonical)
    if len(result) > MAX_ENTRIES:
        raise InvalidInput(f"an allowlist holds at most {MAX_ENTRIES} blocks")
    return result


def client_bucket(ip: str | None) -> str:
    """The unit an address-based limit counts: one IPv4 address, or an IPv6 /64.

    An IPv6 client usually holds a whole /64, so counting single addresses would let it
    rotate through 2^64 of them to dodge any limit.
    """
    if ip is None:
        return "-"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "-"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def allowed(cidrs: Sequence[str], ip: str | None) -> bool:
    """An empty list allows everything (the allowlist is optional); otherwise the IP must match."""
    if not cidrs:
        return True
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    # An IPv4 client reaching an IPv6 socket arrives as ::ffff:a.b.c.d; compare it as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(cidr) for cidr in cidrs)
