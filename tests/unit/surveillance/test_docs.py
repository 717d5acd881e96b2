"""The surveillance guide lists every surveillance setting with its default, and every alert
type; the defaults are the models' own."""

from __future__ import annotations

from pathlib import Path

from tradeguard.config import Settings
from tradeguard.surveillance.container import parameters_from
from tradeguard.surveillance.domain import AlertType, SurveillanceParameters

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "surveillance.md"


def test_every_surveillance_setting_is_documented_with_its_default() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    names = [name for name in Settings.model_fields if name.startswith("surveillance_")]
    assert len(names) >= 15
    for name in names:
        default = Settings.model_fields[name].default
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert f"| `{name}` | `{shown}` |" in text, name


def test_every_alert_type_is_documented() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for alert_type in AlertType:
        assert f"`{alert_type.value}`" in text


def test_the_settings_defaults_are_the_models_defaults() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert parameters_from(settings) == SurveillanceParameters()
