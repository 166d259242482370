"""Keyplane's configuration: one validated object, read from ``KEYPLANE_*`` variables."""

from __future__ import annotations

import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRET_FILE_NAME = "secret_key"  # noqa: S105 (a file name)
MIN_SECRET_LENGTH = 32
_PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "keyplane", "development"}


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class MetricsAccess(StrEnum):
    """Who may read ``GET /metrics``."""

    OFF = "off"
    LOOPBACK = "loopback"
    TOKEN = "token"  # noqa: S105 (a mode, not a secret)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEYPLANE_", extra="ignore", frozen=True)

    env: Environment = Environment.PRODUCTION
    data_dir: Path = Path("data")
    database_url: str = ""
    # The longest any one wait on the database may take (connect, pool checkout, each
    # statement): past it a request gets a 503 rather than hanging with the database.
    database_timeout_seconds: float = Field(default=3.0, gt=0, le=300)
    secret_key: SecretStr = SecretStr("")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    session_ttl_seconds: int = Field(default=15 * 60, ge=30)
    session_max_lifetime_seconds: int = Field(default=12 * 3600, ge=60)
    console_session_ttl_seconds: int = Field(default=8 * 3600, ge=30)

    api_key_default_lifetime_days: int = Field(default=30, ge=1)
    api_key_max_lifetime_days: int = Field(default=365, ge=1)
    api_key_default_per_user_limit: int = Field(default=20, ge=1)
    api_key_max_per_user_limit: int = Field(default=1000, ge=1)
    last_used_flush_seconds: float = Field(default=5.0, gt=0)

    # The in-process cache of verified keys (see keyplane.auth.key_cache).
    key_cache_enabled: bool = True
    key_cache_size: int = Field(default=100_000, ge=1)
    # A backstop, not the revocation bound: every change is confirmed by every live worker
    # before it answers (kit/invalidation.py). Longer means fewer re-reads of busy keys.
    key_cache_max_age_seconds: float = Field(default=30.0, gt=0)
    key_cache_negative_size: int = Field(default=10_000, ge=1)
    key_cache_negative_ttl_seconds: float = Field(default=5.0, gt=0)
    invalidation_poll_seconds: float = Field(default=0.02, gt=0)
    # Each worker's lease on its key cache (keyplane.kit.invalidation): a change waits at
    # most about this long for a worker that does not confirm it (paused, cut off, dead).
    invalidation_lease_seconds: float = Field(default=2.0, ge=0.2, le=60)
    # The verification plane (keyplane.verification_plane): POST /v1/apiKeys/verify and
    # GET /v1/users/info answered in front of FastAPI. Off, FastAPI answers them (the same).
    fast_path_enabled: bool = True

    # argon2id cost; the defaults are the RFC 9106 "second recommended" profile.
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=64 * 1024, ge=8)

    # Failed authentications per client address: Palette answers 10 requests per second.
    auth_failure_rate_per_second: float = Field(default=5.0, gt=0)
    auth_failure_burst: int = Field(default=20, ge=1)
    # Refusals by that limit are audited, but at most once per address per interval, so
    # that an attacker cannot turn each refused request into a stored record.
    auth_failure_report_interval_seconds: float = Field(default=60.0, gt=0)

    # Per account (email): this many wrong passwords in a row, each within the window of
    # the previous one, lock it for the cooldown.
    login_lockout_threshold: int = Field(default=10, ge=1)
    login_lockout_window_seconds: int = Field(default=15 * 60, ge=1)
    login_lockout_seconds: int = Field(default=15 * 60, ge=1)

    # Shared counters for rate limits (per key, and failed authentications per address)
    # across every instance: redis://[:password@]host:port/db (rediss:// for TLS). Without
    # it the limits hold per process. Redis trouble never stops Keyplane: limits are then
    # not enforced (a log line and keyplane_rate_limit_store_unavailable_total say so),
    # while revocation never depends on Redis.
    redis_url: str | None = None
    redis_key_prefix: str = Field(default="keyplane:", min_length=1, max_length=64)
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=10)

    # Only a direct peer in these networks may say, in the header below, whom it forwards
    # for; from anyone else the header is ignored (it is trivially forged).
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()
    client_address_header: str = Field(default="X-Forwarded-For", min_length=1)

    # Rotation (POST /v1/apiKeys/{uid}/rotate): the longest an old key may keep working.
    rotation_max_grace_seconds: int = Field(default=7 * 86400, ge=0, le=90 * 86400)

    # Background work (mail, webhook deliveries, expiry notices, the inactivity sweep):
    # each instance looks for due work this often; claims in the database make every
    # piece of it happen once however many instances run. Off: this instance does none.
    background_jobs_enabled: bool = True
    background_interval_seconds: float = Field(default=5.0, gt=0, le=3600)

    # Where people reach the console, for the links in mail (default: from host and port).
    public_url: str | None = None

    # Mail: smtp://[user:password@]host[:port] (STARTTLS when the server offers it),
    # smtp+starttls://... (STARTTLS required) or smtps://... (TLS from the first byte).
    # Without it notifications are only listed in the console.
    smtp_url: SecretStr | None = None
    smtp_from: str = Field(default="Keyplane <keyplane@localhost>", min_length=3)
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    # Webhooks: outbound requests to private, loopback and link-local addresses are
    # refused unless this is set (a webhook must not become a way into the network).
    webhook_allow_private_targets: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_max_response_bytes: int = Field(default=64 * 1024, ge=1024)
    # A delivery is retried with exponential backoff for this long, then marked failed.
    webhook_retry_seconds: int = Field(default=86400, ge=1)
    # An endpoint whose every delivery has failed for this long is disabled.
    webhook_disable_after_seconds: int = Field(default=3 * 86400, ge=1)
    # How long finished webhook events (with their deliveries) and notifications no longer
    # waiting to be mailed are kept (keyplane.retention).
    webhook_retention_days: int = Field(default=30, ge=1)
    notification_retention_days: int = Field(default=180, ge=1)

    # Leak reports (POST /v1/apiKeys/leaks, unauthenticated): per client address, and at
    # most this many values per report.
    leak_report_rate_per_second: float = Field(default=1.0, gt=0)
    leak_report_burst: int = Field(default=20, ge=1)
    leak_report_max_items: int = Field(default=100, ge=1, le=1000)
    # GitHub's secret scanning partner programme: a JSON file in the shape GitHub publishes
    # its signing keys (https://api.github.com/meta/public_keys/secret_scanning:
    # {"public_keys": [{"key_identifier", "key", "is_current"}]}). Without it the partner
    # endpoint answers 404.
    github_secret_scanning_keys_file: Path | None = None

    max_request_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=2)

    page_default_limit: int = Field(default=50, ge=1)
    page_max_limit: int = Field(default=1000, ge=1)

    # GET /metrics: answered to nobody (404), to loopback clients only (the address as
    # resolved through trusted proxies), or to a Bearer token from anywhere.
    metrics: MetricsAccess = MetricsAccess.LOOPBACK
    metrics_token: SecretStr = SecretStr("")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "KEYPLANE_REDIS_URL must start with redis://, rediss:// (TLS) or unix://"
            )
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith(("smtp://", "smtp+starttls://", "smtps://")):
            raise ValueError(
                "KEYPLANE_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("KEYPLANE_PUBLIC_URL must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        # KEYPLANE_TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.10": a comma-separated list (a
        # JSON list works too).
        if isinstance(value, str):
            parts = (part.strip().strip("'\"") for part in value.strip("[] ").split(","))
            return tuple(part for part in parts if part)
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.api_key_default_lifetime_days > self.api_key_max_lifetime_days:
            raise ValueError("api_key_default_lifetime_days exceeds api_key_max_lifetime_days")
        if self.api_key_default_per_user_limit > self.api_key_max_per_user_limit:
            raise ValueError("api_key_default_per_user_limit exceeds api_key_max_per_user_limit")
        if self.metrics is MetricsAccess.TOKEN:
            _check_metrics_token(self.metrics_token.get_secret_value())
        secret = self.secret_key.get_secret_value()
        if secret:
            _check_secret(secret)
        elif self.env is Environment.PRODUCTION:
            raise ValueError(
                "KEYPLANE_SECRET_KEY is required in production: set it to a random string of "
                f"at least {MIN_SECRET_LENGTH} characters (for example the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`), or set "
                "KEYPLANE_ENV=development to keep a generated one in the data directory"
            )
        return self

    @property
    def console_url(self) -> str:
        """The base of links to the console (mail, webhooks)."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def resolved_database_url(self) -> str:
        """The URL as given, or the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'keyplane.db').resolve()}"

    def load_secret_key(self) -> bytes:
        """The HMAC secret; in development, generated once and kept in the data directory.

        Keeping it on disk means a restart does not invalidate every key and session.
        """
        secret = self.secret_key.get_secret_value()
        if secret:
            return secret.encode()
        path = self.data_dir / SECRET_FILE_NAME
        if path.exists():
            stored = path.read_text().strip()
            _check_secret(stored)
            return stored.encode()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        generated = secrets.token_urlsafe(48)
        # O_EXCL so two processes starting together cannot each write a different secret.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.load_secret_key()
        with os.fdopen(fd, "w") as handle:
            handle.write(generated + "\n")
        return generated.encode()


def _check_secret(secret: str) -> None:
    if len(secret) < MIN_SECRET_LENGTH or secret.lower() in _PLACEHOLDER_SECRETS:
        raise ValueError(
            f"KEYPLANE_SECRET_KEY must be a random string of at least {MIN_SECRET_LENGTH} "
            "characters, not a placeholder"
        )


def _check_metrics_token(token: str) -> None:
    # Compared in constant time, but still guessable if short: the same bar as the secret.
    if len(token) < MIN_SECRET_LENGTH or token.lower() in _PLACEHOLDER_SECRETS:
        raise ValueError(
            "KEYPLANE_METRICS=token needs KEYPLANE_METRICS_TOKEN: a random string of at least "
            f"{MIN_SECRET_LENGTH} characters, which scrapers send as Authorization: Bearer <token>"
        )
