"""Configuration errors name the setting and say what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeguard.config import Environment, derived_public_origin, load_settings
from tradeguard.core.errors import ConfigurationError


class TestSettings:
    def test_defaults_are_embedded_sqlite_in_the_data_dir(self, tmp_path: Path) -> None:
        settings = load_settings(data_dir=tmp_path, _env_file=None)
        assert settings.main_database_url == f"sqlite:///{tmp_path.as_posix()}/tradeguard.db"
        assert settings.vault_url == f"sqlite:///{tmp_path.as_posix()}/vault.db"
        assert settings.env is Environment.DEVELOPMENT

    def test_environment_variables_are_read_with_the_prefix(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_PORT", "9443")
        monkeypatch.setenv("TRADEGUARD_DATABASE_URL", "postgresql://db.internal/tg")
        monkeypatch.setenv("TRADEGUARD_HEADER_READ_TIMEOUT_SECONDS", "2.5")
        monkeypatch.setenv("TRADEGUARD_MAX_CONNECTIONS_PER_CLIENT", "500")
        settings = load_settings(_env_file=None)
        assert settings.port == 9443
        assert settings.main_database_url == "postgresql://db.internal/tg"
        assert settings.header_read_timeout_seconds == 2.5
        assert settings.max_connections_per_client == 500

    @pytest.mark.parametrize(
        ("env", "value", "message"),
        [
            (
                "TRADEGUARD_PORT",
                "70000",
                "TRADEGUARD_PORT: Input should be less than or equal to 65535",
            ),
            ("TRADEGUARD_PORT", "https", "TRADEGUARD_PORT: Input should be a valid integer"),
            (
                "TRADEGUARD_DATABASE_URL",
                "mysql://x/y",
                "TRADEGUARD_DATABASE_URL: must be a sqlite:/// or postgresql:// URL",
            ),
            ("TRADEGUARD_REDIS_URL", "http://x", "TRADEGUARD_REDIS_URL: must be a redis://"),
            (
                "TRADEGUARD_ENV",
                "staging",
                "TRADEGUARD_ENV: Input should be 'development' or 'production'",
            ),
            ("TRADEGUARD_LOG_LEVEL", "LOUD", "TRADEGUARD_LOG_LEVEL: must be one of"),
            (
                "TRADEGUARD_HEADER_READ_TIMEOUT_SECONDS",
                "0",
                "TRADEGUARD_HEADER_READ_TIMEOUT_SECONDS: Input should be greater than 0",
            ),
            (
                "TRADEGUARD_MAX_CONNECTIONS_PER_CLIENT",
                "0",
                "TRADEGUARD_MAX_CONNECTIONS_PER_CLIENT: Input should be greater than or equal to 1",
            ),
        ],
    )
    def test_invalid_setting_is_named_with_the_reason(
        self, monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
    ) -> None:
        monkeypatch.setenv(env, value)
        with pytest.raises(ConfigurationError) as caught:
            load_settings(_env_file=None)
        assert message in caught.value.detail
        assert value not in caught.value.detail.replace(message, "")

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            (
                {"TRADEGUARD_FUNDS_WEEKLY_WITHDRAWAL_LIMIT": "10000"},
                "FUNDS_DAILY_WITHDRAWAL_LIMIT <= FUNDS_WEEKLY_WITHDRAWAL_LIMIT",
            ),
            (
                {"TRADEGUARD_FUNDS_MIN_WITHDRAWAL": "60000"},
                "FUNDS_MIN_WITHDRAWAL <= FUNDS_DAILY_WITHDRAWAL_LIMIT",
            ),
            (
                {"TRADEGUARD_FUNDS_DAILY_WITHDRAWAL_LIMIT": "0.001"},
                "FUNDS_DAILY_WITHDRAWAL_LIMIT must be in whole cents",
            ),
        ],
    )
    def test_funds_limits_that_could_never_be_met_are_refused(
        self, monkeypatch: pytest.MonkeyPatch, values: dict[str, str], message: str
    ) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigurationError) as caught:
            load_settings(_env_file=None)
        assert message in caught.value.detail

    def test_cert_without_key_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(
            ConfigurationError, match="TLS_CERT_FILE and TRADEGUARD_TLS_KEY_FILE go together"
        ):
            load_settings(tls_cert_file=tmp_path / "c.pem", _env_file=None)

    def test_production_refuses_dev_certificate_multi_worker_sqlite_and_docs(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            load_settings(env="production", workers=4, _env_file=None)
        detail = caught.value.detail
        assert "TRADEGUARD_TLS_CERT_FILE" in detail
        assert "TRADEGUARD_WORKERS" in detail
        assert "TRADEGUARD_ENABLE_API_DOCS" in detail
        assert "TRADEGUARD_SMTP_HOST" in detail
        assert "TRADEGUARD_SMS_PROVIDER" in detail

    def test_production_with_real_settings_is_accepted(self, tmp_path: Path) -> None:
        settings = load_settings(
            env="production",
            tls_cert_file=tmp_path / "c.pem",
            tls_key_file=tmp_path / "k.pem",
            database_url="postgresql://db/tg",
            workers=4,
            enable_api_docs=False,
            smtp_host="smtp.internal",
            sms_provider="disabled",
            public_origin="https://broker.example",
            _env_file=None,
        )
        assert settings.is_production

    def test_production_refuses_an_origin_derived_from_the_listen_address(
        self, tmp_path: Path
    ) -> None:
        with pytest.raises(ConfigurationError) as caught:
            load_settings(
                env="production",
                tls_cert_file=tmp_path / "c.pem",
                tls_key_file=tmp_path / "k.pem",
                enable_api_docs=False,
                smtp_host="smtp.internal",
                sms_provider="disabled",
                _env_file=None,
            )
        assert "TRADEGUARD_PUBLIC_ORIGIN" in caught.value.detail


class TestPublicOrigin:
    def test_without_a_setting_the_origin_follows_the_port(self) -> None:
        settings = load_settings(port=9443, _env_file=None)
        assert settings.public_origin == "https://localhost:9443"
        assert settings.webauthn_rp_id == "localhost"

    def test_the_port_from_the_environment_moves_the_origin_too(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_PORT", "10443")
        assert load_settings(_env_file=None).public_origin == "https://localhost:10443"

    def test_an_explicit_origin_wins_and_names_the_relying_party(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRADEGUARD_PUBLIC_ORIGIN", "https://broker.example")
        settings = load_settings(port=9443, _env_file=None)
        assert settings.public_origin == "https://broker.example"
        assert settings.webauthn_rp_id == "broker.example"

    def test_an_explicit_relying_party_id_wins(self) -> None:
        settings = load_settings(
            public_origin="https://app.broker.example",
            webauthn_rp_id="broker.example",
            _env_file=None,
        )
        assert settings.webauthn_rp_id == "broker.example"

    def test_an_origin_with_a_path_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="TRADEGUARD_PUBLIC_ORIGIN"):
            load_settings(public_origin="https://broker.example/app", _env_file=None)

    @pytest.mark.parametrize(
        ("host", "port", "origin"),
        [
            ("127.0.0.1", 8443, "https://localhost:8443"),
            ("127.0.0.53", 8443, "https://localhost:8443"),
            ("::1", 8443, "https://localhost:8443"),
            ("localhost", 8443, "https://localhost:8443"),
            ("0.0.0.0", 8443, "https://localhost:8443"),  # noqa: S104 - mapped, not bound
            ("::", 9000, "https://localhost:9000"),
            ("Broker.Internal", 8443, "https://broker.internal:8443"),
            ("10.1.2.3", 8443, "https://10.1.2.3:8443"),
            ("fd00::5", 8443, "https://[fd00::5]:8443"),
            ("broker.example", 443, "https://broker.example"),
        ],
    )
    def test_loopback_and_wildcard_hosts_become_localhost(
        self, host: str, port: int, origin: str
    ) -> None:
        assert derived_public_origin(host, port) == origin


class TestAbuseQuotaSettings:
    def test_quotas_are_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TRADEGUARD_SIGNUP_MAX_PER_NETWORK", "5")
        monkeypatch.setenv("TRADEGUARD_SMS_MAX_PER_NUMBER", "2")
        monkeypatch.setenv("TRADEGUARD_MAX_PENDING_FACTORS", "1")
        monkeypatch.setenv("TRADEGUARD_DEVICE_RECOGNITION_SECONDS", "0")
        settings = load_settings(_env_file=None)
        assert settings.signup_max_per_network == 5
        assert settings.sms_max_per_number == 2
        assert settings.max_pending_factors == 1
        assert settings.device_recognition_seconds == 0

    @pytest.mark.parametrize(
        "env",
        ["TRADEGUARD_SIGNUP_MAX_PER_NETWORK", "TRADEGUARD_SMS_MAX_PER_USER"],
    )
    def test_a_quota_of_zero_is_refused_by_name(
        self, monkeypatch: pytest.MonkeyPatch, env: str
    ) -> None:
        monkeypatch.setenv(env, "0")
        with pytest.raises(ConfigurationError, match=env):
            load_settings(_env_file=None)
