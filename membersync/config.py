"""Settings, read once where the app, worker or CLI starts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".membersync")


class Settings(BaseSettings):
    """Every setting of membersync; each is documented in `.env.example`."""

    model_config = SettingsConfigDict(env_prefix="MEMBERSYNC_", env_file=".env", extra="ignore", env_ignore_empty=True)

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    redis_url: str | None = None
    queue_namespace: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_.:-]*$")
    secret_key: SecretStr = SecretStr("change-me-in-production-this-is-only-for-development")
    jwt_ttl_seconds: int = Field(default=3600, gt=0)
    login_lock_wait_seconds: float = Field(default=5.0, ge=0)
    lock_ttl_seconds: float = Field(default=120.0, gt=0)
    job_lease_seconds: float = Field(default=300.0, gt=0)
    job_batch_size: int = Field(default=50, gt=0, le=1000)
    job_concurrency: int = Field(default=10, gt=0, le=1000)
    job_retry_delay_seconds: float | None = Field(default=None, ge=0)
    job_retention_days: float = Field(default=7.0, gt=0)
    worker_threads: int = Field(default=4, gt=0, le=256)
    plugins: str = ""
    log_level: str = "INFO"
    log_json: bool = False
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, gt=0, lt=65536)
    push_url: str | None = None
    push_api_key: SecretStr | None = None
    push_batch_size: int = Field(default=1000, gt=0, le=10_000)
    push_batches_per_period: int = Field(default=50, gt=0)
    push_period_seconds: float = Field(default=3600.0, ge=0.001)
    push_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_redis_is_none(cls, value: object) -> object:
        return value or None

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'membersync.db'}"

    @property
    def queue_file(self) -> Path:
        """Where SqliteHuey keeps its messages when no Redis URL is set."""
        return self.data_dir / "queue.db"

    @property
    def rate_limit_file(self) -> Path:
        """Where rate-limit budgets are kept when no Redis URL is set (every worker shares this machine)."""
        return self.data_dir / "ratelimit.db"

    @property
    def plugin_paths(self) -> list[str]:
        return [path.strip() for path in self.plugins.split(",") if path.strip()]
