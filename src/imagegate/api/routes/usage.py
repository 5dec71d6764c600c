"""``GET /v1/usage``: what a tenant's jobs cost, per hour or day, grouped as asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from imagegate.api.deps import RuntimeDep, UsageReader
from imagegate.api.problems import documented
from imagegate.errors import InvalidField, TenantNotFound
from imagegate.tenancy.principal import Principal
from imagegate.usage.reports import GROUPS

router = APIRouter(prefix="/v1", tags=["usage"])
DEFAULT_SPAN = {"1h": timedelta(days=1), "1d": timedelta(days=30)}


@router.get("/usage", responses=documented(404))
def usage(
    principal: UsageReader,
    runtime: RuntimeDep,
    start: datetime | None = None,
    end: datetime | None = None,
    bucket: Literal["1h", "1d"] = "1d",
    group_by: Annotated[
        list[str], Query(description="key, user, model or status; repeat or comma-separate.")
    ] = [],  # noqa: B006 (FastAPI copies defaults per request)
    tenant: Annotated[str | None, Query(description="The admin token's choice.")] = None,
) -> dict[str, list[dict[str, Any]]]:
    """``{"data": [{"start", "end", "jobs", "images", "cost", "currency", "generation_s",
    …groups}]}``, oldest first. Defaults: the last day (``1h``) or 30 days (``1d``)."""
    end = _aware(end) or datetime.now(UTC)
    start = _aware(start) or end - DEFAULT_SPAN[bucket]
    if start >= end:
        raise InvalidField("start", "invalid_range", "The start must come before the end.")
    groups = _groups(group_by)
    rows = runtime.usage.buckets(_tenant(principal, tenant), start, end, bucket, groups)
    return {"data": rows}


def _tenant(principal: Principal, asked: str | None) -> str | None:
    """A key reads its own tenant; the admin token any (or, naming none, all)."""
    if principal.kind == "admin":
        return asked
    if asked is not None and asked != principal.tenant:
        raise TenantNotFound(tenant=asked)
    return principal.tenant


def _groups(group_by: list[str]) -> list[str]:
    names = [name.strip() for value in group_by for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in GROUPS]
    if unknown:
        raise InvalidField(
            "group_by", "invalid_value", f"Group by {', '.join(GROUPS)}; not {unknown[0]!r}."
        )
    return list(dict.fromkeys(names))


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
