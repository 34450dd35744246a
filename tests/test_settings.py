from __future__ import annotations

import pytest

from config.settings import SettingsError, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("CONNECTOR_MANAGER_URL", raising=False)
    settings = load_settings()
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.page_size == 100
    assert settings.tls_verify is True
    assert not settings.omni_mode


def test_wrong_values_give_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://nope")
    monkeypatch.setenv("PAGE_SIZE", "zero")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "REDIS_URL" in message and "PAGE_SIZE" in message
    assert "\n" not in message


def test_manager_url_turns_on_omni_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_MANAGER_URL", "http://manager:8080/")
    settings = load_settings()
    assert settings.omni_mode
    assert settings.connector_manager_url == "http://manager:8080"
