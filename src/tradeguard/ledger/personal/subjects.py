"""Whose personal data an event holds: the subjects that own a data key (pure).

- `user:<id>`: a person with an account (customer or staff), for everything recorded about
  them or their sessions;
- `visitors:<YYYY-MM>`: people without an account (a sign-in with an unknown name, a
  sign-up refused): their addresses cannot be tied to anyone, so they are grouped by the
  calendar month (UTC) they were recorded in, and a whole month is forgotten at once (the
  retention job, or `tradeguard audit forget visitors:2026-01`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import InvalidInput
from tradeguard.ledger.domain import Party

USER: Final = "user"
VISITORS: Final = "visitors"
SUBJECT_KINDS: Final = frozenset({USER, VISITORS})
MAX_REASON_CHARS: Final = 500

# A user's id is the canonical text of a UUID (IdGenerator.new_str: UUIDv7, lowercase,
# 8-4-4-4-12), whoever created the account (sign-up, staff enrolment, administration).
# Anything else names no user that can exist: forgetting it would record a ledger event
# about nobody, and a typo would look like a completed erasure.
_USER_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


class PersonalDataEvent(StrEnum):
    SUBJECT_FORGOTTEN = "audit:subject:forgotten"


def visitors(now_ns: int) -> Party:
    """The subject owning personal data of people without an account, recorded now."""
    moment = datetime.fromtimestamp(now_ns // NS_PER_SECOND, tz=UTC)
    return Party(VISITORS, f"{moment.year:04d}-{moment.month:02d}")


SUBJECT_SHAPES: Final = (
    "a subject is user:<id> (a user's UUID), visitors:<YYYY-MM>, or a bare user id"
)


def parse_subject(text: str) -> Party:
    """`user:<id>`, `visitors:<YYYY-MM>`, or a bare user id; anything else is refused.

    A user id is read in either case and kept in the lowercase form users have."""
    value = text.strip()
    kind, sep, ident = value.partition(":")
    if not sep:
        kind, ident = USER, value
    if kind == USER:
        ident = ident.lower()
    return checked_subject(Party(kind, ident))


def checked_subject(subject: Party) -> Party:
    """`subject` when it is a well-formed subject that owns data keys; refused otherwise."""
    if subject.kind == USER and _USER_ID.fullmatch(subject.id):
        return subject
    if subject.kind == VISITORS and _MONTH.fullmatch(subject.id):
        return subject
    raise InvalidInput(SUBJECT_SHAPES)


def forget_reason(text: str) -> str:
    """The stated reason for forgetting a subject, trimmed; refused when empty or too long."""
    reason = " ".join(text.split())
    if not reason:
        raise InvalidInput("say why the subject is forgotten (e.g. the erasure request's id)")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"the reason is at most {MAX_REASON_CHARS} characters")
    return reason
