"""Device fingerprints (SESS-3): a digest of stable client attributes (pure)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

# Attributes that stay the same across a browser's or app's sessions. The fingerprint is a
# risk signal, never an identifier by itself: the device token is what binds a device.
FINGERPRINT_FIELDS = ("user_agent", "platform", "language", "timezone", "screen", "app_version")


def fingerprint(attributes: Mapping[str, str | None]) -> bytes:
    stable = {name: (attributes.get(name) or "")[:256] for name in FINGERPRINT_FIELDS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).digest()


def _printable(text: str) -> str:
    # Client-supplied: it is quoted in emails and UIs, so no control characters or newlines.
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def device_name(attributes: Mapping[str, str | None]) -> str:
    agent = _printable(attributes.get("user_agent") or "")[:80] or "unknown client"
    platform = _printable(attributes.get("platform") or "")[:30]
    return f"{agent} ({platform})" if platform else agent
