"""The ``limits`` object of a key or a tenant, and the settings' defaults."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from imagegate.settings import Settings


class Limits(BaseModel):
    """Unset means: the next level's value (key, then tenant, then settings), else none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: int | None = Field(default=None, ge=1)
    images_per_minute: int | None = Field(default=None, ge=1)
    images_per_day: int | None = Field(default=None, ge=1)
    concurrent_jobs: int | None = Field(default=None, ge=1)
    per_user: Limits | None = Field(
        default=None, description="The same limits, for each end user (``user``) apart."
    )

    def stored(self) -> dict[str, Any] | None:
        values = self.model_dump(exclude_none=True)
        return values or None


def limits_of(stored: Any) -> Limits:
    return Limits.model_validate(stored or {})


def default_limits(settings: Settings) -> Limits:
    return Limits(
        requests_per_minute=settings.limit_requests_per_minute,
        images_per_minute=settings.limit_images_per_minute,
        images_per_day=settings.limit_images_per_day,
        concurrent_jobs=settings.limit_concurrent_jobs,
    )
