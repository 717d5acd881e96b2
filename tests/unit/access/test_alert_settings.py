"""Access alert settings: working hours, days and zone are checked when settings load, and
become the rules' thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeguard.access.alerts_container import thresholds_from
from tradeguard.config import load_settings
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import ConfigurationError


class TestAccessAlertSettings:
    def test_defaults_are_weekdays_seven_to_seven_in_new_york(self, tmp_path: Path) -> None:
        limits = thresholds_from(load_settings(data_dir=tmp_path, _env_file=None))
        assert limits.hours.describe() == "Mon,Tue,Wed,Thu,Fri 07:00-19:00 America/New_York"
        assert limits.max_customers == 25
        assert limits.customers_window_ns == 900 * NS_PER_SECOND
        assert limits.max_denials == 5
        assert limits.new_network_lookback_ns == 30 * 86_400 * NS_PER_SECOND

    def test_environment_variables_set_hours_days_and_zone(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_ACCESS_WORKING_HOURS", "08:30-24:00")
        monkeypatch.setenv("TRADEGUARD_ACCESS_WORKING_DAYS", '["Sunday", "sat", "mon"]')
        monkeypatch.setenv("TRADEGUARD_ACCESS_WORKING_TIMEZONE", "Europe/London")
        hours = thresholds_from(load_settings(_env_file=None)).hours
        assert hours.describe() == "Mon,Sat,Sun 08:30-24:00 Europe/London"

    @pytest.mark.parametrize(
        ("env", "value", "message"),
        [
            ("TRADEGUARD_ACCESS_WORKING_HOURS", "9-17", "TRADEGUARD_ACCESS_WORKING_HOURS: must be"),
            ("TRADEGUARD_ACCESS_WORKING_HOURS", "17:00-09:00", "start before end"),
            ("TRADEGUARD_ACCESS_WORKING_HOURS", "24:00-24:00", "start before end"),
            ("TRADEGUARD_ACCESS_WORKING_HOURS", "08:00-24:30", "start before end"),
            ("TRADEGUARD_ACCESS_WORKING_DAYS", "[]", "TRADEGUARD_ACCESS_WORKING_DAYS: must be"),
            ("TRADEGUARD_ACCESS_WORKING_DAYS", '["funday"]', "list of weekdays"),
            ("TRADEGUARD_ACCESS_WORKING_TIMEZONE", "Mars/Olympus", "IANA time zone"),
            ("TRADEGUARD_ACCESS_WORKING_TIMEZONE", "../../etc/passwd", "IANA time zone"),
            ("TRADEGUARD_ACCESS_ALERT_MAX_DENIALS", "0", "TRADEGUARD_ACCESS_ALERT_MAX_DENIALS"),
            ("TRADEGUARD_ACCESS_ALERT_CUSTOMERS_WINDOW_SECONDS", "5", "greater than or equal"),
        ],
    )
    def test_bad_values_name_the_setting(
        self, monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
    ) -> None:
        monkeypatch.setenv(env, value)
        with pytest.raises(ConfigurationError, match=message):
            load_settings(_env_file=None)
