"""The one settings object, read from the environment (contract section 3)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "development", "placeholder"}


class ConfigurationError(RuntimeError):
    """A setting is missing or unusable; the message says which and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    environment: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///var/ticketq.db"
    redis_url: str | None = None
    smtp_url: str | None = None
    mail_from: str = "tickets@localhost"
    files_dir: Path = Path("var/files")
    var_dir: Path = Path("var")
    secret_key: SecretStr | None = None
    order_initializing_ttl_seconds: int = Field(default=900, gt=0)
    order_pending_ttl_seconds: int = Field(default=1800, gt=0)
    expiry_sweep_seconds: float = Field(default=30, gt=0)
    outbox_relay_seconds: float = Field(default=5, gt=0)
    # How long a beat's lock outlives it: a standby takes over within this and one tick (celeryconfig.py).
    beat_lock_seconds: float = Field(default=20, ge=2)
    resend_limit_per_user: str = "5/minute"
    resend_limit_per_ip: str = "60/minute"
    # A resend waits this long before it is sent; resends of the order requested meanwhile join it.
    resend_join_seconds: float = Field(default=2, ge=0, le=60)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"
    # Who may POST /v1/events: any user with a token (as before), or admins (`users create --admin`) only.
    event_creators: Literal["anyone", "admins"] = "anyone"
    # json: one JSON object per log line (order, task_id, job, level, message); text: readable lines.
    log_format: Literal["text", "json"] = "text"
    # Invoices: free orders get none unless ZERO_INVOICES=true; numbers read {prefix}{year}-{000001}.
    zero_invoices: bool = False
    invoice_prefix: str = Field(default="INV-", max_length=12, pattern=r"^[A-Za-z0-9/_-]*$")
    # "Payment due by" on a bank or cheque invoice: this many days after issue, never after the event starts.
    invoice_payment_days: int = Field(default=14, ge=0, le=365)
    # Celery task events cost the worker CPU on every job; turn them on where Flower watches.
    task_events: bool = False
    # Prometheus: user:pass protects the API's GET /metrics; a worker serves its own on this port when set.
    metrics_basic_auth: SecretStr | None = None
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Idempotency-Key answers are replayed this long, then purged by beat (contract section 10).
    idempotency_key_ttl_seconds: int = Field(default=86400, gt=0)
    idempotency_purge_seconds: float = Field(default=3600, gt=0)
    # Webhook URLs: plain http and loopback/private/link-local targets only where allowed (dev, tests).
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    # OpenTelemetry tracing is on when set; the SDK reads it and every other OTEL_* variable itself.
    otel_exporter_otlp_endpoint: str = ""
    # Finished webhook notifications (and their attempts) are kept this long, then purged by beat
    # every WEBHOOK_PURGE_SECONDS; a notification still being retried is never purged.
    webhook_retention_days: int = Field(default=30, gt=0, le=3650)
    webhook_purge_seconds: float = Field(default=3600, gt=0)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise ConfigurationError(
                "REDIS_URL is not set: point it at your Redis (redis://host:6379/0), "
                "or use `ticketq up` / `ticketq demo`, which start an embedded one."
            )
        return self.redis_url

    def broker_url(self) -> str:
        """REDIS_URL; only development falls back to a local Redis (a worker or beat elsewhere refuses)."""
        if self.redis_url:
            return self.redis_url
        if self.environment == "development":
            return "redis://127.0.0.1:6379/0"
        return self.require_redis_url()

    def require_smtp_url(self) -> str:
        if not self.smtp_url:
            raise ConfigurationError(
                "SMTP_URL is not set: smtp://user:pass@host:port (or smtps://, ?starttls=true), "
                "or use `ticketq up` / `ticketq demo`, which start a local sink."
            )
        return self.smtp_url

    def secret(self) -> bytes:
        """The key for hashing tokens and file paths; generated once into var/ in development."""
        if self.secret_key is not None:
            value = self.secret_key.get_secret_value()
            if value.strip().lower() not in PLACEHOLDER_SECRETS:
                return value.encode()
            if self.environment != "development":
                raise ConfigurationError("SECRET_KEY is a placeholder; set a real random value.")
        if self.environment != "development":
            raise ConfigurationError("SECRET_KEY is required outside development.")
        path = self.var_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()


settings = Settings()
