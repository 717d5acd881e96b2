"""Device fingerprints (SESS-3) and the plain-text names devices are shown under (pure)."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping

# Attributes that stay the same across a browser's or app's sessions. The fingerprint is a
# risk signal, never an identifier by itself: the device token is what binds a device.
FINGERPRINT_FIELDS = ("user_agent", "platform", "language", "timezone", "screen", "app_version")
DEVICE_NAME_MAX = 120  # the column's width
USER_AGENT_MAX = 256

# A tag, or the unterminated start of one ("<svg onload=alert(1)" with no closing bracket).
_MARKUP = re.compile(r"<[^<>]*>?")
# Character references (&lt; &#60; &#x3c;) would turn back into markup where decoded.
_CHARACTER_REFERENCE = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?")
# Control, format (bidirectional overrides that reorder what a reader sees), separator,
# private-use, surrogate and unassigned code points.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
_MARKUP_CHARACTERS = frozenset("<>\"'`")


def fingerprint(attributes: Mapping[str, str | None]) -> bytes:
    stable = {name: (attributes.get(name) or "")[:256] for name in FINGERPRINT_FIELDS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).digest()


def plain_text(raw: str | None, *, limit: int) -> str:
    """Client-supplied text as one line of plain text, at most `limit` characters.

    Device names and user agents come from the client and are quoted in emails and pages:
    markup and character references are removed (not escaped: the reader needs no tags in
    a device name), control and bidirectional-override characters become spaces, runs of
    whitespace collapse, and the result is cut to `limit`.
    """
    if not raw:
        return ""
    text = unicodedata.normalize("NFKC", raw[: limit * 8])
    text = _CHARACTER_REFERENCE.sub(" ", _MARKUP.sub(" ", text))
    text = "".join(
        " " if unicodedata.category(ch) in _UNSAFE_CATEGORIES or ch in _MARKUP_CHARACTERS else ch
        for ch in text
    )
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def device_name(attributes: Mapping[str, str | None]) -> str:
    agent = plain_text(attributes.get("user_agent"), limit=80) or "unknown client"
    platform = plain_text(attributes.get("platform"), limit=30)
    name = f"{agent} ({platform})" if platform else agent
    return name[:DEVICE_NAME_MAX]


def user_agent_text(raw: str | None) -> str | None:
    """The user agent as stored with a session and listed back to its owner."""
    return plain_text(raw, limit=USER_AGENT_MAX) or None
