"""Card numbers and US tax ids inside free text (PCI DSS v4 3.5.1: PAN unreadable anywhere).

People type them where they do not belong: a halt's reason, an unmask justification, a case
note. Masked here before such text is stored (`ScrubbedText` columns), appended to the
audit ledger (which can never be edited afterwards) or logged.

- A card number is a run of 13 to 19 digits passing the Luhn check, written with single
  spaces, dashes or dots between digits, as people write them. Digits run on into more
  groups ("4111111111111111 12", a card and a month) are searched group by group, so a
  valid number next to other digits is still found.
- A tax id is written with dashes: SSN and ITIN `123-45-6789`, EIN `12-3456789`.

Both are bounded so that identifiers are left alone: a run that touches a letter, an
underscore or a dash followed by more of an identifier (a UUID's groups, `TG83917868`) is
not a candidate, and dates, times and decimal amounts are too short or fail the checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

REDACTED_PAN: Final = "[REDACTED-PAN]"
REDACTED_TAX_ID: Final = "[REDACTED-TAX-ID]"

# Digit groups with single separators; not inside a word or a dashed identifier.
_PAN_CANDIDATE = re.compile(r"(?<![\w-])\d+(?:[ .-]\d+)*(?![\w]|-\w)")
_SPLIT = re.compile(r"([ .-])")
_TAX_ID = re.compile(r"(?<![\w-])(?:\d{3}-\d{2}-\d{4}|\d{2}-\d{7})(?![\w-])")
# A cheap first look: most text has no run of 10 digits and separators at all.
_MAY_HOLD = re.compile(r"\d[\d .-]{8,}\d")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_window(groups: list[str], first: int) -> tuple[int, int] | None:
    """The first run of whole groups [start, end), from `first` on, whose digits make a
    card number."""
    for start in range(first, len(groups)):
        length = 0
        for end in range(start, len(groups)):
            length += len(groups[end])
            if length > 19:
                break
            if length >= 13 and luhn_valid("".join(groups[start : end + 1])):
                return start, end + 1
    return None


def _mask_candidate(match: re.Match[str]) -> str:
    tokens = _SPLIT.split(match.group(0))
    groups, separators = tokens[0::2], tokens[1::2]
    out: list[str] = []
    position = 0
    while (window := _card_window(groups, position)) is not None:
        start, end = window
        for index in range(position, start):
            out += [groups[index], separators[index]]
        out.append(REDACTED_PAN)
        if end < len(groups):
            out.append(separators[end - 1])
        position = end
    for index in range(position, len(groups)):
        out.append(groups[index])
        if index < len(separators):
            out.append(separators[index])
    return "".join(out)


def mask_sensitive_text(text: str) -> str:
    """`text` with every card number and tax id replaced by a marker."""
    if not _MAY_HOLD.search(text):
        return text
    if "-" in text:
        text = _TAX_ID.sub(REDACTED_TAX_ID, text)
    return _PAN_CANDIDATE.sub(_mask_candidate, text)


def holds_sensitive_text(text: str) -> bool:
    return mask_sensitive_text(text) != text


def scrub_value(value: Any) -> Any:
    """A JSON-shaped value with `mask_sensitive_text` applied to every string in it (keys
    are ours, values may be what people typed)."""
    if isinstance(value, str):
        return mask_sensitive_text(value)
    if isinstance(value, Mapping):
        return {key: scrub_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(item) for item in value]
    return value
