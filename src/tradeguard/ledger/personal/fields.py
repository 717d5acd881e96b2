"""Which event fields are personal data: the deny list `Ledger.append` enforces (pure).

A ledger event is kept for seven years and can never be changed, so personal data written
into its plain `data` could never be erased. The append refuses any key below that names
personal data; such values go in the event's sealed personal section instead
(`LedgerEvent(personal=PersonalData(...))`), encrypted under the person's own key.

The list cannot recognize personal data by its value (a free-text `reason` may hold a name):
it catches the fields that are personal by their name, anywhere in `data`, so a new call
site that records an address or an email in plain text fails in its first test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from tradeguard.core.errors import TradeguardError

# Keys that are personal data wherever they appear, compared after normalization (lower
# case, "-" and " " as "_"). A bare `name` is not among them: instruments, rules and
# templates have names too; a person's name is recorded under one of the names below.
PERSONAL_KEYS = frozenset(
    {
        "first_name",
        "last_name",
        "full_name",
        "given_name",
        "family_name",
        "middle_name",
        "surname",
        "display_name",
        "legal_name",
        "username",
        "user_name",
        "device_name",
        "birth_date",
        "date_of_birth",
        "dob",
        "zip",
        "postcode",
        "post_code",
        "postal_code",
        "zip_code",
        "street",
        "city",
        "cidr",
        "cidrs",
        "ssn",
        "tax_id",
        "national_id",
        "passport",
        "passport_number",
        "user_agent",
        "useragent",
    }
)
# Key endings that make any key personal: `email`, `old_email`, `ip`, `client_ip`,
# `ip_address`, `postal_address`, `mobile_phone`, `browser_user_agent`, ...
PERSONAL_SUFFIXES = (
    "email",
    "e_mail",
    "phone",
    "phone_number",
    "mobile",
    "msisdn",
    "ip",
    "address",
    "user_agent",
)


class PersonalDataInPlaintext(TradeguardError):
    """A caller put personal data in an event's plain `data`: a programming error, refused
    before anything is written. The message names the fields, never their values."""

    status = 500
    slug = "personal-data-in-plaintext"
    title = "An audit event would have stored personal data in plain text"


def normalized(key: str) -> str:
    return key.strip().lower().replace("-", "_").replace(" ", "_")


@lru_cache(maxsize=4096)
def is_personal_key(key: str) -> bool:
    """Whether a field of this name holds personal data (by its name alone)."""
    name = normalized(key)
    if name in PERSONAL_KEYS:
        return True
    return any(name == suffix or name.endswith("_" + suffix) for suffix in PERSONAL_SUFFIXES)


def personal_paths(data: Mapping[str, Any], path: str = "data") -> Iterator[str]:
    """The paths of personal-named keys in `data`, nested mappings and lists included."""
    for key, value in data.items():
        here = f"{path}.{key}"
        if isinstance(key, str) and is_personal_key(key):
            yield here
        yield from _nested(value, here)


def _nested(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, Mapping):
        yield from personal_paths(value, path)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        for index, item in enumerate(value):
            yield from _nested(item, f"{path}[{index}]")


# Values that hold no keys: the check skips them without an isinstance walk.
_LEAVES = frozenset({str, int, bool, float, Decimal, type(None)})


def _holds_personal(value: Any) -> bool:
    """Whether `value` holds a personal-named key anywhere (the append path's fast check)."""
    kind = type(value)
    if kind in _LEAVES:
        return False
    if kind is dict or isinstance(value, Mapping):
        for key, item in value.items():
            if type(key) is str and is_personal_key(key):
                return True
            if type(item) not in _LEAVES and _holds_personal(item):
                return True
        return False
    if kind is list or kind is tuple or isinstance(value, Sequence):
        if isinstance(value, bytes | bytearray):
            return False
        for item in value:
            if type(item) not in _LEAVES and _holds_personal(item):
                return True
    return False


def refuse_plaintext_personal(data: Mapping[str, Any]) -> None:
    """Raise `PersonalDataInPlaintext` naming every personal-named field in `data`."""
    if not _holds_personal(data):
        return
    found = list(personal_paths(data))
    raise PersonalDataInPlaintext(
        f"{', '.join(found)}: personal data belongs in the event's personal section"
    )
