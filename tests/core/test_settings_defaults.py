"""The contract's defaults (section 3), as literal numbers: a changed default fails here (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings

CONTRACT_VARIABLES = ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "MAIL_FROM", "FILES_DIR", "SECRET_KEY",
                      "ORDER_INITIALIZING_TTL_SECONDS", "ORDER_PENDING_TTL_SECONDS", "EXPIRY_SWEEP_SECONDS",
                      "RESEND_LIMIT_PER_USER", "RESEND_LIMIT_PER_IP", "TRUSTED_PROXIES")


@pytest.fixture
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """No contract variable in the environment (the suite sets some for its backends)."""
    for name in CONTRACT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_order_lifetimes_default_to_900_and_1800_seconds(unset: None) -> None:
    defaults = Settings()
    assert defaults.order_initializing_ttl_seconds == 900
    assert defaults.order_pending_ttl_seconds == 1800


def test_the_other_defaults_of_the_table(unset: None) -> None:
    defaults = Settings()
    assert defaults.database_url == "sqlite:///var/ticketq.db"
    assert defaults.redis_url is None and defaults.smtp_url is None and defaults.secret_key is None
    assert defaults.mail_from == "tickets@localhost"
    assert defaults.files_dir == Path("var/files")
    assert defaults.expiry_sweep_seconds == 30
    assert (defaults.resend_limit_per_user, defaults.resend_limit_per_ip) == ("5/minute", "60/minute")
    assert defaults.trusted_proxies == []


def test_the_lifetimes_come_from_the_environment(unset: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_INITIALIZING_TTL_SECONDS", "60")
    monkeypatch.setenv("ORDER_PENDING_TTL_SECONDS", "120")
    configured = Settings()
    assert (configured.order_initializing_ttl_seconds, configured.order_pending_ttl_seconds) == (60, 120)
