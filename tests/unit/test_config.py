"""Configuration errors name the setting and say what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeguard.config import Environment, load_settings
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
            _env_file=None,
        )
        assert settings.is_production
