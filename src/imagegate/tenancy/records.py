"""Tenants and API keys as frozen records, and their mapping from SQL rows."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imagegate.errors import InvalidField
from imagegate.jobs.rows import utc
from imagegate.tenancy.principal import Scope

TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: str
    weight: float
    limits: Mapping[str, Any] | None
    budget: Mapping[str, Any] | None
    created_at: datetime
    retention_days: float | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    tenant: str
    name: str
    prefix: str
    scopes: frozenset[Scope]
    limits: Mapping[str, Any] | None
    budget: Mapping[str, Any] | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    def usable(self, now: datetime) -> bool:
        expired = self.expires_at is not None and self.expires_at <= now
        return self.revoked_at is None and not expired


def check_tenant_name(name: str, field: str = "tenant") -> str:
    if not TENANT_NAME.fullmatch(name):
        raise InvalidField(
            field,
            "invalid_tenant",
            "A tenant name is 1 to 100 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit.",
        )
    return name


def tenant_from_row(row: Mapping[Any, Any]) -> TenantRecord:
    return TenantRecord(
        id=row["id"],
        weight=float(row["weight"]),
        limits=row["limits"],
        budget=row["budget"],
        created_at=utc(row["created_at"]) or row["created_at"],
        retention_days=row["retention_days"],
    )


def key_from_row(row: Mapping[Any, Any]) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=frozenset(Scope(s) for s in row["scopes"]),
        limits=row["limits"],
        budget=row["budget"],
        expires_at=utc(row["expires_at"]),
        revoked_at=utc(row["revoked_at"]),
        created_at=utc(row["created_at"]) or row["created_at"],
    )
