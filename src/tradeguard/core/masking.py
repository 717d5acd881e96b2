"""Masking rules for personal data in staff views (IAC-1: minimum necessary access).

Shared by the back office's support view and the staff trading routes, so it lives in the
kernel: trading may not import the back office.

One rule per kind of value. Every rule replaces the hidden part with a fixed `***` (or one
`*` per digit where the count of digits is already public knowledge, as for a phone number
of a known country), so a masked value never reveals the length of what it hides.
"""

from __future__ import annotations

import ipaddress

HIDDEN = "***"


def mask_email(address: str) -> str:
    """`jane.doe@example.co.uk` -> `j***@e***.uk`: the first letter of each part and the
    top-level domain, enough to confirm an address the customer reads out, not to find it."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return HIDDEN
    labels = [label for label in domain.split(".") if label]
    if not labels:
        return f"{local[0]}{HIDDEN}@{HIDDEN}"
    tld = f".{labels[-1]}" if len(labels) > 1 else ""
    return f"{local[0]}{HIDDEN}@{labels[0][0]}{HIDDEN}{tld}"


def mask_phone(number: str) -> str:
    """`+14155550123` -> `+1******0123`: the first digit of the country code and the last
    four digits, the part a customer reads out to confirm it is theirs."""
    digits = [ch for ch in number if ch.isdigit()]
    if len(digits) < 7:
        return HIDDEN
    hidden = len(digits) - 5
    return f"+{digits[0]}{'*' * hidden}{''.join(digits[-4:])}"


def mask_ip(address: str | None) -> str | None:
    """`203.0.113.7` -> `203.0.*.*`, `2001:db8:85a3::1` -> `2001:db8:*`: the network an
    address belongs to (its provider, roughly its region), never the connection itself."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return HIDDEN
    if isinstance(parsed, ipaddress.IPv4Address):
        first, second, _, _ = str(parsed).split(".")
        return f"{first}.{second}.*.*"
    groups = parsed.exploded.split(":")
    return ":".join(group.lstrip("0") or "0" for group in groups[:2]) + ":*"


def mask_account_number(number: str) -> str:
    """`TG12345678` -> `TG****5678`: the prefix and last four characters, as statements do."""
    if len(number) <= 6:
        return HIDDEN
    return f"{number[:2]}{'*' * (len(number) - 6)}{number[-4:]}"


def mask_name(name: str) -> str:
    """`Jane Q. Doe` -> `J*** Q*** D***`: initials only."""
    initials = [word[0] for word in name.split() if word]
    return " ".join(f"{initial}{HIDDEN}" for initial in initials) or HIDDEN


def mask_postal_address(address: str) -> str:
    """`1 Main St, Springfield, IL 62701, US` -> `***, US`: only the last line element
    (the country), which decides which rules apply to the customer."""
    parts = [part.strip() for part in address.split(",") if part.strip()]
    if len(parts) < 2:
        return HIDDEN
    return f"{HIDDEN}, {parts[-1]}"
