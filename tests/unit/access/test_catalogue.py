"""Access levels, the catalogue and live grants as pure rules (IAC-2, IAC-1); the documented
catalogue is the code's."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tradeguard.access.common import AccessPolicy, check_minutes, clean_text, parse_target
from tradeguard.access.domain import (
    CATALOGUE,
    LEVEL_CAP_MINUTES,
    LEVEL_DESCRIPTIONS,
    LEVEL_KINDS,
    LEVEL_ORDER,
    ROLE_PERMISSIONS,
    STAFF_ROLES,
    AccessLevel,
    GrantKind,
    GrantTarget,
    Kind,
    LiveGrant,
    Permission,
    Role,
    effective_with_grants,
    grant_adds,
    granted_permissions,
    standing_permissions,
)
from tradeguard.access.review import _safe
from tradeguard.access.usage import PermissionUseTracker
from tradeguard.core.errors import InvalidInput

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "access.md"


def live(target: GrantTarget, expires_ns: int, grant_id: str = "g1") -> LiveGrant:
    return LiveGrant(grant_id, target, expires_ns, GrantKind.REQUEST, "approver")


class TestCatalogue:
    def test_every_permission_has_a_kind_a_description_and_a_cap(self) -> None:
        assert set(CATALOGUE) == set(Permission)
        for permission, entry in CATALOGUE.items():
            assert entry.permission is permission
            assert entry.description
            assert not entry.description.endswith(".")
            assert (entry.max_grant_minutes == 0) == (entry.kind is Kind.ELEVATE)

    @pytest.mark.spec("IAC-2")
    def test_each_level_holds_more_kinds_than_the_one_below_and_admin_holds_the_role(
        self,
    ) -> None:
        for role in STAFF_ROLES:
            held = [standing_permissions(role, level) for level in LEVEL_ORDER]
            assert all(low <= high for low, high in itertools.pairwise(held))
            assert held[-1] == {p.value for p in ROLE_PERMISSIONS[role]}
            for level in LEVEL_ORDER:
                kinds = {CATALOGUE[Permission(p)].kind for p in standing_permissions(role, level)}
                assert kinds <= LEVEL_KINDS[level]

    @pytest.mark.spec("IAC-2")
    def test_read_only_views_and_every_level_can_ask_for_more(self) -> None:
        support = standing_permissions(Role.SUPPORT, AccessLevel.READ_ONLY)
        assert support == {"account:view", "customer:read", "access:request"}
        assert "customer:unmask" in standing_permissions(Role.SUPPORT, AccessLevel.OPERATOR)
        admin = standing_permissions(Role.ADMIN, AccessLevel.ENGINEER)
        assert "admin:config" in admin
        assert "admin:users" not in admin
        assert "access:approve" not in admin
        for role in STAFF_ROLES:
            assert "access:request" in standing_permissions(role, AccessLevel.READ_ONLY)
        assert "access:breakglass" in standing_permissions(Role.ADMIN, AccessLevel.READ_ONLY)

    def test_traders_have_no_level_and_unset_staff_hold_the_least(self) -> None:
        trader = {p.value for p in ROLE_PERMISSIONS[Role.TRADER]}
        for level in (None, *LEVEL_ORDER):
            assert standing_permissions(Role.TRADER, level) == trader
        assert standing_permissions(Role.ADMIN, None) == standing_permissions(
            Role.ADMIN, AccessLevel.READ_ONLY
        )


class TestGrants:
    @pytest.mark.spec("IAC-1")
    def test_a_grant_never_reaches_outside_the_role(self) -> None:
        outside = GrantTarget(permission=Permission.ADMIN_USERS)
        assert outside.permissions(Role.SUPPORT) == frozenset()
        assert grant_adds(Role.SUPPORT, AccessLevel.READ_ONLY, outside) == frozenset()
        level = GrantTarget(level=AccessLevel.ADMIN)
        assert level.permissions(Role.SUPPORT) == {p.value for p in ROLE_PERMISSIONS[Role.SUPPORT]}

    @pytest.mark.spec("IAC-1")
    def test_expired_grants_add_nothing_at_the_moment_they_end(self) -> None:
        grant = live(GrantTarget(permission=Permission.ADMIN_CONFIG), expires_ns=1_000)
        assert "admin:config" in granted_permissions(Role.ADMIN, [grant], now_ns=999)
        assert granted_permissions(Role.ADMIN, [grant], now_ns=1_000) == {}

    def test_only_what_the_grant_adds_is_attributed_to_it(self) -> None:
        standing = standing_permissions(Role.ADMIN, AccessLevel.OPERATOR)
        grant = live(GrantTarget(level=AccessLevel.ENGINEER), expires_ns=10)
        held, via = effective_with_grants(standing, Role.ADMIN, [grant], now_ns=5)
        assert via == {"admin:config": "g1"}
        assert held == standing | {"admin:config"}

    def test_a_target_is_one_permission_or_one_level(self) -> None:
        with pytest.raises(ValueError, match="one permission or one level"):
            GrantTarget()
        with pytest.raises(ValueError, match="one permission or one level"):
            GrantTarget(permission=Permission.ADMIN_USERS, level=AccessLevel.ADMIN)

    @pytest.mark.parametrize(
        ("permission", "level", "message"),
        [
            ("admin:everything", None, "unknown permission"),
            (None, "root", "unknown level"),
            (None, None, "exactly one"),
            ("admin:users", "admin", "exactly one"),
        ],
    )
    def test_unknown_or_ambiguous_targets_are_refused(
        self, permission: str | None, level: str | None, message: str
    ) -> None:
        with pytest.raises(InvalidInput, match=message):
            parse_target(permission, level)

    def test_durations_above_zero_and_within_both_caps(self) -> None:
        policy = AccessPolicy(grant_max_minutes=90, breakglass_max_minutes=30)
        target = GrantTarget(permission=Permission.CUSTOMER_READ)  # catalogue cap 480
        assert policy.grant_cap(target) == 90
        assert policy.breakglass_cap(target) == 30
        assert policy.grant_cap(GrantTarget(permission=Permission.ACCESS_REQUEST)) == 0
        assert check_minutes(None, 90, what="x") == 90
        for bad in (0, -1, 91, True):
            with pytest.raises(InvalidInput):
                check_minutes(bad, 90, what="x")
        with pytest.raises(InvalidInput, match="cannot be requested"):
            check_minutes(10, 0, what="access:request")

    def test_reasons_are_trimmed_and_refused_when_empty_or_hiding_control_characters(
        self,
    ) -> None:
        assert clean_text("  two   words ", what="reason", limit=50) == "two words"
        for bad in ("", "  ", "ab", "right\u202eleft", "x" * 51):
            with pytest.raises(InvalidInput):
                clean_text(bad, what="reason", limit=50)


class TestPermissionUse:
    def test_a_use_is_written_at_most_once_per_resolution(self) -> None:
        tracker = PermissionUseTracker(resolution_ns=100)
        assert tracker.due("u", "p", 0)
        assert not tracker.due("u", "p", 99)
        assert tracker.due("u", "q", 99)
        assert tracker.due("u", "p", 100)
        tracker.forget("u", "p")
        assert tracker.due("u", "p", 101)

    def test_csv_cells_that_a_spreadsheet_would_run_are_neutralized(self) -> None:
        assert _safe("=SUM(A1)") == "'=SUM(A1)"
        assert _safe("@cmd") == "'@cmd"
        assert _safe("plain") == "plain"


class TestDocumentation:
    def test_the_guide_lists_every_permission_and_level_as_the_catalogue_has_them(self) -> None:
        text = GUIDE.read_text(encoding="utf-8")
        for permission, entry in CATALOGUE.items():
            roles = ", ".join(
                sorted(r.value for r, held in ROLE_PERMISSIONS.items() if permission in held)
            )
            cap = f"{entry.max_grant_minutes} min" if entry.max_grant_minutes else "-"
            row = f"| `{permission.value}` | {entry.kind.value} | {entry.description} | {cap} | {roles} |"
            assert row in text, row
        for level in LEVEL_ORDER:
            kinds = ", ".join(k.value for k in Kind if k in LEVEL_KINDS[level])
            cap = f"{LEVEL_CAP_MINUTES[level]} min" if LEVEL_CAP_MINUTES[level] else "-"
            row = f"| `{level.value}` | {kinds} | {LEVEL_DESCRIPTIONS[level]} | {cap} |"
            assert row in text, row
