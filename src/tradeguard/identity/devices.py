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


def device_name(attributes: Mapping[str, str | None]) -> str:
    agent = (attributes.get("user_agent") or "unknown client")[:80]
    platform = attributes.get("platform")
    return f"{agent} ({platform[:30]})" if platform else agent
