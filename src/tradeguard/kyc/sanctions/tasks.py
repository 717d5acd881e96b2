"""Re-screening every registered subject against the current list version: a job that
reads the subjects once, screens them in memory, and records only new hits, a batch of
subjects per transaction with its progress stored (so an operator sees how far it got)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from tradeguard.core.errors import TradeguardError
from tradeguard.db.engine import unit_of_work
from tradeguard.kyc.contracts import ScreeningSubject
from tradeguard.kyc.sanctions.container import SanctionsServices
from tradeguard.ledger.domain import Party

BATCH = 500
# Give the event loop a turn this often (the API runs the job beside requests).
_YIELD_EVERY = 50
RESCREEN_ACTOR = Party("system", "sanctions-rescreen")


@dataclass(frozen=True, slots=True)
class NewHit:
    hit_id: str
    subject_kind: str
    subject_ref: str
    user_id: str
    entry_id: str
    matched_name: str
    score: float
    decision: str


@dataclass(slots=True)
class RescreenReport:
    rescreen_id: str
    version_id: str
    subjects: int = 0
    skipped: int = 0
    new_hits: list[NewHit] = field(default_factory=list)


Progress = Callable[[int, int], None]


async def run_rescreen(
    services: SanctionsServices,
    *,
    actor: Party = RESCREEN_ACTOR,
    progress: Progress | None = None,
    batch: int = BATCH,
    rescreen_id: str | None = None,
) -> RescreenReport:
    """Screen every subject of every registered source; report the new hits only.
    `rescreen_id`: a run already started (and recorded) by the caller."""
    service = services.service
    async with unit_of_work(services.sessions) as session:
        if rescreen_id is None:
            row = await service.start_rescreen(session, actor=actor)
        else:
            row = await service.rescreen_row(session, rescreen_id)
        report = RescreenReport(row.id, row.version_id)
        index = await service.index(session)
        known: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for kind, ref, entry_id, entry_hash in await service.known_pairs(session):
            known.setdefault((kind, ref), set()).add((entry_id, entry_hash))
        subjects: list[ScreeningSubject] = []
        for source in list(service.sources.values()):
            async for subject in source.subjects(session):
                subjects.append(subject)
    total = len(subjects)
    if progress:
        progress(0, total)
    try:
        for start in range(0, total, batch):
            async with unit_of_work(services.sessions) as session:
                for n, subject in enumerate(subjects[start : start + batch]):
                    if n % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                    try:
                        matches = service.matches_for(index, subject)
                    except TradeguardError:
                        # A stored name with nothing to screen (no letters): counted, skipped.
                        report.skipped += 1
                        continue
                    pairs = known.setdefault((subject.kind.value, subject.ref), set())
                    rows = await service.record(
                        session,
                        subject=subject,
                        matches=matches,
                        known=pairs,
                        version_id=index.version,
                        reason="rescreen",
                        actor=actor,
                        request_id=None,
                    )
                    report.new_hits.extend(
                        NewHit(
                            r.id,
                            r.subject_kind,
                            r.subject_ref,
                            r.user_id,
                            r.entry_id,
                            r.matched_name,
                            r.score,
                            r.decision,
                        )
                        for r in rows
                    )
                report.subjects = min(total, start + batch)
                await service.progress(
                    session,
                    report.rescreen_id,
                    subjects=report.subjects,
                    new_hits=len(report.new_hits),
                )
            if progress:
                progress(report.subjects, total)
    except BaseException as exc:
        async with unit_of_work(services.sessions) as session:
            await service.finish_rescreen(
                session,
                report.rescreen_id,
                subjects=report.subjects,
                new_hits=len(report.new_hits),
                actor=actor,
                error=type(exc).__name__,
            )
        raise
    async with unit_of_work(services.sessions) as session:
        await service.finish_rescreen(
            session,
            report.rescreen_id,
            subjects=report.subjects,
            new_hits=len(report.new_hits),
            actor=actor,
        )
    return report
