"""Audit event types: stable strings shaped `source:subject:action`, defined once."""

from __future__ import annotations

import re
from enum import StrEnum

EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")


def is_valid_event_type(value: str) -> bool:
    return bool(EVENT_TYPE_PATTERN.fullmatch(value))


class AuditEvent(StrEnum):
    """Event types written by the platform core; domains add their own enums."""

    SYSTEM_INITIALIZED = "system:platform:initialized"
    SYSTEM_DEMO_SEEDED = "system:demo:seeded"
    INSTRUMENT_CREATED = "trading:instrument:created"
    USER_CREATED = "identity:user:created"
