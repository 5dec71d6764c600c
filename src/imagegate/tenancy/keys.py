"""API keys: made with 192 random bits, shown once, stored as a SHA-256 hash.

A key is looked up by its hash (a key this random needs no slow hash: nobody can guess
one to test against a stolen table), and the stored hash is compared in constant time.
Lookups are cached for ``cache_s`` (at most 2 s), which bounds how long a revoked key
keeps working on any replica.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from imagegate.errors import KeyNotFound, TenantNotFound
from imagegate.jobs.database import WRITE, insert_or_ignore
from imagegate.jobs.tables import api_keys, tenants
from imagegate.tenancy.principal import Scope
from imagegate.tenancy.records import (
    KeyRecord,
    TenantRecord,
    check_tenant_name,
    key_from_row,
    tenant_from_row,
)

KEY_PREFIX = "ig_sk_"
SHOWN_PREFIX = 8  # characters after ig_sk_ kept in the clear, to tell keys apart in lists
Clock = Callable[[], datetime]


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)  # 192 bits


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KeyStore:
    def __init__(self, engine: Engine, cache_s: float = 1.0, clock: Clock = _utcnow) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**WRITE)
        self._cache_s = cache_s
        self._now = clock
        self._keys: dict[str, tuple[float, KeyRecord]] = {}
        self._tenants: dict[str, tuple[float, TenantRecord | None]] = {}
        self._lock = threading.Lock()

    # -- keys ----------------------------------------------------------------------------

    def create_key(
        self,
        tenant: str,
        name: str,
        scopes: Iterable[Scope],
        expires_at: datetime | None = None,
        limits: Mapping[str, Any] | None = None,
        budget: Mapping[str, Any] | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key for ``tenant`` (created if new); returns it and its secret."""
        secret, now = new_secret(), self._now()
        values = {
            "id": f"key_{uuid.uuid4().hex[:24]}",
            "tenant": check_tenant_name(tenant),
            "name": name,
            "prefix": secret[: len(KEY_PREFIX) + SHOWN_PREFIX],
            "secret_hash": secret_hash(secret),
            "scopes": sorted(Scope(s).value for s in scopes),
            "limits": dict(limits) if limits else None,
            "budget": dict(budget) if budget else None,
            "expires_at": expires_at,
            "created_at": now,
        }
        with self._writer.begin() as conn:
            self._ensure_tenant(conn, tenant, now)
            row = conn.execute(insert(api_keys).values(values).returning(*api_keys.c)).mappings()
            return key_from_row(row.one()), secret

    def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [key_from_row(row) for row in conn.execute(query).mappings()]

    def get_key(self, key_id: str, tenant: str | None = None) -> KeyRecord:
        query = select(api_keys).where(api_keys.c.id == key_id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise KeyNotFound(key_id=key_id)
        return key_from_row(row)

    def revoke(self, key_id: str, tenant: str | None = None) -> KeyRecord:
        """Revoked at once here, and on other replicas within the cache time."""
        guards = [api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)]
        if tenant is not None:
            guards.append(api_keys.c.tenant == tenant)
        with self._writer.begin() as conn:
            conn.execute(update(api_keys).where(*guards).values(revoked_at=self._now()))
        key = self.get_key(key_id, tenant)
        with self._lock:
            self._keys = {h: hit for h, hit in self._keys.items() if hit[1].id != key_id}
        return key

    def authenticate(self, secret: str) -> KeyRecord | None:
        """The usable key with this secret, or None (unknown, revoked or expired)."""
        if not secret.startswith(KEY_PREFIX):
            return None
        hashed = secret_hash(secret)
        cached = self._keys.get(hashed)
        fresh = cached is not None and cached[0] > time.monotonic()
        key = cached[1] if cached is not None and fresh else self._load_key(hashed)
        return key if key is not None and key.usable(self._now()) else None

    def usable_key(self, key_id: str) -> KeyRecord | None:
        """The key behind a browser token, if still usable (cached like secrets)."""
        cached = self._keys.get(key_id)
        if cached is None or cached[0] <= time.monotonic():
            try:
                cached = (time.monotonic() + self._cache_s, self.get_key(key_id))
            except KeyNotFound:
                return None
            self._keys[key_id] = cached
        return cached[1] if cached[1].usable(self._now()) else None

    def _load_key(self, hashed: str) -> KeyRecord | None:
        query = select(api_keys).where(api_keys.c.secret_hash == hashed)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None or not hmac.compare_digest(row["secret_hash"], hashed):
            return None
        key = key_from_row(row)
        self._keys[hashed] = (time.monotonic() + self._cache_s, key)
        return key

    # -- tenants -------------------------------------------------------------------------

    def tenant(self, tenant: str) -> TenantRecord | None:
        """The tenant's settings (limits, budget, weight), cached like keys."""
        cached = self._tenants.get(tenant)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        with self.engine.connect() as conn:
            row = conn.execute(select(tenants).where(tenants.c.id == tenant)).mappings().first()
        record = tenant_from_row(row) if row is not None else None
        self._tenants[tenant] = (time.monotonic() + self._cache_s, record)
        return record

    def require_tenant(self, tenant: str) -> TenantRecord:
        record = self.tenant(tenant)
        if record is None:
            raise TenantNotFound(tenant=tenant)
        return record

    def put_tenant(self, tenant: str, **values: Any) -> TenantRecord:
        """Create the tenant or change the given fields (``limits``, ``budget``, ``weight``)."""
        now = self._now()
        with self._writer.begin() as conn:
            self._ensure_tenant(conn, check_tenant_name(tenant), now)
            if values:
                conn.execute(
                    update(tenants).where(tenants.c.id == tenant).values(updated_at=now, **values)
                )
        self._tenants.pop(tenant, None)
        return self.require_tenant(tenant)

    def list_tenants(self) -> list[TenantRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tenants).order_by(tenants.c.id)).mappings()
            return [tenant_from_row(row) for row in rows]

    def _ensure_tenant(self, conn: Connection, tenant: str, now: datetime) -> None:
        insert_or_ignore(conn, tenants, {"id": tenant, "created_at": now, "updated_at": now})
