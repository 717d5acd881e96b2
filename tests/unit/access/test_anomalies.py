"""Access anomaly rules (IAC-4): each rule at its limit (no alert) and one step past it
(alert), windows at their exact edges, and what the detector reads out of a ledger event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tradeguard.access.anomalies import (
    GRANT_USED,
    PERMISSION_CHECKED,
    AnomalyRule,
    GrantUse,
    Observation,
    ObservationKind,
    Severity,
    Thresholds,
    WorkingHours,
    evaluate,
    grant_out_of_scope,
    many_customers,
    network_of,
    new_network,
    observe,
    off_hours,
    referenced_user_ids,
    repeated_denials,
)
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.identity import guard
from tradeguard.ledger.personal.sealing import ERASED, UNREADABLE

NY = ZoneInfo("America/New_York")
WEEKDAYS = frozenset(range(5))
HOURS = WorkingHours(zone=NY, start_minute=9 * 60, end_minute=17 * 60, weekdays=WEEKDAYS)
MINUTE = 60 * NS_PER_SECOND
DAY = 86_400 * NS_PER_SECOND
LIMITS = Thresholds(
    max_customers=3,
    customers_window_ns=10 * MINUTE,
    max_denials=2,
    denials_window_ns=5 * MINUTE,
    new_network_lookback_ns=30 * DAY,
    hours=HOURS,
)
STAFF = "0190c5a0-0000-7000-8000-00000000000a"


def ny(*args: int) -> int:
    """Epoch nanoseconds of a New York wall-clock time."""
    return int(datetime(*args, tzinfo=NY).timestamp()) * NS_PER_SECOND  # type: ignore[misc]


# Monday 5 January 2026, 10:00 in New York.
T0 = ny(2026, 1, 5, 10, 0)


def seen(
    seq: int,
    at_ns: int,
    *,
    kind: ObservationKind = ObservationKind.CHECK,
    allowed: bool = True,
    customers: frozenset[str] = frozenset(),
    network: str | None = None,
    grant: GrantUse | None = None,
) -> Observation:
    return Observation(
        seq=seq,
        at_ns=at_ns,
        staff_id=STAFF,
        kind=kind,
        allowed=allowed,
        customers=customers,
        network=network,
        grant=grant,
    )


def reads(count: int, *, start: int = T0, step: int = MINUTE) -> list[Observation]:
    return [
        seen(i + 1, start + i * step, customers=frozenset({f"account:{i}"})) for i in range(count)
    ]


class TestManyCustomers:
    @pytest.mark.spec("IAC-4")
    def test_the_limit_of_distinct_customers_is_no_alert(self) -> None:
        assert many_customers(reads(3), LIMITS) is None

    @pytest.mark.spec("IAC-4")
    def test_one_customer_past_the_limit_raises_a_high_alert_with_its_evidence(self) -> None:
        finding = many_customers(reads(4), LIMITS)
        assert finding is not None
        assert finding.rule is AnomalyRule.MANY_CUSTOMERS
        assert finding.severity is Severity.HIGH
        assert finding.evidence == (1, 2, 3, 4)
        assert finding.window_start_ns == T0
        assert finding.window_end_ns == T0 + 3 * MINUTE
        assert finding.summary == "4 distinct customer records within 600 s (limit 3)"
        assert finding.fold_within_ns == 10 * MINUTE

    def test_reading_the_same_customers_again_is_not_counted_twice(self) -> None:
        history = reads(3)
        again = [
            seen(10 + i, T0 + (5 + i) * MINUTE, customers=o.customers)
            for i, o in enumerate(history)
        ]
        assert many_customers([*history, *again], LIMITS) is None

    def test_a_read_exactly_one_window_old_counts_and_one_nanosecond_older_does_not(self) -> None:
        first = seen(1, T0, customers=frozenset({"user:a"}))
        middle = reads(2, start=T0 + MINUTE)
        middle = [seen(2 + i, o.at_ns, customers=o.customers) for i, o in enumerate(middle)]
        at_edge = seen(9, T0 + 10 * MINUTE, customers=frozenset({"user:z"}))
        past_edge = seen(9, T0 + 10 * MINUTE + 1, customers=frozenset({"user:z"}))
        assert many_customers([first, *middle, at_edge], LIMITS) is not None
        assert many_customers([first, *middle, past_edge], LIMITS) is None

    def test_an_event_that_touches_no_customer_is_not_judged(self) -> None:
        history = [*reads(4), seen(5, T0 + 5 * MINUTE)]
        assert many_customers(history, LIMITS) is None

    def test_evidence_is_bounded_to_the_newest_fifty(self) -> None:
        limits = Thresholds(
            max_customers=1,
            customers_window_ns=DAY,
            max_denials=1,
            denials_window_ns=DAY,
            new_network_lookback_ns=DAY,
            hours=HOURS,
        )
        finding = many_customers(reads(80, step=NS_PER_SECOND), limits)
        assert finding is not None
        assert finding.evidence == tuple(range(31, 81))


class TestRepeatedDenials:
    @pytest.mark.spec("IAC-4")
    def test_the_limit_of_denials_is_no_alert(self) -> None:
        history = [seen(i, T0 + i * MINUTE, allowed=False) for i in range(1, 3)]
        assert repeated_denials(history, LIMITS) is None

    @pytest.mark.spec("IAC-4")
    def test_one_denial_past_the_limit_raises_an_alert(self) -> None:
        history = [seen(i, T0 + i * MINUTE, allowed=False) for i in range(1, 4)]
        finding = repeated_denials(history, LIMITS)
        assert finding is not None
        assert finding.rule is AnomalyRule.REPEATED_DENIALS
        assert finding.evidence == (1, 2, 3)
        assert finding.summary == "3 denied permission checks within 300 s (limit 2)"

    def test_allowed_checks_and_other_events_do_not_count(self) -> None:
        history = [
            seen(1, T0, allowed=False),
            seen(2, T0 + 1, allowed=True),
            seen(3, T0 + 2, kind=ObservationKind.SIGN_IN),
            seen(4, T0 + 3, allowed=False),
        ]
        assert repeated_denials(history, LIMITS) is None

    def test_denials_older_than_the_window_do_not_count(self) -> None:
        history = [
            seen(1, T0, allowed=False),
            seen(2, T0 + 4 * MINUTE, allowed=False),
            seen(3, T0 + 5 * MINUTE + 1, allowed=False),
        ]
        assert repeated_denials(history, LIMITS) is None
        assert repeated_denials([*history[:2], seen(3, T0 + 5 * MINUTE, allowed=False)], LIMITS)

    def test_only_a_denial_is_judged(self) -> None:
        history = [*(seen(i, T0 + i, allowed=False) for i in range(1, 4)), seen(9, T0 + 9)]
        assert repeated_denials(history, LIMITS) is None


class TestWorkingHours:
    @pytest.mark.spec("IAC-4")
    def test_the_first_nanosecond_of_the_day_is_inside_and_the_one_before_is_not(self) -> None:
        start = ny(2026, 1, 5, 9, 0)
        assert off_hours(seen(1, start), HOURS) is None
        finding = off_hours(seen(1, start - 1), HOURS)
        assert finding is not None
        assert finding.rule is AnomalyRule.OFF_HOURS
        assert finding.severity is Severity.MEDIUM
        assert (
            finding.summary
            == "check outside working hours (Mon,Tue,Wed,Thu,Fri 09:00-17:00 America/New_York)"
        )

    @pytest.mark.spec("IAC-4")
    def test_the_end_of_the_day_is_outside(self) -> None:
        end = ny(2026, 1, 5, 17, 0)
        assert off_hours(seen(1, end - 1), HOURS) is None
        assert off_hours(seen(1, end), HOURS) is not None

    def test_weekends_are_outside_all_day(self) -> None:
        assert off_hours(seen(1, ny(2026, 1, 10, 12, 0)), HOURS) is not None

    def test_hours_follow_local_time_across_daylight_saving(self) -> None:
        # 9 March 2026 (a Monday) is the first weekday of daylight saving time in New York.
        assert off_hours(seen(1, ny(2026, 3, 9, 9, 0)), HOURS) is None
        assert HOURS.contains(
            int(datetime(2026, 3, 9, 13, 0, tzinfo=UTC).timestamp()) * NS_PER_SECOND
        )

    def test_one_off_hours_stretch_has_one_key_and_the_next_has_another(self) -> None:
        evening = off_hours(seen(1, ny(2026, 1, 5, 20, 0)), HOURS)
        night = off_hours(seen(2, ny(2026, 1, 6, 3, 0)), HOURS)
        next_evening = off_hours(seen(3, ny(2026, 1, 6, 20, 0)), HOURS)
        assert evening is not None
        assert night is not None
        assert next_evening is not None
        assert evening.dedup_key == night.dedup_key == str(ny(2026, 1, 5, 17, 0))
        assert next_evening.dedup_key == str(ny(2026, 1, 6, 17, 0))

    def test_a_weekend_belongs_to_the_stretch_that_began_on_friday(self) -> None:
        sunday = off_hours(seen(1, ny(2026, 1, 11, 12, 0)), HOURS)
        assert sunday is not None
        assert sunday.dedup_key == str(ny(2026, 1, 9, 17, 0))

    def test_a_day_may_end_at_midnight(self) -> None:
        always = WorkingHours(
            zone=NY, start_minute=0, end_minute=24 * 60, weekdays=frozenset(range(7))
        )
        assert always.contains(ny(2026, 1, 5, 23, 59) + 59 * NS_PER_SECOND)
        assert always.contains(ny(2026, 1, 5, 0, 0))

    @pytest.mark.parametrize(
        ("start", "end", "days"),
        [(600, 600, WEEKDAYS), (0, 1441, WEEKDAYS), (-1, 60, WEEKDAYS), (0, 60, frozenset())],
    )
    def test_impossible_hours_are_refused(self, start: int, end: int, days: frozenset[int]) -> None:
        with pytest.raises(ValueError, match="working"):
            WorkingHours(zone=NY, start_minute=start, end_minute=end, weekdays=days)


class TestNewNetwork:
    @pytest.mark.spec("IAC-4")
    def test_a_network_seen_exactly_the_look_back_ago_is_known(self) -> None:
        now = T0 + 30 * DAY
        assert new_network(seen(1, now, network="n1"), {"n1": T0}, LIMITS) is None

    @pytest.mark.spec("IAC-4")
    def test_a_network_last_seen_one_nanosecond_before_the_look_back_alerts(self) -> None:
        now = T0 + 30 * DAY + 1
        finding = new_network(seen(1, now, network="n1"), {"n1": T0}, LIMITS)
        assert finding is not None
        assert finding.rule is AnomalyRule.NEW_NETWORK
        assert finding.dedup_key == "n1"
        assert finding.summary.endswith("in 30 days (seen before that)")

    @pytest.mark.spec("IAC-4")
    def test_a_network_never_seen_alerts(self) -> None:
        finding = new_network(seen(1, T0, network="n2"), {"n1": T0}, LIMITS)
        assert finding is not None
        assert finding.evidence == (1,)

    def test_the_first_network_of_a_staff_member_is_the_baseline(self) -> None:
        assert new_network(seen(1, T0, network="n1"), {}, LIMITS) is None

    def test_an_event_without_an_address_is_not_judged(self) -> None:
        assert new_network(seen(1, T0), {"n1": T0}, LIMITS) is None


class TestNetworks:
    @pytest.mark.parametrize(
        ("ip", "network"),
        [
            ("198.51.100.7", "198.51.100.0/24"),
            ("198.51.100.250", "198.51.100.0/24"),
            ("::ffff:198.51.100.7", "198.51.100.0/24"),
            ("2001:db8:1:2::5", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
            ("fe80::1%eth0", "fe80::/64"),
        ],
    )
    def test_an_address_belongs_to_its_slash_24_or_slash_64(self, ip: str, network: str) -> None:
        assert network_of(ip) == network

    @pytest.mark.parametrize("ip", [None, "", "not-an-ip", "999.1.1.1", 7, "1" * 100])
    def test_anything_else_has_no_network(self, ip: object) -> None:
        assert network_of(ip) is None


class TestGrantScope:
    def grant(self, **fields: Any) -> GrantUse:
        base: dict[str, Any] = {
            "grant_id": "g1",
            "permission": "customer:unmask",
            "granted_permissions": frozenset({"customer:unmask"}),
            "customer": "user:c1",
            "scope_customers": frozenset({"user:c1"}),
        }
        return GrantUse(**{**base, **fields})

    @pytest.mark.spec("IAC-4")
    def test_a_use_inside_the_scope_is_no_alert(self) -> None:
        assert grant_out_of_scope(seen(1, T0, grant=self.grant())) is None

    @pytest.mark.spec("IAC-4")
    def test_another_customer_or_another_permission_is_out_of_scope(self) -> None:
        customer = grant_out_of_scope(seen(1, T0, grant=self.grant(customer="user:c2")))
        permission = grant_out_of_scope(seen(1, T0, grant=self.grant(permission="admin:users")))
        assert customer is not None
        assert permission is not None
        assert customer.rule is AnomalyRule.GRANT_OUT_OF_SCOPE
        assert customer.dedup_key == "g1"
        assert "customer" in customer.summary
        assert "permission" in permission.summary

    def test_a_grant_without_named_customers_covers_any_customer(self) -> None:
        grant = self.grant(customer="user:c9", scope_customers=frozenset())
        assert grant_out_of_scope(seen(1, T0, grant=grant)) is None


def document(
    event_type: str,
    *,
    actor: tuple[str, str] = ("user", STAFF),
    subject: tuple[str, str] | None = None,
    data: dict[str, Any] | None = None,
    personal: dict[str, Any] | None = None,
    ts: int = T0,
) -> dict[str, Any]:
    """An event document as the ledger's reader gives it (its personal section opened)."""
    opened: dict[str, Any] = {
        "v": 1,
        "id": "e",
        "type": event_type,
        "ts": str(ts),
        "actor": {"kind": actor[0], "id": actor[1]},
        "subject": None if subject is None else {"kind": subject[0], "id": subject[1]},
        "data": data or {},
    }
    if personal is not None:
        opened["personal"] = personal
    return opened


class TestObservations:
    STAFF_SET = frozenset({STAFF, "other-staff"})

    def test_the_detector_reads_the_guards_event_type(self) -> None:
        assert PERMISSION_CHECKED == guard.PERMISSION_CHECKED
        assert set(guard.CUSTOMER_PARAMETERS) == {"user_id", "customer_id", "account_id"}

    def test_an_allowed_check_reads_the_customers_its_parameters_name(self) -> None:
        event = document(
            PERMISSION_CHECKED,
            subject=("session", "s1"),
            data={
                "permission": "customer:read",
                "allowed": True,
                "params": {"user_id": "c1", "account_id": "a1", "symbol": "AAPL"},
            },
            personal={"ip": "198.51.100.7"},
        )
        found = observe(7, event, staff=self.STAFF_SET)
        assert found is not None
        assert found.kind is ObservationKind.CHECK
        assert found.customers == {"user:c1", "account:a1"}
        assert found.network == "198.51.100.0/24"
        assert found.at_ns == T0
        assert found.seq == 7

    def test_a_denied_check_read_no_customer(self) -> None:
        event = document(PERMISSION_CHECKED, data={"allowed": False, "params": {"user_id": "c1"}})
        found = observe(1, event, staff=self.STAFF_SET)
        assert found is not None
        assert not found.allowed
        assert found.customers == frozenset()

    def test_staff_members_and_the_actor_are_not_customers(self) -> None:
        event = document(
            PERMISSION_CHECKED,
            data={"allowed": True, "params": {"user_id": "other-staff", "customer_id": STAFF}},
        )
        found = observe(1, event, staff=self.STAFF_SET)
        assert found is not None
        assert found.customers == frozenset()

    def test_a_staff_action_on_an_account_touches_that_customer(self) -> None:
        event = document(
            "trading:account:adjusted", actor=("staff", STAFF), subject=("account", "a9")
        )
        found = observe(1, event, staff=self.STAFF_SET)
        assert found is not None
        assert found.kind is ObservationKind.ACTION
        assert found.customers == {"account:a9"}

    def test_a_staff_listing_touches_every_customer_it_showed(self) -> None:
        event = document(
            "trading:account:listed",
            actor=("staff", STAFF),
            data={"user_id": None, "accounts": 3, "customers": ["c1", "c2", "other-staff", 7]},
        )
        found = observe(1, event, staff=self.STAFF_SET)
        assert found is not None
        assert found.customers == {"user:c1", "user:c2"}

    def test_a_staff_sign_in_is_observed_with_its_network_key(self) -> None:
        event = document(
            "identity:login:succeeded", subject=("user", STAFF), personal={"ip": "2001:db8::1"}
        )
        found = observe(1, event, staff=self.STAFF_SET, network_key=lambda n: f"k({n})")
        assert found is not None
        assert found.kind is ObservationKind.SIGN_IN
        assert found.network == "k(2001:db8::/64)"
        assert found.customers == frozenset()

    @pytest.mark.parametrize(
        "personal",
        [
            {"ip": ERASED},  # the staff member was forgotten (crypto-shredded)
            {"ip": UNREADABLE},
            {"alg": "A256GCM", "key": "k", "fields": ["ip"], "ct": "AAAA"},  # read unopened
            "not a section",
        ],
    )
    def test_a_sign_in_whose_address_cannot_be_read_is_observed_without_a_network(
        self, personal: Any
    ) -> None:
        event = document("identity:login:succeeded", personal=personal)
        found = observe(1, event, staff=self.STAFF_SET, network_key=lambda n: f"k({n})")
        assert found is not None
        assert found.network is None

    def test_an_address_left_in_plain_data_is_not_read(self) -> None:
        event = document("identity:login:succeeded", data={"ip": "2001:db8::1"})
        found = observe(1, event, staff=self.STAFF_SET)
        assert found is not None
        assert found.network is None

    @pytest.mark.parametrize(
        "event",
        [
            document("identity:login:failed", personal={"ip": "203.0.113.9"}),
            document("identity:mfa:failed"),
            document("identity:ip_allowlist:refused"),
            document(PERMISSION_CHECKED, actor=("user", "a-trader")),
            document("trading:halt:created", actor=("operator", STAFF)),
            document("access:alert:raised", actor=("system", "access-anomaly-detector")),
            {"type": PERMISSION_CHECKED, "actor": {"kind": "user", "id": STAFF}},
            {"type": PERMISSION_CHECKED, "actor": {"kind": "user", "id": STAFF}, "ts": "x"},
            {"type": 5, "actor": {"kind": "user", "id": STAFF}, "ts": "1"},
            {"actor": "nobody"},
        ],
    )
    def test_other_actors_failed_attempts_and_malformed_documents_are_not_staff_access(
        self, event: dict[str, Any]
    ) -> None:
        assert observe(1, event, staff=self.STAFF_SET) is None

    def test_a_grant_use_carries_its_scope(self) -> None:
        event = document(
            GRANT_USED,
            data={
                "grant_id": "g1",
                "permission": "customer:unmask",
                "granted_permissions": ["customer:unmask"],
                "customer": "user:c2",
                "scope_customers": ["user:c1"],
            },
        )
        found = observe(1, event, staff=self.STAFF_SET)
        assert found is not None
        assert found.kind is ObservationKind.GRANT_USE
        assert found.grant == GrantUse(
            grant_id="g1",
            permission="customer:unmask",
            granted_permissions=frozenset({"customer:unmask"}),
            customer="user:c2",
            scope_customers=frozenset({"user:c1"}),
        )

    def test_a_grant_use_without_its_scope_is_not_judged(self) -> None:
        found = observe(1, document(GRANT_USED, data={"grant_id": "g1"}), staff=self.STAFF_SET)
        assert found is not None
        assert found.grant is None

    def test_the_users_an_event_names_are_looked_up(self) -> None:
        event = document(
            PERMISSION_CHECKED,
            subject=("session", "s1"),
            data={"params": {"user_id": "c1", "account_id": "a1"}},
        )
        assert referenced_user_ids(event) == {STAFF, "c1"}


class TestEvaluate:
    @pytest.mark.spec("IAC-4")
    def test_every_rule_judges_the_latest_observation(self) -> None:
        late = ny(2026, 1, 5, 22, 0)
        history = [seen(i, late + i, allowed=False, network="n2") for i in range(1, 4)]
        rules = {f.rule for f in evaluate(history, {"n1": late}, LIMITS)}
        assert rules == {
            AnomalyRule.REPEATED_DENIALS,
            AnomalyRule.OFF_HOURS,
            AnomalyRule.NEW_NETWORK,
        }

    def test_limits_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            Thresholds(
                max_customers=0,
                customers_window_ns=1,
                max_denials=1,
                denials_window_ns=1,
                new_network_lookback_ns=1,
                hours=HOURS,
            )
        with pytest.raises(ValueError, match="positive"):
            Thresholds(
                max_customers=1,
                customers_window_ns=0,
                max_denials=1,
                denials_window_ns=1,
                new_network_lookback_ns=1,
                hours=HOURS,
            )


class TestScopedGrantChecks:
    """The guard's permission check through a grant with a customer scope is judged from the
    event alone (`grant_id`, `grant_scope`, `params`)."""

    STAFF_SET = frozenset({STAFF})

    def check(
        self,
        params: dict[str, str],
        *,
        scope: list[str] | None = None,
        allowed: bool = True,
        method: str | None = "POST",
    ) -> Observation:
        data: dict[str, Any] = {
            "permission": "customer:unmask",
            "allowed": allowed,
            "route": "/api/v1/backoffice/customers/{user_id}/unmask",
            "params": params,
        }
        if method is not None:
            data["method"] = method
        if allowed:
            data["grant_id"] = "g1"
        if scope is not None:
            data["grant_scope"] = scope
        found = observe(1, document(PERMISSION_CHECKED, data=data), staff=self.STAFF_SET)
        assert found is not None
        return found

    @pytest.mark.spec("IAC-4")
    def test_a_customer_inside_the_scope_is_no_alert(self) -> None:
        for name in ("user_id", "customer_id"):
            seen_check = self.check({name: "c1"}, scope=["c1", "c2"])
            assert seen_check.grant is not None
            assert grant_out_of_scope(seen_check) is None
            assert evaluate([seen_check], {}, LIMITS) == []

    @pytest.mark.spec("IAC-4")
    def test_a_customer_outside_the_scope_is_a_high_alert_keyed_by_the_grant(self) -> None:
        for name in ("user_id", "customer_id"):
            finding = grant_out_of_scope(self.check({name: "c3"}, scope=["c1", "c2"]))
            assert finding is not None
            assert finding.rule is AnomalyRule.GRANT_OUT_OF_SCOPE
            assert finding.severity is Severity.HIGH
            assert finding.dedup_key == "g1"
            assert finding.evidence == (1,)
            # No customer id in the summary: the evidence points to it.
            assert "c3" not in finding.summary
            assert "customer" in finding.summary

    def test_one_named_record_outside_the_scope_is_enough(self) -> None:
        finding = grant_out_of_scope(
            self.check({"user_id": "c1", "customer_id": "c9"}, scope=["c1"])
        )
        assert finding is not None

    def test_an_account_is_outside_any_scope_since_the_ledger_does_not_name_its_owner(
        self,
    ) -> None:
        assert grant_out_of_scope(self.check({"account_id": "c1"}, scope=["c1"])) is not None

    @pytest.mark.spec("IAC-4")
    def test_an_unscoped_grant_is_never_out_of_scope(self) -> None:
        seen_check = self.check({"user_id": "c3"})
        assert seen_check.grant is None
        assert grant_out_of_scope(seen_check) is None

    def test_a_scoped_read_naming_no_customer_and_a_denied_check_are_not_judged(self) -> None:
        for method in ("GET", "get", "HEAD", "OPTIONS"):
            assert grant_out_of_scope(self.check({}, scope=["c1"], method=method)) is None
        denied = self.check({"user_id": "c3"}, scope=["c1"], allowed=False)
        assert denied.grant is None

    @pytest.mark.spec("IAC-4")
    @pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", None])
    def test_a_scoped_change_naming_no_customer_is_out_of_scope(self, method: str | None) -> None:
        """Attack (M1): a grant scoped to c1 approves a factor reset by its reset id, halts
        an account named in the body, or opens an account for a `user_id` in the body: the
        route's parameters name nobody, so nothing shows the change is inside the scope."""
        finding = grant_out_of_scope(self.check({}, scope=["c1"], method=method))
        assert finding is not None
        assert finding.rule is AnomalyRule.GRANT_OUT_OF_SCOPE
        assert finding.dedup_key == "g1"
        assert finding.summary.endswith("a change that names no customer outside its stated scope")

    def test_a_scoped_change_naming_a_customer_inside_the_scope_is_no_alert(self) -> None:
        assert grant_out_of_scope(self.check({"user_id": "c1"}, scope=["c1"])) is None

    def test_an_unscoped_change_naming_no_customer_is_no_alert(self) -> None:
        seen_check = self.check({})
        assert seen_check.grant is None
        assert grant_out_of_scope(seen_check) is None

    def test_a_scope_that_is_not_a_list_of_ids_is_not_judged(self) -> None:
        data = {
            "permission": "customer:unmask",
            "allowed": True,
            "grant_id": "g1",
            "grant_scope": "c1",
            "params": {"user_id": "c3"},
        }
        found = observe(1, document(PERMISSION_CHECKED, data=data), staff=self.STAFF_SET)
        assert found is not None
        assert found.grant is None
