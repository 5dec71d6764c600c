"""API keys and tenants (admin), and browser tokens (a tenant's own secret key).

The admin token manages every tenant; a key with the ``admin`` scope manages its own
tenant only, and another tenant's name or key id is a 404 to it, as a missing one is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

from fastapi import APIRouter

from imagegate.api.deps import RuntimeDep, Writer
from imagegate.api.problems import documented
from imagegate.api.routes.admin import AdminDep, tenant_filter
from imagegate.api.tenancy_schemas import (
    ClientTokenCreate,
    ClientTokenOut,
    KeyCreate,
    KeyCreated,
    KeyOut,
    TenantOut,
    TenantPut,
)
from imagegate.errors import Forbidden, InvalidField, TenantNotFound
from imagegate.limits.policy import Limits
from imagegate.runtime import Runtime
from imagegate.tenancy.principal import Principal
from imagegate.tenancy.records import TenantRecord
from imagegate.usage.budgets import Budget, budget_of, check_currency

router = APIRouter(prefix="/v1")
ADMIN: list[str | Enum] = ["admin"]


@router.post("/admin/keys", status_code=201, response_model=KeyCreated, tags=ADMIN)
def create_key(body: KeyCreate, principal: AdminDep, runtime: RuntimeDep) -> KeyCreated:
    """A new secret key, shown in ``key`` this once. The tenant is created if new."""
    _own_tenant(principal, body.tenant)
    _check_budget(runtime, body.budget, "budget")
    record, secret = runtime.keys.create_key(
        body.tenant,
        body.name,
        body.scopes,
        expires_at=body.expires_at,
        limits=_stored(body.limits),
        budget=body.budget.model_dump() if body.budget else None,
    )
    return KeyCreated(**KeyOut.of(record).model_dump(), key=secret)


@router.get("/admin/keys", response_model=dict[str, list[KeyOut]], tags=ADMIN)
def list_keys(
    principal: AdminDep, runtime: RuntimeDep, tenant: str | None = None
) -> dict[str, list[KeyOut]]:
    """Keys (never their secrets), oldest first; one tenant's with ``tenant``."""
    scope = tenant_filter(principal) or tenant
    if tenant is not None:
        _own_tenant(principal, tenant)
    return {"data": [KeyOut.of(key) for key in runtime.keys.list_keys(scope)]}


@router.post(
    "/admin/keys/{key_id}/revoke", response_model=KeyOut, tags=ADMIN, responses=documented(404)
)
def revoke_key(key_id: str, principal: AdminDep, runtime: RuntimeDep) -> KeyOut:
    """Refused at once here, and on every replica within IMAGEGATE_KEY_CACHE_S (1 s)."""
    return KeyOut.of(runtime.keys.revoke(key_id, tenant_filter(principal)))


@router.put("/admin/tenants/{tenant}", response_model=TenantOut, tags=ADMIN)
def put_tenant(tenant: str, body: TenantPut, principal: AdminDep, runtime: RuntimeDep) -> TenantOut:
    """Create the tenant, or set the fields given (``null`` clears limits or budget)."""
    _own_tenant(principal, tenant)
    _check_budget(runtime, body.budget, "budget")
    given = body.model_fields_set
    values: dict[str, object] = {}
    if "limits" in given:
        values["limits"] = _stored(body.limits)
    if "budget" in given:
        values["budget"] = body.budget.model_dump() if body.budget else None
    if body.weight is not None:
        values["weight"] = body.weight
    if "retention_days" in given:
        values["retention_days"] = body.retention_days
    return _tenant_out(runtime, runtime.keys.put_tenant(tenant, **values))


@router.get(
    "/admin/tenants/{tenant}", response_model=TenantOut, tags=ADMIN, responses=documented(404)
)
def get_tenant(tenant: str, principal: AdminDep, runtime: RuntimeDep) -> TenantOut:
    _own_tenant(principal, tenant)
    return _tenant_out(runtime, runtime.keys.require_tenant(tenant))


@router.get("/admin/tenants/{tenant}/alerts", tags=ADMIN, responses=documented(404))
def tenant_alerts(
    tenant: str, principal: AdminDep, runtime: RuntimeDep
) -> dict[str, list[dict[str, Any]]]:
    """The tenant's budget alerts as sent to its ``alert_url``, with every attempt."""
    _own_tenant(principal, tenant)
    runtime.keys.require_tenant(tenant)
    return {"data": runtime.store.alert_deliveries(tenant)}


@router.get("/admin/tenants", response_model=dict[str, list[TenantOut]], tags=ADMIN)
def list_tenants(principal: AdminDep, runtime: RuntimeDep) -> dict[str, list[TenantOut]]:
    own = tenant_filter(principal)
    found = [t for t in runtime.keys.list_tenants() if own is None or t.id == own]
    return {"data": [_tenant_out(runtime, t) for t in found]}


@router.post(
    "/client-tokens",
    status_code=201,
    response_model=ClientTokenOut,
    tags=["tenancy"],
    responses=documented(422),
)
def create_client_token(
    body: ClientTokenCreate, principal: Writer, runtime: RuntimeDep
) -> ClientTokenOut:
    """A short-lived token for a browser: it creates and follows ``user``'s jobs, and
    nothing else. Minted with a tenant's secret key, from the app's backend."""
    if principal.kind != "key" or principal.key_id is None:
        raise Forbidden("Browser tokens are minted with a tenant's secret API key.")
    ttl = min(body.ttl_s, runtime.settings.client_token_max_ttl_s)
    templates = tuple(body.templates) if body.templates is not None else None
    for name in templates or ():
        if name not in runtime.intake.templates:
            raise InvalidField("templates", "unknown_template", f"No template is named {name!r}.")
    token, claims = runtime.tokens.mint(
        principal.tenant, principal.key_id, body.user, ttl, body.max_jobs, templates
    )
    return ClientTokenOut(token=token, expires_at=claims.expires_at)


def _own_tenant(principal: Principal, tenant: str) -> None:
    """A tenant admin names its own tenant only; any other is a 404, as a missing one."""
    if not principal.may_see_tenant(tenant):
        raise TenantNotFound(tenant=tenant)


def _check_budget(runtime: Runtime, budget: Budget | None, field: str) -> None:
    check_currency(budget, runtime.pricing.currency, field)
    if budget is not None and budget.alert_url is not None:
        try:
            runtime.guard.check(budget.alert_url)
        except InvalidField as refused:
            raise InvalidField(f"{field}.alert_url", refused.code, refused.message) from refused


def _stored(limits: Limits | None) -> dict[str, object] | None:
    return limits.stored() if limits is not None else None


def _tenant_out(runtime: Runtime, tenant: TenantRecord) -> TenantOut:
    budget = budget_of(tenant.budget)
    status = None
    if budget is not None:
        status = runtime.usage.spend(f"tenant:{tenant.id}", budget, datetime.now(UTC))
    return TenantOut.of(tenant, status)
