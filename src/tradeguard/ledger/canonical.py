"""RFC 8785 JSON Canonicalization Scheme for ledger events.

Integers beyond 2^53 cannot round-trip through IEEE 754 doubles (RFC 8785 section 3.2.2.3),
so nanosecond timestamps, Decimals and UUIDs are written as strings before canonicalization.
Floats are refused outright: money and quantities are Decimal everywhere in tradeguard.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import rfc8785

from tradeguard.core.errors import InvalidInput

JSON_SAFE_INTEGER = 2**53 - 1


def to_json_value(value: Any, *, path: str = "$") -> Any:
    """Convert a value to the JSON subset the ledger stores; raise on anything ambiguous."""
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
            result[key] = to_json_value(item, path=f"{path}.{key}")
        return result
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [to_json_value(item, path=f"{path}[{i}]") for i, item in enumerate(value)]
    raise InvalidInput(f"ledger events cannot hold {type(value).__name__} ({path})")


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The RFC 8785 canonical UTF-8 serialization of a JSON object."""
    return bytes(rfc8785.dumps(to_json_value(document)))
