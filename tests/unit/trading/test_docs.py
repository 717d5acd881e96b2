"""The trading guide lists every stable reject code with its description."""

from __future__ import annotations

from pathlib import Path

from tradeguard.risk.domain import REJECT_DESCRIPTIONS, RejectCode

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "trading.md"


def test_every_reject_code_is_documented_with_its_description() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for code in RejectCode:
        assert f"| `{code.value}` | {REJECT_DESCRIPTIONS[code]} |" in text, code
