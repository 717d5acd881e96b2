"""Just-in-time access grants (IAC-1): request, approve or refuse, withdraw, revoke, expire.

A staff member asks for one permission or one level of their own role, with a reason and a
duration under the cap; another admin decides. The approver must hold access:approve as a
standing permission or through a grant that someone other than the requester approved: no
one approves their own request, and two admins cannot lend each other the authority to
approve each other. Every change bumps the grantee's permissions version, so sessions see it
within the session-state cache's second (at once in the process that made it), and expiry is
decided against the clock on every request; the expiry sweep only records it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access import repository
from tradeguard.access.common import (
    MAX_NOTE_CHARS,
    MAX_REASON_CHARS,
    MINUTE_NS,
    AccessDeps,
    AccessRefused,
    Actor,
    acting_staff,
    active_staff,
    approving_sources,
    check_minutes,
    clean_text,
    customer_scope,
    effective_status,
    grant_event,
    grant_facts,
    notify,
    parse_target,
    require,
    target_label,
    when,
)
from tradeguard.access.domain import (
    STAFF_ROLES,
    AccessEvent,
    GrantKind,
    GrantStatus,
    Permission,
    Role,
    grant_adds,
)
from tradeguard.access.models import AccessGrant
from tradeguard.core.errors import Conflict, Forbidden, NotFound
from tradeguard.identity import staff
from tradeguard.identity.staff import Member
from tradeguard.ledger.domain import LedgerEvent, Party


@dataclass(frozen=True, slots=True)
class GrantChange:
    """A grant after a change, and the grantee's permissions version the change produced
    (0: unchanged), for the caller to invalidate cached session states after commit."""

    grant: AccessGrant
    user_id: str
    permissions_version: int = 0


class GrantService:
    def __init__(self, deps: AccessDeps) -> None:
        self.deps = deps

    # Request ----------------------------------------------------------------------------------

    async def request(
        self,
        session: AsyncSession,
        *,
        actor: Actor,
        permission: str | None,
        level: str | None,
        reason: str,
        minutes: int | None,
        customers: Sequence[str] | None = None,
    ) -> GrantChange:
        """Ask for a permission or a level for a while, optionally for named customers only;
        other admins are told."""
        now = self.deps.clock.now_ns()
        target = parse_target(permission, level)
        why = clean_text(reason, what="reason", limit=MAX_REASON_CHARS)
        duration = check_minutes(minutes, self.deps.policy.grant_cap(target), what=target.label)
        scope = await customer_scope(session, customers)
        requester = await acting_staff(session, actor, now)
        require(requester, Permission.ACCESS_REQUEST, "asking for access")
        member = requester.member
        if not target.permissions(member.role):
            raise Forbidden(
                f"{target.label} is outside the {member.role.value} role: grants stay inside it"
            )
        if not grant_adds(member.role, member.level, target) - requester.permissions:
            raise Conflict(f"you already hold {target.label}")
        if await repository.open_grants_for(session, member.user_id, target, now):
            raise Conflict(f"you already have a pending request or a live grant for {target.label}")
        row = AccessGrant(
            id=self.deps.ids.new_str(),
            user_id=member.user_id,
            kind=GrantKind.REQUEST.value,
            permission=target.permission.value if target.permission else None,
            level=target.level.value if target.level else None,
            reason=why,
            customers=scope,
            duration_seconds=duration * 60,
            status=GrantStatus.PENDING.value,
            requested_ns=now,
            decide_by_ns=now + self.deps.policy.request_ttl_minutes * MINUTE_NS,
        )
        repository.add_grant(session, row)
        await session.flush()
        await self.deps.ledger.append(
            session, grant_event(AccessEvent.GRANT_REQUESTED, row, actor, reason=why)
        )
        await notify(
            self.deps,
            session,
            member,
            template="access_request_received",
            subject="Your access request was recorded",
            body=(
                f"Your request for {target.label} for {duration} minutes is waiting for another "
                f"admin's approval (request {row.id}). It lapses if nobody decides by "
                f"{when(row.decide_by_ns)}."
            ),
        )
        limited = f"\nOnly for {len(scope)} named customer(s)." if scope else ""
        for approver in await active_staff(session, Role.ADMIN.value):
            if approver.user_id == member.user_id:
                continue
            await notify(
                self.deps,
                session,
                approver,
                template="access_request_pending",
                subject="An access request is waiting for a decision",
                body=(
                    f"{member.username} ({member.role.value}, level "
                    f"{member.level.value if member.level else '-'}) asks for {target.label} "
                    f"for {duration} minutes.\nReason: {why}{limited}\n"
                    f"Decide with `tradeguard access approve {row.id} --as <you>` (or refuse), "
                    f"or POST /api/v1/access/requests/{row.id}/approve."
                ),
            )
        return GrantChange(row, member.user_id)

    # Decisions ---------------------------------------------------------------------------------

    async def _pending(self, session: AsyncSession, grant_id: str, now: int) -> AccessGrant:
        row = await repository.grant(session, grant_id)
        if row is None:
            raise NotFound("no such access request")
        status = effective_status(row, now)
        if status is not GrantStatus.PENDING:
            raise Conflict(f"the request is {status.value}; only a pending request is decided")
        return row

    def _denied(self, row: AccessGrant, actor: Actor, detail: str, why: str) -> AccessRefused:
        return AccessRefused(
            detail,
            audit=LedgerEvent(
                type=AccessEvent.APPROVAL_DENIED,
                actor=actor.party,
                subject=Party("user", row.user_id),
                data={"grant_id": row.id, "why": why, **actor.audit_data()},
                request_id=actor.request_id,
            ),
        )

    async def approve(
        self, session: AsyncSession, *, actor: Actor, grant_id: str, note: str | None = None
    ) -> GrantChange:
        """Approve another staff member's pending request; it runs from now for its duration."""
        now = self.deps.clock.now_ns()
        text = clean_text(note, what="note", limit=MAX_NOTE_CHARS) if note else None
        row = await self._pending(session, grant_id, now)
        approver = await acting_staff(session, actor, now)
        if approver.member.user_id == row.user_id:
            raise self._denied(row, actor, "you cannot approve your own request", "self_approval")
        if not approver.holds(Permission.ACCESS_APPROVE):
            raise self._denied(
                row, actor, "approving needs the access:approve permission", "no_authority"
            )
        sources = await approving_sources(session, approver, requester=row.user_id, now_ns=now)
        if not sources:
            # The only access:approve the approver has is break-glass, or a grant the
            # requester approved, directly or through other admins' grants: nobody lends
            # anyone the power to approve their own requests, in one step or in many.
            raise self._denied(
                row,
                actor,
                "your access:approve is a break-glass grant or comes from the requester "
                "(a grant they approved, directly or through other admins' grants); "
                "approving needs standing authority or an independent grant",
                "dependent_authority",
            )
        grantee = await staff.member(session, row.user_id)
        if grantee is None or not grantee.active or grantee.role not in STAFF_ROLES:
            raise Conflict("the requester is no longer active staff")
        approved = await repository.transition(
            session,
            row.id,
            from_status=GrantStatus.PENDING,
            live_at_ns=now,
            values={
                "status": GrantStatus.APPROVED.value,
                "decided_by": approver.member.user_id,
                "decided_ns": now,
                "decision_note": text,
                "starts_ns": now,
                "expires_ns": now + row.duration_seconds * 1_000_000_000,
            },
        )
        if not approved:
            raise Conflict("the request was decided or expired meanwhile")
        version = await staff.permissions_changed(session, row.user_id)
        row = await self._reload(session, row.id)
        await self.deps.ledger.append(
            session,
            grant_event(
                AccessEvent.GRANT_APPROVED,
                row,
                actor,
                expires_ns=str(row.expires_ns),
                authority=sources[0],
            ),
        )
        await self._tell_grantee(
            session,
            grantee,
            template="access_request_approved",
            subject="Your access request was approved",
            body=(
                f"{approver.member.username} approved your request for {target_label(row)}; "
                f"it lasts until {when(row.expires_ns)} and ends by itself."
            ),
        )
        return GrantChange(row, row.user_id, version)

    async def refuse(
        self, session: AsyncSession, *, actor: Actor, grant_id: str, reason: str
    ) -> GrantChange:
        """Refuse another staff member's pending request, with a reason they are told."""
        now = self.deps.clock.now_ns()
        why = clean_text(reason, what="reason", limit=MAX_REASON_CHARS)
        row = await self._pending(session, grant_id, now)
        refuser = await acting_staff(session, actor, now)
        if refuser.member.user_id == row.user_id:
            raise Forbidden("withdraw your own request instead of refusing it")
        require(refuser, Permission.ACCESS_APPROVE, "refusing a request")
        refused = await repository.transition(
            session,
            row.id,
            from_status=GrantStatus.PENDING,
            values={
                "status": GrantStatus.REFUSED.value,
                "decided_by": refuser.member.user_id,
                "decided_ns": now,
                "decision_note": why,
            },
        )
        if not refused:
            raise Conflict("the request was decided meanwhile")
        row = await self._reload(session, row.id)
        await self.deps.ledger.append(
            session, grant_event(AccessEvent.GRANT_REFUSED, row, actor, reason=why)
        )
        grantee = await staff.member(session, row.user_id)
        await self._tell_grantee(
            session,
            grantee,
            template="access_request_refused",
            subject="Your access request was refused",
            body=(
                f"{refuser.member.username} refused your request for {target_label(row)}.\n"
                f"Reason: {why}"
            ),
        )
        return GrantChange(row, row.user_id)

    # Ending a grant -----------------------------------------------------------------------------

    async def withdraw(self, session: AsyncSession, *, actor: Actor, grant_id: str) -> GrantChange:
        """The requester withdraws a pending request or gives up a live grant early."""
        now = self.deps.clock.now_ns()
        requester = await acting_staff(session, actor, now)
        row = await repository.grant(session, grant_id)
        # Someone else's request is reported as missing: ids are not for probing.
        if row is None or row.user_id != requester.member.user_id:
            raise NotFound("no such access request of yours")
        status = effective_status(row, now)
        if status not in {GrantStatus.PENDING, GrantStatus.APPROVED}:
            raise Conflict(f"the request is {status.value}; there is nothing to withdraw")
        ended = GrantStatus.WITHDRAWN if status is GrantStatus.PENDING else GrantStatus.REVOKED
        changed = await repository.transition(
            session,
            row.id,
            from_status=status,
            live_at_ns=now,
            values={"status": ended.value, "ended_ns": now, "ended_by": actor.label},
        )
        if not changed:
            raise Conflict("the request changed meanwhile")
        version = (
            await staff.permissions_changed(session, row.user_id)
            if status is GrantStatus.APPROVED
            else 0
        )
        row = await self._reload(session, row.id)
        event = (
            AccessEvent.GRANT_WITHDRAWN
            if ended is GrantStatus.WITHDRAWN
            else AccessEvent.GRANT_REVOKED
        )
        await self.deps.ledger.append(session, grant_event(event, row, actor))
        await self._tell_grantee(
            session,
            requester.member,
            template="access_request_withdrawn",
            subject="Your access request was withdrawn",
            body=f"Your request for {target_label(row)} was withdrawn or given up at your request.",
        )
        return GrantChange(row, row.user_id, version)

    async def revoke(
        self, session: AsyncSession, *, actor: Actor, grant_id: str, reason: str
    ) -> GrantChange:
        """End a live grant (approved or break-glass) before its time.

        An admin holding access:approve (from any source: taking access away needs no second
        person) or the operator at the CLI may revoke anyone's grant.
        """
        now = self.deps.clock.now_ns()
        why = clean_text(reason, what="reason", limit=MAX_REASON_CHARS)
        if actor.user_id is not None:
            revoker = await acting_staff(session, actor, now)
            require(revoker, Permission.ACCESS_APPROVE, "revoking a grant")
        row = await repository.grant(session, grant_id)
        if row is None:
            raise NotFound("no such grant")
        status = effective_status(row, now)
        if status is not GrantStatus.APPROVED:
            raise Conflict(f"the grant is {status.value}; only a live grant can be revoked")
        revoked = await repository.transition(
            session,
            row.id,
            from_status=GrantStatus.APPROVED,
            live_at_ns=now,
            values={
                "status": GrantStatus.REVOKED.value,
                "ended_ns": now,
                "ended_by": actor.label,
                "end_note": why,
            },
        )
        if not revoked:
            raise Conflict("the grant ended meanwhile")
        version = await staff.permissions_changed(session, row.user_id)
        row = await self._reload(session, row.id)
        await self.deps.ledger.append(
            session, grant_event(AccessEvent.GRANT_REVOKED, row, actor, reason=why)
        )
        await self._tell_grantee(
            session,
            await staff.member(session, row.user_id),
            template="access_grant_revoked",
            subject="Your access grant was revoked",
            body=f"Your access to {target_label(row)} was revoked before its end.\nReason: {why}",
        )
        return GrantChange(row, row.user_id, version)

    async def expire_due(self, session: AsyncSession, *, limit: int = 200) -> int:
        """Record expiry of grants past their end and of requests nobody decided in time.

        Access already ended at that moment (every request checks the clock); this writes
        the status, the ledger event and the notice.
        """
        now = self.deps.clock.now_ns()
        count = 0
        for row in await repository.due_to_expire(session, now, limit):
            status = GrantStatus(row.status)
            changed = await repository.transition(
                session,
                row.id,
                from_status=status,
                values={
                    "status": GrantStatus.EXPIRED.value,
                    "ended_ns": now,
                    "ended_by": "system:expiry",
                },
            )
            if not changed:
                continue
            count += 1
            ended = await self._reload(session, row.id)
            await self.deps.ledger.append(
                session,
                LedgerEvent(
                    type=AccessEvent.GRANT_EXPIRED,
                    subject=Party("user", ended.user_id),
                    data={**grant_facts(ended), "was": status.value},
                ),
            )
            undecided = status is GrantStatus.PENDING
            await self._tell_grantee(
                session,
                await staff.member(session, ended.user_id),
                template="access_grant_expired",
                subject=(
                    "Your access request lapsed" if undecided else "Your access grant has ended"
                ),
                body=(
                    f"Nobody decided your request for {target_label(ended)} in time; ask again "
                    "if you still need it."
                    if undecided
                    else f"Your access to {target_label(ended)} ended at {when(ended.expires_ns)}."
                ),
            )
        return count

    # Lists ---------------------------------------------------------------------------------------

    async def mine(self, session: AsyncSession, *, actor: Actor) -> Sequence[AccessGrant]:
        now = self.deps.clock.now_ns()
        requester = await acting_staff(session, actor, now)
        require(requester, Permission.ACCESS_REQUEST, "listing your requests")
        return await repository.grants(session, user_id=requester.member.user_id)

    async def pending_for(self, session: AsyncSession, *, actor: Actor) -> list[AccessGrant]:
        """Requests the actor could decide: pending, not expired, not their own."""
        now = self.deps.clock.now_ns()
        approver = await acting_staff(session, actor, now)
        require(approver, Permission.ACCESS_APPROVE, "listing requests to decide")
        rows = await repository.grants(session, statuses=[GrantStatus.PENDING])
        return [
            r
            for r in rows
            if r.user_id != approver.member.user_id
            and effective_status(r, now) is GrantStatus.PENDING
        ]

    async def all(
        self, session: AsyncSession, *, actor: Actor, status: GrantStatus | None = None
    ) -> list[AccessGrant]:
        now = self.deps.clock.now_ns()
        if actor.user_id is not None:
            reviewer = await acting_staff(session, actor, now)
            require(reviewer, Permission.ACCESS_REVIEW, "listing every grant")
        rows = await repository.grants(session)
        return [r for r in rows if status is None or effective_status(r, now) is status]

    async def _reload(self, session: AsyncSession, grant_id: str) -> AccessGrant:
        row = await repository.grant(session, grant_id)
        if row is None:  # pragma: no cover - the row was just updated in this transaction
            raise NotFound("no such access request")
        return row

    async def _tell_grantee(
        self,
        session: AsyncSession,
        grantee: Member | None,
        *,
        template: str,
        subject: str,
        body: str,
    ) -> None:
        if grantee is not None:
            await notify(self.deps, session, grantee, template=template, subject=subject, body=body)
