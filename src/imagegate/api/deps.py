"""Request dependencies: the runtime, the caller, and links for responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from imagegate.api.links import Links
from imagegate.errors import Unauthorized
from imagegate.intake import Caller
from imagegate.runtime import Runtime
from imagegate.tenancy.auth import bearer
from imagegate.tenancy.keys import KEY_PREFIX
from imagegate.tenancy.principal import Principal, Scope


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def credential_of(connection: HTTPConnection) -> str | None:
    """The bearer credential, from ``Authorization`` or, for what a browser cannot send
    headers with (EventSource, WebSocket), the ``access_token`` query parameter. A secret
    key is never taken from a URL, where logs and proxies would keep it."""
    given = bearer(connection.headers.get("authorization"))
    if given is not None:
        return given
    query = connection.query_params.get("access_token")
    if query and query.startswith(KEY_PREFIX):
        raise Unauthorized("Send a secret key in the Authorization header, never in a URL.")
    return query or None


def client_ip(connection: HTTPConnection) -> str | None:
    return connection.client.host if connection.client else None


def authenticate(runtime: Runtime, connection: HTTPConnection) -> Principal:
    """Who is calling, counted against their requests-per-minute limits."""
    principal = runtime.auth.principal(credential_of(connection))
    runtime.gate.admit_request(principal, client_ip(connection))
    return principal


BEARER = HTTPBearer(
    auto_error=False,
    description="A secret API key (ig_sk_…), a browser token, or the admin token. Needed "
    "when IMAGEGATE_AUTH=required.",
)


def get_principal(
    request: Request,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    access_token: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> Principal:
    """The credential is read by :func:`credential_of`; the parameters document it."""
    return authenticate(runtime, request)


def requires(scope: Scope) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(scope)
        return principal

    return check


def get_caller(request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> Caller:
    """The owner and client address, for the audit log."""
    return Caller(principal.tenant, client_ip(request))


def get_links(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Links:
    """Links based on ``IMAGEGATE_PUBLIC_URL``, or else on the request's own address."""
    return Links(runtime.settings.public_url or str(request.base_url), runtime.signer)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
Reader = Annotated[Principal, Depends(requires(Scope.JOBS_READ))]
Writer = Annotated[Principal, Depends(requires(Scope.JOBS_WRITE))]
UsageReader = Annotated[Principal, Depends(requires(Scope.USAGE_READ))]
LinksDep = Annotated[Links, Depends(get_links)]
CallerDep = Annotated[Caller, Depends(get_caller)]
