"""The policy table from settings: overrides merge with the defaults; a wrong name or order
stops the start with one clear line."""

from __future__ import annotations

from typing import Any

import pytest

from tradeguard.config import Settings
from tradeguard.core.errors import ConfigurationError
from tradeguard.fraud.container import policy_from
from tradeguard.fraud.domain import TakeoverResponse, TakeoverSignal


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class TestPolicyFromSettings:
    def test_overrides_merge_with_the_defaults(self) -> None:
        policy = policy_from(
            settings(
                takeover_signal_weights={"new_device": 35},
                takeover_response_thresholds={"lock": 200},
                takeover_max_speed_kmh=1000,
            )
        )
        assert policy.weights[TakeoverSignal.NEW_DEVICE] == 35
        assert policy.weights[TakeoverSignal.NEW_COUNTRY] == 40
        assert policy.thresholds[TakeoverResponse.LOCK] == 200
        assert policy.response_for(35) is TakeoverResponse.STEP_UP
        assert policy.max_speed_kmh == 1000

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"takeover_signal_weights": {"new_planet": 10}}, "new_planet"),
            ({"takeover_response_thresholds": {"allow": 5}}, "allow"),
            ({"takeover_response_thresholds": {"verify": 200}}, "rise strictly"),
        ],
    )
    def test_a_wrong_name_or_order_is_a_configuration_error(
        self, values: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(ConfigurationError, match=message):
            policy_from(settings(**values))

    def test_out_of_range_values_are_refused_by_the_settings(self) -> None:
        with pytest.raises(ValueError, match="takeover_signal_weights"):
            settings(takeover_signal_weights={"new_device": -1})
        with pytest.raises(ValueError, match="takeover_geoip_data_file"):
            settings(takeover_geoip_data_file="/etc/passwd")
