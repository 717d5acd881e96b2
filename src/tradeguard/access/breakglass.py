"""Break-glass: an admin takes emergency access without approval (IAC-1, IAC-4).

The grant is short (at most `TRADEGUARD_ACCESS_BREAKGLASS_MAX_MINUTES`), every other admin
and every compliance user is told at once (through the outbox, in the same transaction), and
it opens a review item that stays open until an admin other than the taker, or a compliance
user, closes it with a note.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access import repository
from tradeguard.access.common import (
    MAX_NOTE_CHARS,
    MAX_REASON_CHARS,
    MINUTE_NS,
    AccessDeps,
    Actor,
    acting_staff,
    active_staff,
    check_minutes,
    clean_text,
    grant_facts,
    notify,
    parse_target,
    require,
    target_label,
    when,
)
from tradeguard.access.domain import (
    AccessEvent,
    GrantKind,
    GrantStatus,
    Permission,
    Role,
    grant_adds,
)
from tradeguard.access.grants import GrantChange
from tradeguard.access.models import AccessGrant, BreakGlassReview
from tradeguard.core.errors import Conflict, Forbidden, NotFound
from tradeguard.identity import staff
from tradeguard.ledger.domain import LedgerEvent, Party


class BreakGlassService:
    def __init__(self, deps: AccessDeps) -> None:
        self.deps = deps

    async def take(
        self,
        session: AsyncSession,
        *,
        actor: Actor,
        permission: str | None,
        level: str | None,
        reason: str,
        minutes: int | None = None,
    ) -> tuple[GrantChange, BreakGlassReview]:
        """Take a permission or level of one's role now; alert; open a review item."""
        now = self.deps.clock.now_ns()
        target = parse_target(permission, level)
        why = clean_text(reason, what="reason", limit=MAX_REASON_CHARS)
        duration = check_minutes(
            minutes, self.deps.policy.breakglass_cap(target), what=f"break-glass {target.label}"
        )
        taker = await acting_staff(session, actor, now)
        require(taker, Permission.ACCESS_BREAKGLASS, "break-glass")
        member = taker.member
        if not target.permissions(member.role):
            raise Forbidden(f"{target.label} is outside the {member.role.value} role")
        if not grant_adds(member.role, member.level, target) - taker.permissions:
            raise Conflict(f"you already hold {target.label}")
        row = AccessGrant(
            id=self.deps.ids.new_str(),
            user_id=member.user_id,
            kind=GrantKind.BREAKGLASS.value,
            permission=target.permission.value if target.permission else None,
            level=target.level.value if target.level else None,
            reason=why,
            duration_seconds=duration * 60,
            status=GrantStatus.APPROVED.value,
            requested_ns=now,
            decide_by_ns=now,
            starts_ns=now,
            expires_ns=now + duration * MINUTE_NS,
        )
        repository.add_grant(session, row)
        review = BreakGlassReview(
            id=self.deps.ids.new_str(), grant_id=row.id, taker_id=member.user_id, opened_ns=now
        )
        await session.flush()
        repository.add_review(session, review)
        await session.flush()
        version = await staff.permissions_changed(session, member.user_id)
        await self.deps.ledger.append(
            session,
            LedgerEvent(
                type=AccessEvent.BREAKGLASS_TAKEN,
                actor=actor.party,
                subject=Party("user", member.user_id),
                data={
                    **grant_facts(row),
                    "review_id": review.id,
                    "reason": why,
                    "expires_ns": str(row.expires_ns),
                    **actor.audit_data(),
                },
                request_id=actor.request_id,
            ),
        )
        # Every other admin and every compliance user, at once; never the taker.
        for watcher in await active_staff(session, Role.ADMIN.value, Role.COMPLIANCE.value):
            if watcher.user_id == member.user_id:
                continue
            await notify(
                self.deps,
                session,
                watcher,
                template="access_breakglass_alert",
                subject="Break-glass access was taken",
                body=(
                    f"{member.username} took emergency access to {target.label} without "
                    f"approval, until {when(row.expires_ns)}.\nReason: {why}\n"
                    f"Review item {review.id} stays open until an admin other than "
                    f"{member.username}, or compliance, closes it with a note: "
                    f"`tradeguard access break-glass close {review.id} --as <you> --note ...`."
                ),
            )
        return GrantChange(row, member.user_id, version), review

    async def reviews(
        self, session: AsyncSession, *, actor: Actor, open_only: bool = True
    ) -> Sequence[tuple[BreakGlassReview, AccessGrant]]:
        if actor.user_id is not None:
            reader = await acting_staff(session, actor, self.deps.clock.now_ns())
            require(reader, Permission.ACCESS_REVIEW, "listing break-glass reviews")
        return await repository.reviews(session, open_only=open_only)

    async def close(
        self, session: AsyncSession, *, actor: Actor, review_id: str, note: str
    ) -> tuple[BreakGlassReview, AccessGrant]:
        """Close a break-glass review item with a note (not by the taker)."""
        now = self.deps.clock.now_ns()
        text = clean_text(note, what="note", limit=MAX_NOTE_CHARS)
        reviewer = await acting_staff(session, actor, now)
        require(reviewer, Permission.ACCESS_ATTEST, "closing a break-glass review")
        review = await repository.review(session, review_id)
        if review is None:
            raise NotFound("no such break-glass review item")
        if review.taker_id == reviewer.member.user_id:
            raise Forbidden("the admin who broke the glass cannot close its review")
        if review.closed_ns is not None:
            raise Conflict("the review item is already closed")
        if not await repository.close_review(
            session, review.id, closed_by=reviewer.member.user_id, now_ns=now, note=text
        ):
            raise Conflict("the review item was closed meanwhile")
        review = await repository.review(session, review.id) or review
        grant = await repository.grant(session, review.grant_id)
        await self.deps.ledger.append(
            session,
            LedgerEvent(
                type=AccessEvent.BREAKGLASS_REVIEWED,
                actor=actor.party,
                subject=Party("user", review.taker_id),
                data={
                    "review_id": review.id,
                    "grant_id": review.grant_id,
                    "note": text,
                    **actor.audit_data(),
                },
                request_id=actor.request_id,
            ),
        )
        if grant is None:  # pragma: no cover - the foreign key keeps the grant
            raise NotFound("no such break-glass grant")
        taker = await staff.member(session, review.taker_id)
        if taker is not None:
            await notify(
                self.deps,
                session,
                taker,
                template="access_breakglass_reviewed",
                subject="Your break-glass access was reviewed",
                body=(
                    f"{reviewer.member.username} closed the review of your break-glass access "
                    f"to {target_label(grant)}.\nNote: {text}"
                ),
            )
        return review, grant
