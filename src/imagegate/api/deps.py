"""Request dependencies: the runtime, the caller, and links for responses."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from imagegate.api.links import Links
from imagegate.api.openapi import refuses
from imagegate.api.problems import documented
from imagegate.errors import Unauthorized
from imagegate.jobs.states import Status
from imagegate.runtime import Runtime
from imagegate.tenancy.auth import bearer
from imagegate.tenancy.keys import KEY_PREFIX
from imagegate.tenancy.principal import Principal, Scope


def runtime_of(connection: HTTPConnection) -> Runtime:
    runtime: Runtime = connection.app.state.runtime
    return runtime


@refuses(503)  # what uses the runtime may find the database (or Redis) away
async def get_runtime(request: Request) -> Runtime:
    """Async, as the dependencies that only read are: a sync one costs a trip to the
    thread pool."""
    return runtime_of(request)


def credential_of(connection: HTTPConnection) -> str | None:
    """The bearer credential, from ``Authorization`` or, for what a browser cannot send
    headers with (EventSource, WebSocket), the ``access_token`` query parameter. A secret
    key is never taken from a URL, where logs and proxies would keep it."""
    given = bearer(connection.headers.get("authorization"))
    if given is not None:
        return given
    if not connection.scope.get("query_string"):  # a poll has none: nothing to parse
        return None
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


def authorized(runtime: Runtime, connection: HTTPConnection, scope: Scope | None) -> Principal:
    """The caller, authenticated and counted, with ``scope`` (None: any valid credential).
    It may block (a key's lookup, Redis): call it from a thread."""
    found = authenticate(runtime, connection)  # reads the credential itself (credential_of)
    if scope is not None:
        found.require(scope)
    return found


def requires(scope: Scope | None) -> Callable[..., Principal]:
    """The caller, as a dependency: one per route, so it takes one trip to the thread pool."""

    @refuses(401, 403, 429, 503)  # a credential, its scope, its limits, the limits' store
    def principal(
        request: Request,
        runtime: Annotated[Runtime, Depends(get_runtime)],
        _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> Principal:
        return authorized(runtime, request, scope)

    return principal


class PolledRoute(APIRoute):
    """The route class of the routes clients poll most (``GET /status/{id}``,
    ``GET /v1/jobs/{id}``), through FastAPI's own hook for a custom route handler.

    FastAPI documents such a route from its endpoint as usual, but a request goes straight
    to the endpoint, ``endpoint(request=..., **path_params)``: there is no dependency to
    solve (it takes none), no sub-response to merge, and no validation of what it returns
    (a :func:`json_answer`, rendered once). Per poll that machinery cost more CPU than the
    read itself. An error the endpoint raises goes to the app's exception handlers, as on
    every route. The endpoint calls :func:`authorized` in the one trip to the thread pool
    it takes for its read; :func:`polled` documents what that adds."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            answer: Response = await endpoint(request=request, **request.path_params)
            return answer

        return handle


def polled(*statuses: int, answers: Mapping[int, dict[str, Any]]) -> dict[str, Any]:
    """The route options of a :class:`PolledRoute`: the documentation of what ``requires``
    would add (the bearer scheme, the credential's refusals, the runtime's 503)."""
    return {
        "responses": documented(401, 403, 429, 503, *statuses, answers=answers),
        "openapi_extra": {"security": [{BEARER.scheme_name: []}]},
    }


def poll_hint(runtime: Runtime, status: Status) -> dict[str, str]:
    """``Retry-After`` on the answer about an unfinished job: when to poll again."""
    return {} if status.is_final else {"Retry-After": str(runtime.settings.poll_hint_s)}


def json_answer(model: BaseModel, headers: Mapping[str, str] | None = None) -> Response:
    """``model`` rendered once by pydantic, as FastAPI would render it for its route."""
    return Response(model.model_dump_json(), media_type="application/json", headers=headers)


def links_of(request: Request, runtime: Runtime) -> Links:
    """Links based on ``IMAGEGATE_PUBLIC_URL``, or else on the request's own address."""
    base = runtime.settings.public_url or str(request.base_url)
    return Links(base, runtime.signer, runtime.presigner)


async def get_links(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Links:
    return links_of(request, runtime)


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
