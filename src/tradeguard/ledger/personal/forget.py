"""Forget a subject: destroy its data keys and record that it was done (crypto-shredding).

The subject's wrapped keys are cleared in the caller's transaction together with a ledger
event that names the subject, who forgot it and why, and which keys were destroyed, but no
personal data. Every event that sealed personal data under those keys keeps its bytes, its
hash and its place in the chain; its personal fields read as ERASED from then on.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.personal import repository
from tradeguard.ledger.personal.subjects import PersonalDataEvent, checked_subject, forget_reason
from tradeguard.ledger.service import Ledger


@dataclass(frozen=True, slots=True)
class Forgotten:
    subject: str
    destroyed_keys: tuple[str, ...]
    event_id: str


async def forget_subject(
    session: AsyncSession,
    *,
    ledger: Ledger,
    subject: Party,
    actor: Party,
    reason: str,
    now_ns: int,
) -> Forgotten:
    """Destroy `subject`'s live data keys and audit it; the ids of the keys destroyed (none
    when nothing was ever sealed for the subject: the request is recorded all the same)."""
    why = forget_reason(reason)
    subject = checked_subject(subject)
    name = f"{subject.kind}:{subject.id}"
    destroyed = await repository.destroy_live_keys(session, name, now_ns)
    if ledger.subject_keys is not None:
        ledger.subject_keys.forget_cached(name)
    appended = await ledger.append(
        session,
        LedgerEvent(
            type=PersonalDataEvent.SUBJECT_FORGOTTEN,
            actor=actor,
            subject=subject,
            data={"destroyed_keys": destroyed, "reason": why},
        ),
    )
    return Forgotten(name, tuple(destroyed), appended.event_id)
