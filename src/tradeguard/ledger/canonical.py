"""RFC 8785 JSON Canonicalization Scheme for ledger events.

Integers beyond 2^53 cannot round-trip through IEEE 754 doubles (RFC 8785 section 3.2.2.3),
so nanosecond timestamps, Decimals and UUIDs are written as strings before canonicalization.
Floats are refused outright: money and quantities are Decimal everywhere in tradeguard.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import rfc8785

from tradeguard.core.errors import InvalidInput

JSON_SAFE_INTEGER = 2**53 - 1


class _Refused(Exception):
    """`_plain` met a value `_checked` refuses: `_checked` runs again from the top to name
    where."""


def to_json_value(value: Any, *, path: str = "$") -> Any:
    """Convert a value to the JSON subset the ledger stores; raise on anything ambiguous."""
    try:
        return _plain(value)
    except _Refused:
        return _checked(value, path=path)


def _plain(value: Any) -> Any:
    """`_checked`'s result, faster for what events hold: exact built-in types take a direct
    branch, with no path string built per key (every order writes two events and a request
    fingerprint); anything else goes through `_checked` itself. Raises `_Refused` where
    `_checked` would raise."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is int:
        return str(value) if abs(value) > JSON_SAFE_INTEGER else value
    if kind is dict:
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Refused
            result[key] = _plain(item)
        return result
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    if kind is Decimal:
        if not value.is_finite():
            raise _Refused
        return str(value)
    try:
        return _checked(value)
    except InvalidInput:
        raise _Refused from None


def _checked(value: Any, *, path: str = "$") -> Any:
    """The conversion rules, naming the path of a refused value."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) > JSON_SAFE_INTEGER:
            return str(value)
        return value
    if isinstance(value, float):
        raise InvalidInput(f"ledger events do not hold binary floats ({path}); use Decimal")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidInput(f"ledger events hold finite decimals only ({path})")
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"ledger event keys must be strings ({path})")
            result[key] = _checked(item, path=f"{path}.{key}")
        return result
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_checked(item, path=f"{path}[{i}]") for i, item in enumerate(value)]
    raise InvalidInput(f"ledger events cannot hold {type(value).__name__} ({path})")


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The RFC 8785 canonical UTF-8 serialization of a JSON object."""
    value = to_json_value(document)
    # For the values left after to_json_value (null, booleans, integers within 2^53, strings,
    # arrays, objects) the standard library's compact, key-sorted, non-ASCII-preserving
    # output is the canonical form, written in C (the pure-Python rfc8785 costs some 0.3 ms an
    # order event): RFC 8785 section 3.2.2.2 escapes exactly what it escapes (the quote, the
    # backslash, U+0000..U+001F, with \b \f \n \r \t short and the rest as lowercase
    # \u00xx), and integers print alike. Two cases differ and go to rfc8785: a character
    # beyond U+FFFF anywhere (section 3.2.3 sorts keys by UTF-16 code units, Python by code
    # points; they disagree only there), and a lone surrogate (not encodable as UTF-8).
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if text.isascii() or max(text) <= _LAST_BMP:
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            pass
    return bytes(rfc8785.dumps(value))


_LAST_BMP = "\uffff"
