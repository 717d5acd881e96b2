"""Sanctions staff API under /api/v1/admin/sanctions: list versions and loading one from the
server's configured source (sanctions:list), ad hoc screening and the review of hits
(sanctions:review). Thin: parse, authorize (the guard), call the service, shape."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from tradeguard.access.domain import Permission
from tradeguard.core.clock import ns_to_iso
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import ServiceUnavailable
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import CurrentPrincipal, guarded, problems
from tradeguard.kyc.contracts import ScreeningDecision, SubjectKind
from tradeguard.kyc.sanctions import schemas as s
from tradeguard.kyc.sanctions.common import HitStatus
from tradeguard.kyc.sanctions.container import SanctionsServices
from tradeguard.kyc.sanctions.index import EVERY_KIND, INDIVIDUALS, Match
from tradeguard.kyc.sanctions.models import SanctionsHit, SanctionsListVersion, SanctionsRescreen
from tradeguard.kyc.sanctions.tasks import run_rescreen
from tradeguard.ledger.domain import Party

logger = logging.getLogger("tradeguard.kyc.sanctions")

router = APIRouter(prefix="/api/v1/admin/sanctions", tags=["sanctions (staff)"])

IdPath = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]


class SourceNotConfigured(ServiceUnavailable):
    slug = "sanctions-source-not-configured"
    title = "No sanctions list source is configured"


def sanctions(request: Request) -> SanctionsServices:
    services: SanctionsServices = request.app.state.sanctions
    return services


def version_out(row: SanctionsListVersion, current_id: str | None) -> s.VersionOut:
    return s.VersionOut(
        id=row.id,
        list_name=row.list_name,
        sha256=row.sha256,
        file_hashes=row.file_hashes,
        source=row.source,
        entries=row.entries,
        names=row.names,
        aliases=row.aliases,
        addresses=row.addresses,
        loaded_at=ns_to_iso(row.loaded_ns),
        loaded_by=row.loaded_by,
        current=row.id == current_id,
    )


def match_out(m: Match) -> s.MatchOut:
    return s.MatchOut(
        entry_id=m.entry.entry_id,
        entry_kind=m.entry.kind.value,
        entry_name=m.entry.name,
        matched_name=m.name.name,
        name_kind=m.name.kind.value,
        score=round(m.score, 4),
        decision=m.decision.value,
        programs=list(m.entry.programs),
        linked_to=list(m.entry.linked_to),
        reasons=list(m.reasons),
    )


def hit_out(services: SanctionsServices, row: SanctionsHit) -> s.HitOut:
    service = services.service
    return s.HitOut(
        id=row.id,
        subject_kind=row.subject_kind,
        subject_ref=row.subject_ref,
        user_id=row.user_id,
        list_name=row.list_name,
        list_version=row.version_id,
        entry_id=row.entry_id,
        matched_name=row.matched_name,
        score=row.score,
        decision=service.hit_of(row).decision.value,
        status=row.status,
        reasons=service.reasons(row),
        created_at=ns_to_iso(row.created_ns),
        reviewed_by=row.reviewed_by,
        reviewed_at=ns_to_iso(row.reviewed_ns) if row.reviewed_ns else None,
        review_note=service.review_note(row),
    )


def rescreen_out(row: SanctionsRescreen) -> s.RescreenOut:
    return s.RescreenOut(
        id=row.id,
        list_version=row.version_id,
        status=row.status,
        subjects=row.subjects,
        new_hits=row.new_hits,
        started_at=ns_to_iso(row.started_ns),
        finished_at=ns_to_iso(row.finished_ns) if row.finished_ns else None,
    )


@router.get("/versions", **guarded(Permission.SANCTIONS_LIST))
async def list_versions(request: Request) -> list[s.VersionOut]:
    """The list versions loaded, newest (the current one) first."""
    services = sanctions(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.service.versions(session)
    current = rows[0].id if rows else None
    return [version_out(r, current) for r in rows]


@router.post(
    "/versions",
    status_code=201,
    responses=problems(409, 422, 503),
    **guarded(Permission.SANCTIONS_LIST),
)
async def load_version(body: s.LoadIn, request: Request, principal: CurrentPrincipal) -> s.LoadOut:
    """Load the list from the server's configured source (sanctions_list_source). The same
    files as the current version change nothing (created: false). A new version starts a
    re-screening of every registered subject (GET /rescreens/{id} shows its progress)."""
    services = sanctions(request)
    location = services.deps.source
    if not location:
        raise SourceNotConfigured(
            "set TRADEGUARD_SANCTIONS_LIST_SOURCE to a directory or https URL, or load with "
            "`tradeguard sanctions load PATH|URL`"
        )
    files = await services.service.fetch(location)
    actor = Party("user", principal.user_id)
    async with unit_of_work(services.sessions) as session:
        result = await services.service.load(
            session,
            files,
            source=location,
            actor=actor,
            request_id=request_id_var.get(),
            allow_shrink=body.allow_shrink,
            reason=body.reason,
        )
        out = version_out(result.version, result.version.id)
        rescreen_id = None
        if result.created and body.rescreen:
            started = await services.service.start_rescreen(
                session, actor=actor, request_id=request_id_var.get()
            )
            rescreen_id = started.id
    if rescreen_id is not None:
        start_rescreen_job(services, actor, rescreen_id)
    return s.LoadOut(version=out, created=result.created, rescreen_id=rescreen_id)


def start_rescreen_job(services: SanctionsServices, actor: Party, rescreen_id: str) -> None:
    """Run the re-screening in the background (its row shows the progress)."""

    async def job() -> None:
        try:
            report = await run_rescreen(services, actor=actor, rescreen_id=rescreen_id)
            logger.info(
                "sanctions re-screen %s: %d subjects, %d new hits",
                report.rescreen_id,
                report.subjects,
                len(report.new_hits),
            )
        except Exception as exc:  # a background job: logged (its row says failed)
            logger.warning("sanctions re-screen failed (%s)", type(exc).__name__)

    task = asyncio.create_task(job())
    services.jobs.add(task)
    task.add_done_callback(services.jobs.discard)


@router.get("/rescreens", **guarded(Permission.SANCTIONS_LIST))
async def list_rescreens(request: Request) -> list[s.RescreenOut]:
    """Re-screenings, newest first, with their progress."""
    services = sanctions(request)
    async with unit_of_work(services.sessions) as session:
        return [rescreen_out(r) for r in await services.service.rescreens(session)]


@router.post("/screen", responses=problems(422, 503), **guarded(Permission.SANCTIONS_REVIEW))
async def screen_name(body: s.ScreenIn, request: Request) -> s.ScreenOut:
    """Screen a name now (nothing is recorded): the matches at or above the review
    threshold, each with its score and reasons."""
    services = sanctions(request)
    async with unit_of_work(services.sessions) as session:
        version, matches = await services.service.search(
            session,
            body.name,
            birth_date=body.birth_date,
            nationality=body.nationality,
            kinds=EVERY_KIND if body.entities else INDIVIDUALS,
            limit=body.limit,
        )
    decision = matches[0].decision if matches else ScreeningDecision.CLEAR
    return s.ScreenOut(
        list_version=version, decision=decision.value, matches=[match_out(m) for m in matches]
    )


@router.get("/hits", **guarded(Permission.SANCTIONS_REVIEW))
async def list_hits(
    request: Request,
    status: Annotated[HitStatus | None, Query()] = None,
    subject_kind: Annotated[SubjectKind | None, Query()] = None,
    subject_ref: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[s.HitOut]:
    """Hits, newest first; filter by status (open, cleared, confirmed) or subject."""
    services = sanctions(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.service.hits(
            session,
            status=status,
            subject_kind=subject_kind,
            subject_ref=subject_ref,
            limit=limit,
        )
        return [hit_out(services, r) for r in rows]


@router.get("/hits/{hit_id}", responses=problems(404), **guarded(Permission.SANCTIONS_REVIEW))
async def get_hit(hit_id: IdPath, request: Request) -> s.HitOut:
    """One hit: the entry, score, decision, reasons and its review."""
    services = sanctions(request)
    async with unit_of_work(services.sessions) as session:
        return hit_out(services, await services.service.hit(session, hit_id))


@router.post(
    "/hits/{hit_id}/clear", responses=problems(404, 409), **guarded(Permission.SANCTIONS_REVIEW)
)
async def clear_hit(
    hit_id: IdPath, body: s.ReviewIn, request: Request, principal: CurrentPrincipal
) -> s.HitOut:
    """A false positive: cleared with the reason; the same entry (unchanged) is not raised
    again for this subject."""
    services = sanctions(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.service.clear(
            session,
            hit_id=hit_id,
            staff_id=principal.user_id,
            note=body.reason,
            request_id=request_id_var.get(),
        )
        return hit_out(services, row)


@router.post(
    "/hits/{hit_id}/confirm", responses=problems(404, 409), **guarded(Permission.SANCTIONS_REVIEW)
)
async def confirm_hit(
    hit_id: IdPath, body: s.ReviewIn, request: Request, principal: CurrentPrincipal
) -> s.HitOut:
    """The subject is the listed party: their standing is BLOCK."""
    services = sanctions(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.service.confirm(
            session,
            hit_id=hit_id,
            staff_id=principal.user_id,
            note=body.reason,
            request_id=request_id_var.get(),
        )
        return hit_out(services, row)
