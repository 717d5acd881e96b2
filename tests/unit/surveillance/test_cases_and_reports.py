"""The case state machine, the action policy's choice, and SAR draft rules (deadlines,
masking, amounts, an inert document) as pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.surveillance import sar
from tradeguard.surveillance.domain import (
    ActionKind,
    ActionRule,
    AlertType,
    CaseCommand,
    CaseStatus,
    Disposition,
    actions_due,
    case_transition,
)

OPEN, ASSIGNED, ESCALATED, CLOSED = (
    CaseStatus.OPEN,
    CaseStatus.ASSIGNED,
    CaseStatus.ESCALATED,
    CaseStatus.CLOSED,
)


def ns(year: int, month: int, day: int, hour: int = 12) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp()) * NS_PER_SECOND


class TestCaseStateMachine:
    @pytest.mark.parametrize(
        ("status", "command", "disposition", "after"),
        [
            (OPEN, CaseCommand.ASSIGN, None, ASSIGNED),
            (ASSIGNED, CaseCommand.ASSIGN, None, ASSIGNED),
            (ESCALATED, CaseCommand.ASSIGN, None, ESCALATED),
            (ASSIGNED, CaseCommand.ESCALATE, None, ESCALATED),
            (OPEN, CaseCommand.NOTE, None, OPEN),
            (OPEN, CaseCommand.ADD_ALERT, None, OPEN),
            (ASSIGNED, CaseCommand.CLOSE, Disposition.FALSE_POSITIVE, CLOSED),
            (ASSIGNED, CaseCommand.CLOSE, Disposition.WARNING, CLOSED),
            (ESCALATED, CaseCommand.CLOSE, Disposition.REPORTED, CLOSED),
            (ESCALATED, CaseCommand.CLOSE, Disposition.RESTRICTED, CLOSED),
            (CLOSED, CaseCommand.REPORT_FILED, None, CLOSED),
        ],
    )
    def test_legal_steps_give_the_next_status(
        self,
        status: CaseStatus,
        command: CaseCommand,
        disposition: Disposition | None,
        after: CaseStatus,
    ) -> None:
        assert case_transition(status, command, disposition) is after

    @pytest.mark.parametrize(
        ("status", "command", "disposition"),
        [
            (OPEN, CaseCommand.ESCALATE, None),
            (ESCALATED, CaseCommand.ESCALATE, None),
            (OPEN, CaseCommand.CLOSE, Disposition.NO_ACTION),
            (ASSIGNED, CaseCommand.CLOSE, Disposition.REPORTED),
            (ASSIGNED, CaseCommand.CLOSE, Disposition.RESTRICTED),
            (ASSIGNED, CaseCommand.CLOSE, None),
            (OPEN, CaseCommand.REPORT_FILED, None),
            (OPEN, CaseCommand.OPEN, None),
            *(
                (CLOSED, c, Disposition.NO_ACTION)
                for c in CaseCommand
                if c not in {CaseCommand.REPORT_FILED}
            ),
        ],
    )
    def test_illegal_steps_are_refused_with_a_reason(
        self, status: CaseStatus, command: CaseCommand, disposition: Disposition | None
    ) -> None:
        refused = case_transition(status, command, disposition)
        assert not isinstance(refused, CaseStatus)
        assert len(refused) > 10


class TestActionPolicy:
    def test_actions_due_at_or_above_each_threshold_mildest_first(self) -> None:
        rules = [
            ActionRule(AlertType.SPOOFING, 90, ActionKind.SUSPEND),
            ActionRule(AlertType.SPOOFING, 50, ActionKind.NOTIFY),
            ActionRule(AlertType.SPOOFING, 70, ActionKind.CANCEL_ORDERS),
            ActionRule(AlertType.WASH_TRADE, 0, ActionKind.CLOSING_ONLY),
        ]
        assert actions_due(rules, "SPOOFING", 49) == []
        assert actions_due(rules, "SPOOFING", 70) == [ActionKind.NOTIFY, ActionKind.CANCEL_ORDERS]
        assert actions_due(rules, "SPOOFING", 90) == [
            ActionKind.NOTIFY,
            ActionKind.CANCEL_ORDERS,
            ActionKind.SUSPEND,
        ]
        assert actions_due(rules, "LAYERING", 100) == []
        assert actions_due([], "SPOOFING", 100) == []


class TestSarRules:
    @pytest.mark.parametrize(
        ("detected", "suspect", "due"),
        [
            (ns(2026, 1, 5), True, date(2026, 2, 4)),
            (ns(2026, 1, 5), False, date(2026, 3, 6)),
            # Calendar days: across a month end and a leap day.
            (ns(2028, 2, 10), True, date(2028, 3, 11)),
            (ns(2026, 12, 15, 23), True, date(2027, 1, 14)),
        ],
    )
    def test_the_deadline_is_30_calendar_days_or_60_without_a_suspect(
        self, detected: int, suspect: bool, due: date
    ) -> None:
        assert sar.due_date(detected, suspect_identified=suspect) == due
        end = sar.due_ns(detected, suspect_identified=suspect)
        assert end == ns(due.year, due.month, due.day, 0) + 86_400 * NS_PER_SECOND

    @pytest.mark.parametrize(
        ("number", "masked"),
        [("TG12345678", "TG******78"), ("12345678", "******78"), (None, "unknown"), ("7", "7")],
    )
    def test_account_numbers_are_masked_to_their_last_two_digits(
        self, number: str | None, masked: str
    ) -> None:
        assert sar.mask_account_number(number) == masked

    def test_free_text_in_the_document_is_inert_markdown_and_html(self) -> None:
        case = sar.CaseFacts(
            case_id="c1",
            title="<script>alert(1)</script> | **bold**",
            assignee=None,
            closed_by="staff:u1",
            closed_ns=ns(2026, 1, 6),
            conclusion="[click](javascript:alert(1)) <img src=x>",
            detected_ns=ns(2026, 1, 5),
            suspect_identified=True,
        )
        alert = sar.AlertFacts(
            alert_id="a1",
            alert_type="SPOOFING",
            detector="MAN-2",
            symbol="ACME",
            owner="u2",
            accounts=["acc1"],
            score=80,
            window_start_ns=ns(2026, 1, 5),
            window_end_ns=ns(2026, 1, 5, 13),
            first_trigger_seq=7,
            occurrences=1,
            order_ids=["o1"],
            execution_ids=["e1"],
            evidence={"executed_quantity": 300, "execution_price": "49.98", "genuine_side": "sell"},
            summary="s",
        )
        draft = sar.build_draft(case, [alert], {"acc1": "TG12345678"}, report_id="r1", created_ns=0)
        assert draft["alerts"][0]["amount"] == "14994.00"
        assert draft["filing"]["threshold_met"] is True
        text = sar.render_markdown(draft)
        assert "<script>" not in text
        assert "<img" not in text
        assert "](javascript" not in text
        assert "TG12345678" not in text
        assert "TG\\*\\*\\*\\*\\*\\*78" in text

    def test_malformed_evidence_counts_as_no_amount(self) -> None:
        alert = sar.AlertFacts(
            alert_id="a1",
            alert_type="WASH_TRADE",
            detector="MAN-1",
            symbol="ACME",
            owner="u",
            accounts=["acc"],
            score=50,
            window_start_ns=0,
            window_end_ns=0,
            first_trigger_seq=1,
            occurrences=2,
            order_ids=[],
            execution_ids=[],
            evidence={
                "bought": "NaN",
                "average_buy_price": "x",
                "sold": 10,
                "average_sell_price": "1.005",
            },
            summary="",
        )
        assert str(sar.alert_amount(alert)) == "10.05"


def _trade(execution: str, account: str, side: str, quantity: int, price: str) -> dict[str, Any]:
    return {
        "execution_id": execution,
        "account_id": account,
        "side": side,
        "quantity": quantity,
        "price": price,
        "time": f"2026-01-05T15:00:0{execution[-1]}.000000000Z",
        "counterparty": "street",
    }


class TestDraftParties:
    def _alert(
        self, alert_id: str, accounts: list[str], evidence: dict[str, Any]
    ) -> sar.AlertFacts:
        return sar.AlertFacts(
            alert_id=alert_id,
            alert_type="WASH_TRADE",
            detector="MAN-1",
            symbol="ACME",
            owner="u1",
            accounts=accounts,
            score=60,
            window_start_ns=ns(2026, 1, 5),
            window_end_ns=ns(2026, 1, 5, 1),
            first_trigger_seq=1,
            occurrences=1,
            order_ids=[],
            execution_ids=[],
            evidence=evidence,
            summary="s",
        )

    @pytest.mark.spec("MAN-5")
    def test_each_user_is_a_party_and_each_pattern_execution_counts_once(self) -> None:
        case = sar.CaseFacts(
            case_id="c1",
            title="t",
            assignee=None,
            closed_by="staff:x",
            closed_ns=ns(2026, 1, 6),
            conclusion="report",
            detected_ns=ns(2026, 1, 5),
            suspect_identified=True,
        )
        cross = [_trade("x1", "a1", "sell", 100, "10"), _trade("x2", "b1", "buy", 100, "10")]
        honest = _trade("x3", "a1", "buy", 1000, "11")
        first = self._alert(
            "al1",
            ["a1", "b1"],
            {"executions": [honest, *cross], "pattern_execution_ids": ["x1", "x2"]},
        )
        # A second alert naming the same cross again (it counts once).
        second = self._alert("al2", ["a1", "b1"], {"executions": cross})
        draft = sar.build_draft(
            case,
            [first, second],
            {"a1": "TG00000011", "b1": "TG00000022"},
            report_id="r1",
            created_ns=0,
            account_users={"a1": "u1", "b1": "u2"},
        )
        parties = {p["user_ref"]: p for p in draft["parties"]}
        assert set(parties) == {"u1", "u2"}
        assert [a["account_number"] for a in parties["u2"]["accounts"]] == ["TG******22"]
        assert parties["u1"]["linked_with"] == ["u2"]
        assert parties["u2"]["beneficial_owner_ref"] == "u1"
        assert [t["execution_id"] for t in draft["trades"]] == ["x1", "x2"]
        assert draft["activity"]["total_amount"] == "2000.00"
        assert [a["amount"] for a in draft["alerts"]] == ["2000.00", "2000.00"]
        assert "bought 100 and sold 100 shares" in draft["narrative"]
        assert "2 execution(s)" in draft["narrative"]

    def test_an_account_without_a_known_user_is_its_own_party(self) -> None:
        case = sar.CaseFacts(
            case_id="c1",
            title="t",
            assignee=None,
            closed_by="staff:x",
            closed_ns=0,
            conclusion="report",
            detected_ns=0,
            suspect_identified=False,
        )
        alert = self._alert("al1", ["zz"], {"bought": 10, "average_buy_price": "2"})
        draft = sar.build_draft(
            case, [alert], {"zz": None}, report_id="r", created_ns=0, account_users={}
        )
        assert [(p["user_ref"], p["accounts"][0]["account_id"]) for p in draft["parties"]] == [
            (None, "zz")
        ]
        # Evidence without execution details: the model's figures.
        assert draft["activity"]["total_amount"] == "20.00"
        assert draft["trades"] == []
