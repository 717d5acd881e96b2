"""Audit ledger search API under /api/v1/audit (compliance:audit): search with keyset pages,
and a streamed CSV or JSON export of everything a search matches (AUD-2, AUD-3, AUD-4).

Every search and export is itself a ledger event naming the searcher and the filters; an
export's event is committed before its first byte is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tradeguard.access.domain import Permission
from tradeguard.audit.search_schemas import (
    AuditEventOut,
    AuditEventPageOut,
    EventExportQuery,
    EventFilters,
    EventSearchQuery,
    ExportFormat,
)
from tradeguard.core.context import request_id_var
from tradeguard.db.engine import read_only, unit_of_work
from tradeguard.identity.guard import CurrentPrincipal, guarded
from tradeguard.ledger.domain import Party
from tradeguard.ledger.search import service
from tradeguard.ledger.search.query import EventFilter, build_filter
from tradeguard.ledger.search.results import csv_header, csv_row, json_item
from tradeguard.ledger.service import Ledger

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
JSON_MEDIA_TYPE = "application/json"
EXPORT_HEADERS = {
    "Content-Disposition": {
        "description": "attachment; filename=audit-events-<through seq>.<csv|json>",
        "schema": {"type": "string"},
    },
    "X-Audit-Through-Seq": {
        "description": "The chain position the export stops at (the head when it started)",
        "schema": {"type": "integer"},
    },
    "X-Audit-Event-Count": {
        "description": "How many events the export holds",
        "schema": {"type": "integer"},
    },
}


@dataclass(frozen=True, slots=True)
class SearchRuntime:
    """What the search routes use of the running app (its lifespan builds all of it)."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    ledger: Ledger
    export_max_events: int


def search_runtime(request: Request) -> SearchRuntime:
    state = request.app.state
    return SearchRuntime(
        engine=state.runtime.engine,
        sessions=state.runtime.sessions,
        ledger=state.identity.deps.ledger,
        export_max_events=state.runtime.settings.audit_export_max_events,
    )


def _where(filters: EventFilters) -> EventFilter:
    return build_filter(
        event_type=filters.type,
        actor_id=filters.actor_id,
        subject_id=filters.subject_id,
        account_id=filters.account_id,
        order_id=filters.order_id,
        from_=filters.from_,
        to=filters.to,
    )


def _searcher(principal: CurrentPrincipal) -> Party:
    return Party("staff", principal.user_id)


@router.get(
    "/events",
    operation_id="audit.events.search",
    **guarded(Permission.COMPLIANCE_AUDIT),
)
async def search_audit_events(
    request: Request,
    principal: CurrentPrincipal,
    query: Annotated[EventSearchQuery, Query()],
) -> AuditEventPageOut:
    """Search the audit ledger: chained events matching every filter given, in chain order.

    Filters combine (AND): type (exact or a prefix ending in a colon), actor_id,
    subject_id, account_id, order_id, and the time range [from, to). Pages are keyset
    pages: pass next_cursor back, with the same filters and sort, for the next one. Only
    chained events are returned, each with its sequence number. The search is audited.
    """
    runtime = search_runtime(request)
    where = _where(query)
    async with runtime.engine.connect() as conn:
        await read_only(conn)
        async with conn.begin():
            page = await service.search_page(
                conn, where, sort=query.sort, limit=query.limit, cursor=query.cursor
            )
    async with unit_of_work(runtime.sessions) as session:
        await service.record_search(
            session,
            runtime.ledger,
            actor=_searcher(principal),
            where=where,
            sort=query.sort,
            limit=query.limit,
            continued=query.cursor is not None,
            returned=len(page.items),
            via="api",
            request_id=request_id_var.get(),
        )
    return AuditEventPageOut(
        items=[AuditEventOut.model_validate(item.as_json()) for item in page.items],
        next_cursor=page.next_cursor,
    )


def _negotiated(requested: ExportFormat | None, accept: str | None) -> ExportFormat:
    """The format asked for; else CSV if the Accept header prefers it; else JSON."""
    if requested is not None:
        return requested
    preference = {ExportFormat.CSV: 0.0, ExportFormat.JSON: 0.0}
    for part in (accept or "").split(","):
        media, *params = (piece.strip().lower() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        # A wildcard counts a little less than the type it stands for, so that
        # "text/csv, */*" means CSV.
        if media in {"text/csv", "text/*"}:
            weight *= 1.0 if media == "text/csv" else 0.999
            preference[ExportFormat.CSV] = max(preference[ExportFormat.CSV], weight)
        elif media in {JSON_MEDIA_TYPE, "application/*", "*/*"}:
            weight *= 1.0 if media == JSON_MEDIA_TYPE else 0.999
            preference[ExportFormat.JSON] = max(preference[ExportFormat.JSON], weight)
    if preference[ExportFormat.CSV] > preference[ExportFormat.JSON]:
        return ExportFormat.CSV
    return ExportFormat.JSON


async def _stream(
    runtime: SearchRuntime, plan: service.ExportPlan, export_format: ExportFormat
) -> AsyncIterator[bytes]:
    first = True
    if export_format is ExportFormat.CSV:
        yield csv_header().encode()
    else:
        yield b"["
    async for page in service.export_events(runtime.engine, plan):
        if export_format is ExportFormat.CSV:
            chunk = "".join(csv_row(event) for event in page)
        else:
            chunk = ",".join(json_item(event) for event in page)
            if not first:
                chunk = "," + chunk
        first = False
        yield chunk.encode()
    if export_format is ExportFormat.JSON:
        yield b"]\n"


@router.get(
    "/events/export",
    operation_id="audit.events.export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The matching events, streamed, oldest first unless sort=newest",
            "headers": EXPORT_HEADERS,
            "content": {
                JSON_MEDIA_TYPE: {
                    "schema": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/AuditEventOut"},
                    }
                },
                "text/csv": {"schema": {"type": "string"}},
            },
        },
    },
    **guarded(Permission.COMPLIANCE_AUDIT),
)
async def export_audit_events(
    request: Request,
    principal: CurrentPrincipal,
    query: Annotated[EventExportQuery, Query()],
) -> StreamingResponse:
    """Export every chained event a search matches, as CSV or JSON, streamed.

    The export stops at the chain's head when it starts (X-Audit-Through-Seq), so it is
    one consistent range however long it takes to download. More matching events than the
    configured cap (TRADEGUARD_AUDIT_EXPORT_MAX_EVENTS) are refused before anything is sent:
    narrow the search or export in parts. CSV cells that would run as a spreadsheet formula
    get a leading apostrophe. The export is audited before its first byte.
    """
    runtime = search_runtime(request)
    where = _where(query)
    export_format = _negotiated(query.format, request.headers.get("accept"))
    async with runtime.engine.connect() as conn:
        await read_only(conn)
        async with conn.begin():
            plan = await service.plan_export(
                conn,
                where,
                sort=query.sort,
                max_events=runtime.export_max_events,
            )
    async with unit_of_work(runtime.sessions) as session:
        await service.record_export(
            session,
            runtime.ledger,
            actor=_searcher(principal),
            plan=plan,
            export_format=export_format.value,
            via="api",
            request_id=request_id_var.get(),
        )
    through = plan.through.seq if plan.through else 0
    return StreamingResponse(
        _stream(runtime, plan, export_format),
        media_type=CSV_MEDIA_TYPE if export_format is ExportFormat.CSV else JSON_MEDIA_TYPE,
        headers={
            "Content-Disposition": (
                f'attachment; filename="audit-events-{through}.{export_format.value}"'
            ),
            "X-Audit-Through-Seq": str(through),
            "X-Audit-Event-Count": str(plan.count),
        },
    )
