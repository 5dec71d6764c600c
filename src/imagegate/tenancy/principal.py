"""The :class:`Principal`: the caller every route receives, and what it may do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from imagegate.errors import Forbidden
from imagegate.jobs.models import LOCAL_OWNER


class Scope(StrEnum):
    JOBS_WRITE = "jobs:write"
    JOBS_READ = "jobs:read"
    USAGE_READ = "usage:read"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)
DEFAULT_KEY_SCOPES = frozenset({Scope.JOBS_WRITE, Scope.JOBS_READ, Scope.USAGE_READ})
TOKEN_SCOPES = frozenset({Scope.JOBS_WRITE, Scope.JOBS_READ})


@dataclass(frozen=True, slots=True)
class Principal:
    """A tenant's key, a browser token (bound to one end user), the admin token, or, with
    auth off, the one local owner.

    ``user`` is set for a browser token: the caller sees and creates only that end user's
    jobs. ``operator`` is the admin token: every tenant's objects, on the admin routes.
    """

    tenant: str
    scopes: frozenset[Scope]
    kind: str  # local, key, token, admin
    key_id: str | None = None
    user: str | None = None
    token_id: str | None = None
    max_jobs: int | None = None
    templates: tuple[str, ...] | None = None  # a token's allow-list; None: any
    limits: Mapping[str, Any] = field(default_factory=dict)  # the key's own limits
    budget: Mapping[str, Any] | None = None  # the key's own budget

    @property
    def operator(self) -> bool:
        return self.kind in ("admin", "local")

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"This credential lacks the {scope.value!r} scope.", scope=scope.value)

    def may_see_tenant(self, tenant: str) -> bool:
        """The admin token sees every tenant; a key (admin scope or not) only its own."""
        return self.kind == "admin" or tenant == self.tenant


LOCAL = Principal(LOCAL_OWNER, ALL_SCOPES, "local")
OPERATOR = Principal(LOCAL_OWNER, ALL_SCOPES, "admin")
