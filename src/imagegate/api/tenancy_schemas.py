"""Schemas of the tenancy routes: keys, tenants, browser tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from imagegate.limits.policy import Limits, limits_of
from imagegate.tenancy.principal import DEFAULT_KEY_SCOPES, Scope
from imagegate.tenancy.records import KeyRecord, TenantRecord
from imagegate.usage.budgets import Budget, budget_of


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyCreate(_Strict):
    tenant: str = Field(min_length=1, max_length=100, description="Created if new.")
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=lambda: sorted(DEFAULT_KEY_SCOPES))
    expires_at: datetime | None = None
    limits: Limits | None = None
    budget: Budget | None = None


class KeyOut(BaseModel):
    id: str
    tenant: str
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    scopes: list[Scope]
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    limits: Limits | None
    budget: Budget | None

    @classmethod
    def of(cls, key: KeyRecord) -> KeyOut:
        return cls(
            id=key.id,
            tenant=key.tenant,
            name=key.name,
            prefix=key.prefix,
            scopes=sorted(key.scopes),
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            created_at=key.created_at,
            limits=limits_of(key.limits) if key.limits else None,
            budget=budget_of(key.budget),
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The secret key. Shown this once: only its hash is kept.")


class TenantPut(_Strict):
    limits: Limits | None = None
    budget: Budget | None = None
    weight: float | None = Field(default=None, gt=0, le=1000, description="Fair share weight.")
    retention_days: float | None = Field(
        default=None,
        gt=0,
        le=36500,
        description="How long the tenant's ended jobs and images are kept (null: the "
        "service's IMAGEGATE_RETENTION_DAYS).",
    )


class TenantOut(BaseModel):
    id: str
    weight: float
    retention_days: float | None = None
    limits: Limits | None
    budget: Budget | None
    budget_status: dict[str, Any] | None = Field(
        default=None, description="This period's spend and reservations, against the budget."
    )
    created_at: datetime

    @classmethod
    def of(cls, tenant: TenantRecord, status: dict[str, Any] | None = None) -> TenantOut:
        return cls(
            id=tenant.id,
            weight=tenant.weight,
            retention_days=tenant.retention_days,
            limits=limits_of(tenant.limits) if tenant.limits else None,
            budget=budget_of(tenant.budget),
            budget_status=status,
            created_at=tenant.created_at,
        )


class ClientTokenCreate(_Strict):
    user: str = Field(min_length=1, max_length=200, description="Your app's end-user id.")
    ttl_s: int = Field(default=600, ge=1, le=3600)
    max_jobs: int | None = Field(default=None, ge=1, description="Jobs the token may create.")
    templates: list[str] | None = Field(
        default=None, description="If given, the only templates the token may use."
    )


class ClientTokenOut(BaseModel):
    token: str
    expires_at: datetime
