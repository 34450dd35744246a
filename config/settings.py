"""Typed settings read from the environment (and an optional `.env`).

Every value is validated once at start; a wrong value ends in one line that names the
variable and says what is expected (see `load_settings`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A setting from the environment is missing or wrong; the message is one sentence."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    redis_url: str = Field(
        "redis://localhost:6379/0", description="Broker, result backend and run state."
    )
    connector_data_dir: Path = Field(
        Path("./data"), description="Local index, source registry and key file."
    )
    connector_manager_url: str | None = Field(
        None, description="Omni's connector-manager; when set, documents go to Omni."
    )

    page_size: int = Field(100, ge=1, le=1000, description="Documents per page task.")
    max_concurrency_per_server: int = Field(
        8, ge=1, le=256, description="Requests in flight to one Paperless-ngx server, all workers."
    )
    worker_concurrency: int = Field(
        8,
        ge=1,
        le=64,
        description="Worker processes per `celery worker`; page tasks wait on the network, "
        "so more than the cores pays off.",
    )
    http_connect_timeout: float = Field(5.0, gt=0, description="Seconds to open a connection.")
    http_read_timeout: float = Field(60.0, gt=0, description="Seconds to wait for a response.")
    http_retries: int = Field(5, ge=0, le=20, description="Retries of transient HTTP failures.")
    tls_verify: bool = Field(True, description="Verify TLS certificates of Paperless-ngx.")
    ca_bundle: Path | None = Field(None, description="CA bundle for a private CA.")
    allow_insecure_http: bool = Field(
        False, description="Allow sending a token over plain http to a non-loopback host."
    )

    secret_keys: str | None = Field(
        None,
        alias="CONNECTOR_SECRET_KEYS",
        description="Fernet keys, comma-separated, newest first; else a key file in the data dir.",
    )

    sync_interval_seconds: int = Field(
        300, ge=10, description="Default interval of the periodic incremental sync."
    )
    full_reconcile_interval_seconds: int = Field(
        86400, ge=60, description="Interval of the periodic full reconcile."
    )
    watermark_overlap_seconds: int = Field(
        120, ge=0, description="Overlap subtracted from the server-clock watermark."
    )
    lock_ttl_seconds: int = Field(
        120, ge=10, description="Per-source lock lease; renewed while the run lives."
    )
    visibility_timeout_seconds: int = Field(
        3600,
        ge=20,
        description="Seconds before Redis redelivers a task whose worker vanished; above the "
        "longest task plus the longest retry countdown.",
    )
    run_stale_seconds: int = Field(
        900, ge=30, description="A run with no progress for this long is failed by the watchdog."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = Field(False, description="Write logs as JSON lines.")

    flower_basic_auth: str | None = Field(None, description="user:password for Flower.")

    port: int = Field(8000, ge=1, le=65535, description="Port of the Omni connector front.")
    connector_host_name: str = Field(
        "localhost", description="Host name the connector-manager reaches this front by."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("connector_manager_url")
    @classmethod
    def _manager_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @property
    def omni_mode(self) -> bool:
        return self.connector_manager_url is not None

    @property
    def index_path(self) -> Path:
        return self.connector_data_dir / "index.sqlite3"

    @property
    def registry_path(self) -> Path:
        return self.connector_data_dir / "sources.sqlite3"

    @property
    def key_file(self) -> Path:
        return self.connector_data_dir / "secret.key"

    @property
    def tls(self) -> bool | str:
        """The value for requests' `verify=`."""
        if self.ca_bundle is not None:
            return str(self.ca_bundle)
        return self.tls_verify


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info is not None and info.alias:
        return info.alias
    return field.upper()


def load_settings() -> Settings:
    """Read and validate the settings; raise `SettingsError` with one line per wrong value."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            lines.append(f"setting {_env_name(field)} is invalid: {error['msg']}")
        raise SettingsError("; ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
