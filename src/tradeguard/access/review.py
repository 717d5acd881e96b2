"""The periodic access review (IAC-4; SOX/FINRA-style user access recertification).

Every staff member: role, level, live grants (who granted them, when, why), every permission
they hold and when they last used it; standing permissions unused for N days are flagged for
removal. Last use comes from `access_permission_use`, which the route guard keeps with each
allowed check (hourly precision). A permission never used counts from the day the member was
created. Elevate permissions (asking for access, break-glass) are held at every level and
are never flagged: an unused break-glass is the good case.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access import repository
from tradeguard.access.common import AccessDeps, Actor, acting_staff, require
from tradeguard.access.domain import (
    AccessEvent,
    Kind,
    Permission,
    effective_with_grants,
    kind_of,
    standing_permissions,
)
from tradeguard.core.clock import NS_PER_SECOND, ns_to_iso
from tradeguard.core.errors import InvalidInput
from tradeguard.identity import staff
from tradeguard.ledger.domain import LedgerEvent

DAY_NS = 86_400 * NS_PER_SECOND
MAX_UNUSED_DAYS = 3650
CSV_COLUMNS = (
    "username",
    "user_id",
    "role",
    "level",
    "active",
    "permission",
    "kind",
    "source",
    "grant_id",
    "granted_by",
    "granted_at",
    "expires_at",
    "grant_reason",
    "grant_customers",
    "last_used_at",
    "days_unused",
    "flag_for_removal",
)
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class GrantLine:
    grant_id: str
    kind: str
    permission: str | None
    level: str | None
    reason: str
    customers: tuple[str, ...]  # the grant's customer scope; empty: not limited
    granted_by: str | None  # user id of the approver; None for break-glass
    granted_by_username: str | None
    granted_ns: int
    expires_ns: int


@dataclass(frozen=True, slots=True)
class HeldPermission:
    permission: str
    kind: str
    source: str  # "standing" or "grant"
    grant_id: str | None
    last_used_ns: int | None
    days_unused: int
    flag_for_removal: bool


@dataclass(frozen=True, slots=True)
class StaffLine:
    user_id: str
    username: str
    role: str
    level: str | None
    active: bool
    grants: tuple[GrantLine, ...]
    permissions: tuple[HeldPermission, ...]


@dataclass(frozen=True, slots=True)
class AccessReport:
    generated_ns: int
    unused_days: int
    staff: tuple[StaffLine, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "generated_at": ns_to_iso(self.generated_ns),
            "unused_days": self.unused_days,
            "staff": [
                {
                    "user_id": line.user_id,
                    "username": line.username,
                    "role": line.role,
                    "level": line.level,
                    "active": line.active,
                    "grants": [
                        {
                            "grant_id": g.grant_id,
                            "kind": g.kind,
                            "permission": g.permission,
                            "level": g.level,
                            "reason": g.reason,
                            "customers": list(g.customers),
                            "granted_by": g.granted_by,
                            "granted_by_username": g.granted_by_username,
                            "granted_at": ns_to_iso(g.granted_ns),
                            "expires_at": ns_to_iso(g.expires_ns),
                        }
                        for g in line.grants
                    ],
                    "permissions": [
                        {
                            "permission": p.permission,
                            "kind": p.kind,
                            "source": p.source,
                            "grant_id": p.grant_id,
                            "last_used_at": (
                                ns_to_iso(p.last_used_ns) if p.last_used_ns is not None else None
                            ),
                            "days_unused": p.days_unused,
                            "flag_for_removal": p.flag_for_removal,
                        }
                        for p in line.permissions
                    ],
                }
                for line in self.staff
            ],
        }

    def as_csv(self) -> str:
        """One row per permission held, with the grant that gives it where one does."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for line in self.staff:
            grants = {g.grant_id: g for g in line.grants}
            for p in line.permissions:
                grant = grants.get(p.grant_id or "")
                writer.writerow(
                    _safe(cell)
                    for cell in (
                        line.username,
                        line.user_id,
                        line.role,
                        line.level or "",
                        "yes" if line.active else "no",
                        p.permission,
                        p.kind,
                        p.source,
                        p.grant_id or "",
                        (grant.granted_by_username or "break-glass") if grant else "",
                        _iso(grant.granted_ns) if grant else "",
                        _iso(grant.expires_ns) if grant else "",
                        grant.reason if grant else "",
                        " ".join(grant.customers) if grant else "",
                        _iso(p.last_used_ns),
                        str(p.days_unused),
                        "yes" if p.flag_for_removal else "no",
                    )
                )
        return out.getvalue()

    @property
    def flagged(self) -> int:
        return sum(p.flag_for_removal for line in self.staff for p in line.permissions)


def _iso(ns: int | None) -> str:
    return ns_to_iso(ns) if ns is not None else ""


def _safe(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


class ReviewService:
    def __init__(self, deps: AccessDeps) -> None:
        self.deps = deps

    async def produce(
        self,
        session: AsyncSession,
        *,
        actor: Actor,
        unused_days: int | None = None,
        output: str = "json",
    ) -> AccessReport:
        """The review as of now; producing it is itself audited (it lists who holds what)."""
        now = self.deps.clock.now_ns()
        days = self.deps.policy.review_unused_days if unused_days is None else unused_days
        if isinstance(days, bool) or not 1 <= days <= MAX_UNUSED_DAYS:
            raise InvalidInput(f"unused days must be between 1 and {MAX_UNUSED_DAYS}")
        if actor.user_id is not None:
            reviewer = await acting_staff(session, actor, now)
            require(reviewer, Permission.ACCESS_REVIEW, "the access review")
        members = await staff.staff_members(session)
        names = {m.user_id: m.username for m in members}
        uses = await repository.last_uses(session)
        live: dict[str, list[GrantLine]] = {}
        live_rows = await repository.live_grants_of_all(session, now)
        for row in live_rows:
            approver = row.decided_by
            if approver is not None and approver not in names:
                other = await staff.member(session, approver)
                names[approver] = other.username if other else approver
            live.setdefault(row.user_id, []).append(
                GrantLine(
                    grant_id=row.id,
                    kind=row.kind,
                    permission=row.permission,
                    level=row.level,
                    reason=row.reason,
                    customers=tuple(row.customers or ()),
                    granted_by=approver,
                    granted_by_username=names.get(approver) if approver else None,
                    granted_ns=row.starts_ns or row.requested_ns,
                    expires_ns=row.expires_ns or 0,
                )
            )
        grants_by_user = {
            user_id: [repository.live_grant(r) for r in live_rows if r.user_id == user_id]
            for user_id in live
        }
        lines = []
        for member in members:
            standing = standing_permissions(member.role, member.level)
            held, via = effective_with_grants(
                standing, member.role, grants_by_user.get(member.user_id, []), now
            )
            permissions = []
            for permission in sorted(held):
                last = uses.get((member.user_id, permission))
                since = last if last is not None else member.created_ns
                idle_days = max(0, (now - since) // DAY_NS)
                kind = kind_of(permission)
                grant_id = via.get(permission)
                permissions.append(
                    HeldPermission(
                        permission=permission,
                        kind=kind.value if kind else "unknown",
                        source="grant" if grant_id else "standing",
                        grant_id=grant_id,
                        last_used_ns=last,
                        days_unused=idle_days,
                        flag_for_removal=(
                            grant_id is None and kind is not Kind.ELEVATE and idle_days >= days
                        ),
                    )
                )
            lines.append(
                StaffLine(
                    user_id=member.user_id,
                    username=member.username,
                    role=member.role.value,
                    level=member.level.value if member.level else None,
                    active=member.active,
                    grants=tuple(live.get(member.user_id, [])),
                    permissions=tuple(permissions),
                )
            )
        report = AccessReport(now, days, tuple(lines))
        await self.deps.ledger.append(
            session,
            LedgerEvent(
                type=AccessEvent.REVIEW_PRODUCED,
                actor=actor.party,
                data={
                    "format": output,
                    "unused_days": days,
                    "staff": len(lines),
                    "flagged": report.flagged,
                    **actor.audit_data(),
                },
                request_id=actor.request_id,
            ),
        )
        return report
