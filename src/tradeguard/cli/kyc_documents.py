"""`tradeguard kyc documents`: identity documents from the command line (KYC-2).

Staff only, named with --as and proved with a console code, holding kyc:review right now:
list the documents waiting for a person (`list`), accept or reject one with a reason
(`review`), and save a document's file with a stated reason (`download`, recorded in the
ledger). The file is written with owner-only permissions and never opened. `recheck` (an
operator's job, like `funds process`) runs again the checks the provider could not finish.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.access.common import authority, require
from tradeguard.access.domain import Permission
from tradeguard.cli.bootstrap import existing_settings
from tradeguard.cli.common import (
    EXIT_USAGE,
    CodeStdinOption,
    DataDirOption,
    StaffAsOption,
    VerifiedStaff,
    command_name,
    console,
    console_code,
    fail,
    record_denial,
    run_async,
    verify_staff,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock, ns_to_iso
from tradeguard.core.errors import PermissionMissing
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.identity.container import IdentityServices, start_identity
from tradeguard.kyc.container import build_kyc
from tradeguard.kyc.documents.container import DocumentServices
from tradeguard.kyc.documents.domain import DocumentStatus
from tradeguard.kyc.documents.models import KycDocument
from tradeguard.kyc.documents.service import reasons_of
from tradeguard.ledger.domain import Party
from tradeguard.trading.container import build_trading

T = TypeVar("T")

app = typer.Typer(
    help="Identity documents (KYC-2): the review queue, review decisions, downloads.",
    no_args_is_help=True,
)
JsonOption = typer.Option("--json", help="Print JSON.")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _id(value: str) -> str:
    if not _UUID.fullmatch(value):
        fail(
            "the document id is a UUID such as 3f2c8a1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
            code=EXIT_USAGE,
        )
    return value


def _as_reviewer(
    data_dir: Path | None,
    acting_as: str | None,
    code_stdin: bool,
    work: Callable[[DocumentServices, str], Awaitable[T]],
) -> T:
    """Run `work` as the named staff member once they proved it with a console code and
    hold kyc:review right now (their level and grants, as the API's guard reads them)."""
    if not acting_as:
        fail("name the staff member acting with --as USERNAME", code=EXIT_USAGE)
    code = console_code(acting_as, from_stdin=code_stdin)
    command = command_name("kyc documents", work)
    settings = existing_settings(data_dir)

    async def run() -> T:
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
            ids = IdGenerator(clock)
            sessions = session_factory(engine)
            identity = await start_identity(settings, clock=clock, ids=ids, sessions=sessions)
            verified = await _reviewer(identity, acting_as, code, command)
            documents = _kyc_documents(settings, identity, sessions)
            return await work(documents, verified.user_id)
        finally:
            await engine.dispose()

    return run_async(run(), database_url=settings.main_database_url)


def _kyc_documents(
    settings: Settings, identity: IdentityServices, sessions: async_sessionmaker[AsyncSession]
) -> DocumentServices:
    """Identity documents wired to the applications they are checked against, as in the
    app (kyc/container.py)."""
    trading = build_trading(
        settings,
        clock=identity.deps.clock,
        ids=identity.deps.ids,
        sessions=sessions,
        with_venue=False,
    )
    return build_kyc(
        settings, identity=identity, accounts=trading.accounts, sessions=sessions
    ).documents


async def _reviewer(
    identity: IdentityServices, username: str, code: str, command: str
) -> VerifiedStaff:
    verified: VerifiedStaff = await verify_staff(identity, username, code)
    try:
        async with identity.unit_of_work() as session:
            found = await authority(session, verified.user_id, identity.clock.now_ns())
        if found is None or not found.member.active:
            raise PermissionMissing(
                "only an active staff member reviews identity documents",
                permission=Permission.KYC_REVIEW.value,
            )
        require(found, Permission.KYC_REVIEW, "reviewing identity documents")
    except PermissionMissing:
        await record_denial(identity, verified, Permission.KYC_REVIEW.value, command)
        raise
    return verified


def _row(row: KycDocument) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "kind": row.kind,
        "detected_type": row.detected_type,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "status": row.status,
        "reasons": list(reasons_of(row)),
        "uploaded_at": ns_to_iso(row.created_ns),
    }


@app.command("recheck")
def recheck_command(data_dir: Annotated[Path | None, DataDirOption] = None) -> None:
    """Run again the checks of documents left pending (the verification provider was not
    reached at upload); each document is its own transaction."""
    settings = existing_settings(data_dir)

    async def run() -> tuple[int, int]:
        engine = create_engine(settings.main_database_url)
        try:
            clock = SystemClock()
            sessions = session_factory(engine)
            identity = await start_identity(
                settings, clock=clock, ids=IdGenerator(clock), sessions=sessions
            )
            documents = _kyc_documents(settings, identity, sessions)
            async with unit_of_work(sessions) as session:
                waiting = await documents.documents.pending(session)
            done = 0
            for document_id in waiting:
                async with unit_of_work(sessions) as session:
                    row = await documents.documents.recheck(session, document_id)
                    done += row is not None and row.status != DocumentStatus.PENDING.value
            return len(waiting), done
        finally:
            await engine.dispose()

    waiting, done = run_async(run(), database_url=settings.main_database_url)
    console.print(f"{done} of {waiting} pending documents checked")


@app.command("list")
def list_command(
    status: Annotated[
        list[DocumentStatus] | None,
        typer.Option("--status", help="Only these statuses (default: review and pending)."),
    ] = None,
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    as_json: Annotated[bool, JsonOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Documents waiting for a person, oldest first."""

    async def work(documents: DocumentServices, _: str) -> list[dict[str, Any]]:
        async with unit_of_work(documents.sessions) as session:
            rows = await documents.documents.waiting(
                session, statuses=[s.value for s in status] if status else None
            )
            return [_row(row) for row in rows]

    rows = _as_reviewer(data_dir, acting_as, code_stdin, work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no document is waiting for review")
        return
    table = Table("id", "kind", "type", "status", "reasons", "uploaded")
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            r["detected_type"],
            r["status"],
            ", ".join(r["reasons"]),
            r["uploaded_at"],
        )
    console.print(table)


@app.command("review")
def review_command(
    document_id: Annotated[str, typer.Argument(help="The document's id.")],
    decision: Annotated[str, typer.Option("--decision", help="accept or reject.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the ledger).")],
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Accept (verified) or reject (failed) a document waiting for review."""
    document_id = _id(document_id)

    async def work(documents: DocumentServices, staff_id: str) -> dict[str, Any]:
        async with unit_of_work(documents.sessions) as session:
            row = await documents.documents.review(
                session,
                document_id=document_id,
                decision=decision,
                reason=reason,
                reviewer_id=staff_id,
                actor=Party("user", staff_id),
            )
            return _row(row)

    row = _as_reviewer(data_dir, acting_as, code_stdin, work)
    console.print(f"document {row['id']} is now {row['status']}")


@app.command("download")
def download_command(
    document_id: Annotated[str, typer.Argument(help="The document's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why you need the file (ledger).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the file (new file).")],
    acting_as: Annotated[str | None, StaffAsOption] = None,
    code_stdin: Annotated[bool, CodeStdinOption] = False,
    data_dir: Annotated[Path | None, DataDirOption] = None,
) -> None:
    """Save a document's file (never opened here); the reason is recorded first."""
    document_id = _id(document_id)
    if out.exists():
        fail(f"{out} exists; name a new file", code=EXIT_USAGE)

    async def work(documents: DocumentServices, staff_id: str) -> tuple[str, bytes]:
        async with unit_of_work(documents.sessions) as session:
            row, content = await documents.documents.staff_download(
                session, document_id=document_id, reason=reason, actor=Party("user", staff_id)
            )
            return row.sha256, content

    sha256, content = _as_reviewer(data_dir, acting_as, code_stdin, work)
    # Owner-only from the start: the file is identity data.
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    console.print(f"wrote {len(content)} bytes to {out} (sha256 {sha256})")
