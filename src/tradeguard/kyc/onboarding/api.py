"""Onboarding HTTP API: the customer's own application under /api/v1/kyc, the data inventory
for any signed-in user, and staff review under /api/v1/admin/kyc. Thin: parse, authorize
(the guard), call the service, shape. The tax id only ever comes in."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import Permission
from tradeguard.core.clock import ns_to_iso
from tradeguard.core.context import request_id_var
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import AUTHENTICATED, CurrentPrincipal, guarded, problems
from tradeguard.kyc.contracts import RiskRating
from tradeguard.kyc.onboarding import schemas as s
from tradeguard.kyc.onboarding.container import OnboardingServices
from tradeguard.kyc.onboarding.domain import ApplicationStatus
from tradeguard.kyc.onboarding.inventory import INVENTORY, RECORDS
from tradeguard.kyc.onboarding.models import Application
from tradeguard.kyc.onboarding.service import ApplicationView
from tradeguard.ledger.domain import Party

router = APIRouter(prefix="/api/v1/kyc", tags=["kyc"])
staff_router = APIRouter(prefix="/api/v1/admin/kyc", tags=["kyc (staff)"])

IdPath = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
StatusQuery = Annotated[
    Literal["draft", "submitted", "info_requested", "approved", "refused", "withdrawn"] | None,
    Query(description="Only applications in this status (default: submitted, the queue)."),
]


def onboarding(request: Request) -> OnboardingServices:
    services: OnboardingServices = request.app.state.onboarding
    return services


def _iso(ns: int | None) -> str | None:
    return ns_to_iso(ns) if ns is not None else None


def _fields(view: ApplicationView) -> dict[str, object]:
    row = view.row
    return {
        "id": row.id,
        "status": row.status,
        "sections": view.sections,
        "tax_id": s.TaxIdOut(kind=row.tax_id_kind, last4=row.tax_id_last4),
        "created_at": ns_to_iso(row.created_ns),
        "updated_at": ns_to_iso(row.updated_ns),
        "submitted_at": _iso(row.submitted_ns),
        "decided_at": _iso(row.decided_ns),
        "message": row.customer_message,
        "consent_version": row.consent_version,
        "consented_at": _iso(row.consent_ns),
        "marketing_opt_in": row.marketing_opt_in,
    }


def application_out(view: ApplicationView) -> s.ApplicationOut:
    return s.ApplicationOut.model_validate(_fields(view))


def staff_out(view: ApplicationView, blockers: list[str]) -> s.StaffApplicationOut:
    row = view.row
    return s.StaffApplicationOut.model_validate(
        _fields(view)
        | {
            "user_id": row.user_id,
            "masked": True,
            "rating": s.RatingOut(
                rating=row.rating,
                score=row.rating_score,
                overridden=row.rating_overridden,
                factors=list(row.rating_factors or []),
                next_review_on=row.next_review_on,
                proposed=row.rating_proposed,
                proposed_by=row.rating_proposed_by,
            ),
            "screening": row.screening,
            "duplicate_tax_id": row.duplicate_tax_id,
            "duplicate_resolved_by": row.duplicate_resolved_by,
            "edd_recorded": row.edd_ns is not None,
            "address_accepted_by": row.address_accepted_by,
            "first_approver": row.first_approver,
            "decided_by": row.decided_by,
            "blockers": blockers,
        }
    )


def queue_item(row: Application) -> s.QueueItemOut:
    return s.QueueItemOut(
        id=row.id,
        user_id=row.user_id,
        status=row.status,
        submitted_at=_iso(row.submitted_ns),
        rating=row.rating,
        screening=row.screening,
        duplicate_tax_id=row.duplicate_tax_id,
        first_approver=row.first_approver,
    )


def _actor(principal: CurrentPrincipal) -> Party:
    return Party("user", principal.user_id)


# The customer ---------------------------------------------------------------------------------


@router.get("/application", responses=problems(404), **guarded(Permission.KYC_APPLY))
async def read_application(request: Request, principal: CurrentPrincipal) -> s.ApplicationOut:
    """Your latest account application (the tax id as its last four digits only)."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        return application_out(await services.applications.mine(session, principal.user_id))


@router.put("/application", responses=problems(409, 422), **guarded(Permission.KYC_APPLY))
async def save_application(
    body: s.ApplicationIn, request: Request, principal: CurrentPrincipal
) -> s.ApplicationOut:
    """Create or update your draft: fields given replace those saved, null clears one. Each
    field is checked as it is saved; a bad one changes nothing and is named in the error."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        view = await services.applications.save(
            session,
            user_id=principal.user_id,
            sections=body.given(),
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return application_out(view)


@router.post("/application/submit", responses=problems(409, 422), **guarded(Permission.KYC_APPLY))
async def submit_application(request: Request, principal: CurrentPrincipal) -> s.ApplicationOut:
    """Submit for review; records your consent to the current terms and privacy notice."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        view = await services.applications.submit(
            session,
            user_id=principal.user_id,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return application_out(view)


@router.post("/application/withdraw", responses=problems(409), **guarded(Permission.KYC_APPLY))
async def withdraw_application(request: Request, principal: CurrentPrincipal) -> s.ApplicationOut:
    """Withdraw your open application (you may start a new one)."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        view = await services.applications.withdraw(
            session,
            user_id=principal.user_id,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return application_out(view)


@router.get("/inventory", **guarded(AUTHENTICATED))
async def data_inventory(request: Request, principal: CurrentPrincipal) -> s.InventoryOut:
    """Every field the application collects, then what the other KYC/AML parts hold about
    the customer (documents, screening, EDD, payees, AML work): purpose, legal basis,
    whether required, retention and encryption class (PRIV-1)."""
    services = onboarding(request)
    return s.InventoryOut(
        terms_version=services.deps.terms_version,
        entries=[
            s.InventoryEntryOut.model_validate(entry, from_attributes=True)
            for entry in (*INVENTORY, *RECORDS)
        ],
    )


# Staff ----------------------------------------------------------------------------------------


@staff_router.get("/applications", **guarded(Permission.KYC_REVIEW))
async def list_applications(
    request: Request, principal: CurrentPrincipal, status: StatusQuery = None
) -> list[s.QueueItemOut]:
    """The review queue (submitted, oldest first), or applications in another status."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        statuses = [ApplicationStatus(status or ApplicationStatus.SUBMITTED.value)]
        rows = await services.applications.listing(session, statuses)
        return [queue_item(row) for row in rows]


async def _staff_view(
    services: OnboardingServices, session: AsyncSession, application_id: str
) -> s.StaffApplicationOut:
    view = await services.applications.staff_view(session, application_id)
    blockers = await services.applications.blockers(session, view.row)
    return staff_out(view, blockers)


@staff_router.get(
    "/applications/{application_id}", responses=problems(404), **guarded(Permission.KYC_REVIEW)
)
async def read_for_review(
    application_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.StaffApplicationOut:
    """An application with its personal data masked (initials, year of birth, no street),
    its rating and factors, and what still blocks approval."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        return await _staff_view(services, session, application_id)


@staff_router.post(
    "/applications/{application_id}/unmask",
    responses=problems(404, 422),
    **guarded(Permission.KYC_REVIEW),
)
async def unmask(
    application_id: IdPath, body: s.RevealIn, request: Request, principal: CurrentPrincipal
) -> s.RevealedOut:
    """Reveal one masked detail for a stated reason (audited). The tax id is never shown."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        value = await services.applications.reveal(
            session,
            application_id=application_id,
            field=body.field,
            reason=body.reason,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
    return s.RevealedOut(field=body.field, value=value)


@staff_router.post(
    "/applications/{application_id}/approve",
    responses=problems(404, 409),
    **guarded(Permission.KYC_REVIEW),
)
async def approve(
    application_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.StaffApplicationOut:
    """Approve (sanctions clear, identity and address verified, EDD done when high risk, no
    open duplicate tax id); a high-risk application needs a second staff member."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        await services.applications.approve(
            session,
            application_id=application_id,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return await _staff_view(services, session, application_id)


@staff_router.post(
    "/applications/{application_id}/refuse",
    responses=problems(404, 409, 422),
    **guarded(Permission.KYC_REVIEW),
)
async def refuse(
    application_id: IdPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.StaffApplicationOut:
    """Refuse, with the reason the customer is told."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        await services.applications.refuse(
            session,
            application_id=application_id,
            reason=body.reason,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return await _staff_view(services, session, application_id)


@staff_router.post(
    "/applications/{application_id}/request-info",
    responses=problems(404, 409, 422),
    **guarded(Permission.KYC_REVIEW),
)
async def request_info(
    application_id: IdPath, body: s.MessageIn, request: Request, principal: CurrentPrincipal
) -> s.StaffApplicationOut:
    """Send the application back to the customer with a message."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        await services.applications.request_info(
            session,
            application_id=application_id,
            message=body.message,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return await _staff_view(services, session, application_id)


@staff_router.post(
    "/applications/{application_id}/edd",
    responses=problems(404, 409, 422),
    **guarded(Permission.KYC_REVIEW),
)
async def record_edd(
    application_id: IdPath, body: s.NoteIn, request: Request, principal: CurrentPrincipal
) -> s.StaffApplicationOut:
    """Record enhanced due diligence: the source-of-wealth evidence seen (sealed)."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        await services.applications.record_edd(
            session,
            application_id=application_id,
            note=body.note,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return await _staff_view(services, session, application_id)


@staff_router.post(
    "/applications/{application_id}/accept-address",
    responses=problems(404, 409, 422),
    **guarded(Permission.KYC_REVIEW),
)
async def accept_address(
    application_id: IdPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.StaffApplicationOut:
    """Accept the residential address on other evidence, with the reason."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        await services.applications.accept_address(
            session,
            application_id=application_id,
            reason=body.reason,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return await _staff_view(services, session, application_id)


@staff_router.post(
    "/applications/{application_id}/resolve-duplicate",
    responses=problems(404, 409, 422),
    **guarded(Permission.KYC_REVIEW),
)
async def resolve_duplicate(
    application_id: IdPath, body: s.ReasonIn, request: Request, principal: CurrentPrincipal
) -> s.StaffApplicationOut:
    """Clear the duplicate tax id flag after looking into it, with the reason."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        await services.applications.resolve_duplicate(
            session,
            application_id=application_id,
            reason=body.reason,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return await _staff_view(services, session, application_id)


@staff_router.post(
    "/applications/{application_id}/rating",
    responses=problems(404, 409, 422),
    **guarded(Permission.KYC_REVIEW),
)
async def override_rating(
    application_id: IdPath, body: s.RatingIn, request: Request, principal: CurrentPrincipal
) -> s.StaffApplicationOut:
    """Set the customer's risk rating instead of the computed one, with the reason."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        await services.applications.override_rating(
            session,
            application_id=application_id,
            rating=RiskRating(body.rating),
            reason=body.reason,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return await _staff_view(services, session, application_id)


@staff_router.post(
    "/applications/{application_id}/reviewed",
    responses=problems(404, 409, 422),
    **guarded(Permission.KYC_REVIEW),
)
async def record_periodic_review(
    application_id: IdPath, body: s.NoteIn, request: Request, principal: CurrentPrincipal
) -> s.StaffApplicationOut:
    """Record an approved customer's periodic review: re-rated, the next date set."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        await services.applications.record_review(
            session,
            application_id=application_id,
            note=body.note,
            actor=_actor(principal),
            request_id=request_id_var.get(),
        )
        return await _staff_view(services, session, application_id)


@staff_router.get("/reviews/due", **guarded(Permission.KYC_REVIEW))
async def reviews_due(request: Request, principal: CurrentPrincipal) -> list[s.QueueItemOut]:
    """Approved customers whose periodic review (by rating: 1, 2 or 3 years) is due."""
    services = onboarding(request)
    async with unit_of_work(services.sessions) as session:
        return [queue_item(row) for row in await services.applications.reviews_due(session)]
