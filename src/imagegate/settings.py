"""The one settings object, read from ``IMAGEGATE_*`` environment variables.

Build it with :func:`load_settings` at start-up and pass it in; nothing else reads the
environment. ``MODEL`` and ``MAX_RETRIES`` (the names the original deployment used) are
accepted as aliases of ``IMAGEGATE_MODEL`` and ``IMAGEGATE_MAX_RETRIES``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGEGATE_", extra="ignore", frozen=True)

    data_dir: Path = Path("imagegate-data")
    database_url: str = ""
    backend: Literal["sketch"] = "sketch"
    model: str | None = Field(
        default=None, validation_alias=AliasChoices("IMAGEGATE_MODEL", "MODEL", "model")
    )
    workers: int = Field(default=1, ge=0, le=64)
    max_retries: int = Field(
        default=3,
        ge=1,
        le=100,
        validation_alias=AliasChoices("IMAGEGATE_MAX_RETRIES", "MAX_RETRIES", "max_retries"),
    )
    job_timeout_s: float = Field(default=60.0, gt=0)
    lease_s: float = Field(default=30.0, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    retry_backoff_s: float = Field(default=2.0, ge=0)
    drain_grace_s: float = Field(default=20.0, ge=0)
    sketch_delay_ms: int = Field(default=0, ge=0, le=600_000)
    secret_key: SecretStr | None = None
    signed_url_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    auto_migrate: bool = True
    min_size: int = Field(default=64, ge=8)
    max_size: int = Field(default=2048, ge=8)
    default_size: int = 512
    default_steps: int = Field(default=30, ge=1, le=500)
    max_steps: int = Field(default=150, ge=1, le=1000)
    default_guidance: float = 7.5
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    log_level: str = "info"
    log_json: bool = False

    @model_validator(mode="after")
    def _check_ranges(self) -> Settings:
        if self.min_size > self.max_size:
            raise ValueError("IMAGEGATE_MIN_SIZE must not exceed IMAGEGATE_MAX_SIZE")
        if not self.min_size <= self.default_size <= self.max_size:
            raise ValueError("IMAGEGATE_DEFAULT_SIZE must lie within the size range")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver this project uses spelled out."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'imagegate.db'}"
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+psycopg://" + url[len(plain) :]
        return url

    @property
    def is_postgres(self) -> bool:
        return self.sqlalchemy_url.startswith("postgresql")

    @property
    def model_name(self) -> str:
        return self.model or "sketch-v1"

    @property
    def signing_key(self) -> bytes:
        assert self.secret_key is not None, "load_settings() always provides a key"
        return self.secret_key.get_secret_value().encode()


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus ``overrides``), and make sure a secret key exists.

    A missing secret key is generated once and kept in the data dir, so signed URLs stay
    valid across restarts of an embedded install.
    """
    settings = Settings(**overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.secret_key is None:
        key = _stored_secret_key(settings.data_dir / SECRET_KEY_FILE)
        settings = settings.model_copy(update={"secret_key": SecretStr(key)})
    return settings


def _stored_secret_key(path: Path) -> str:
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        draft.write_text(secrets.token_urlsafe(32), encoding="ascii")
        draft.chmod(0o600)
        with contextlib.suppress(FileExistsError):  # another process won the race: use theirs
            os.link(draft, path)
        draft.unlink()
    return path.read_text(encoding="ascii").strip()
