"""Request dependencies: the runtime, the caller, and links for responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from imagegate.api.links import Links
from imagegate.api.openapi import refuses
from imagegate.errors import Unauthorized
from imagegate.runtime import Runtime
from imagegate.tenancy.auth import bearer
from imagegate.tenancy.keys import KEY_PREFIX
from imagegate.tenancy.principal import Principal, Scope


@refuses(503)  # what uses the runtime may find the database (or Redis) away
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
    address = client_ip(connection)
    credential = credential_of(connection)
    principal = runtime.gate.authenticate(lambda: runtime.auth.principal(credential), address)
    runtime.gate.admit_request(principal, address)
    return principal


BEARER = HTTPBearer(
    auto_error=False,
    description="A secret API key (ig_sk_…), a browser token, or the admin token. Needed "
    "when IMAGEGATE_AUTH=required.",
)


def requires(scope: Scope | None) -> Callable[..., Principal]:
    """The caller, authenticated and counted, with ``scope`` (None: any valid credential).
    One dependency per route, so a request takes one trip to the thread pool for it."""

    @refuses(401, 403, 429, 503)  # a credential, its scope, its limits, the limits' store
    def principal(
        request: Request,
        runtime: Annotated[Runtime, Depends(get_runtime)],
        _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> Principal:
        found = authenticate(runtime, request)  # reads the credential itself (credential_of)
        if scope is not None:
            found.require(scope)
        return found

    return principal


def get_links(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Links:
    """Links based on ``IMAGEGATE_PUBLIC_URL``, or else on the request's own address."""
    base = runtime.settings.public_url or str(request.base_url)
    return Links(base, runtime.signer, runtime.presigner)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(requires(None))]
Reader = Annotated[Principal, Depends(requires(Scope.JOBS_READ))]
Writer = Annotated[Principal, Depends(requires(Scope.JOBS_WRITE))]
UsageReader = Annotated[Principal, Depends(requires(Scope.USAGE_READ))]
LinksDep = Annotated[Links, Depends(get_links)]


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Up to 255 characters: a retry with the same key and body gets the job "
        "the first request made (kept 24 hours); another body is a 422.",
    ),
]
CacheControlHeader = Annotated[
    str | None,
    Header(
        alias="Cache-Control",
        description="no-cache: generate afresh (the result is still cached); no-store: "
        "generate afresh and keep nothing. Only seeded requests are cached.",
    ),
]
