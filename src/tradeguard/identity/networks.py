"""The network a client address signed in from: its IPv4 or IPv6 prefix (pure).

Beneficial-owner linking (surveillance) compares networks, never addresses: a household or an
office shares a prefix while its devices' addresses change (DHCP, IPv6 privacy addresses).
"""

from __future__ import annotations

import ipaddress

from tradeguard.core.masking import mask_ip

# The longest text an address is read from (an IPv6 address with a zone is under 64).
MAX_ADDRESS_CHARS = 64


def network_prefix(ip: str | None, *, ipv4_prefix: int, ipv6_prefix: int) -> str | None:
    """`203.0.113.7` with /24 -> `203.0.113.0/24`; None for a missing or malformed address.

    An IPv4 client reaching an IPv6 socket arrives as ::ffff:a.b.c.d: it is its IPv4 network.
    """
    if not ip or len(ip) > MAX_ADDRESS_CHARS:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = ipv4_prefix if isinstance(address, ipaddress.IPv4Address) else ipv6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


# What the project's masking (core/masking.py `mask_ip`) shows of an address: an IPv4 /16,
# an IPv6 /32.
MASKED_BITS = {4: 16, 6: 32}


def masked_network(network: str) -> str:
    """A network as a reviewer may see it: `mask_ip` of its address, or the network itself
    when it is wider than what the masking shows (a /8 says less than a /16)."""
    parsed = ipaddress.ip_network(network)
    if parsed.prefixlen < MASKED_BITS[parsed.version]:
        return str(parsed)
    return mask_ip(str(parsed.network_address)) or "***"
