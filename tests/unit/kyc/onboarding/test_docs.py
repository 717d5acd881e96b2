"""docs/kyc.md shows the factor table and the data inventory as the code has them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeguard.kyc.onboarding.inventory import INVENTORY
from tradeguard.kyc.onboarding.risk import RULES

DOC = (Path(__file__).parents[4] / "docs" / "kyc.md").read_text(encoding="utf-8")


@pytest.mark.spec("PRIV-1")
def test_every_inventory_entry_is_documented() -> None:
    for entry in INVENTORY:
        row = (
            f"| `{entry.field}` | {entry.purpose} | {entry.legal_basis} | {entry.required} | "
            f"{entry.retention} | `{entry.data_class}` |"
        )
        assert row in DOC, entry.field


def test_every_risk_factor_is_documented_with_its_points() -> None:
    for rule in RULES.values():
        assert f"| `{rule.code}` | {rule.points} | {rule.description} |" in DOC, rule.code
