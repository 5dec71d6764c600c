"""The FastAPI application: routers, problem handlers, and the runtime's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

import imagegate
from imagegate.api import openapi, problems
from imagegate.api.limits import BodySizeLimit
from imagegate.api.origins import BrowserGuard, OriginPolicy
from imagegate.api.problems import ProblemOut
from imagegate.api.request_id import RequestId
from imagegate.api.request_metrics import RequestMetrics
from imagegate.api.routes import (
    admin,
    images,
    jobs,
    legacy,
    meta,
    openai_compat,
    playground,
    safety,
    stream,
    tenancy,
    usage,
    ws_legacy,
)
from imagegate.runtime import Runtime
from imagegate.settings import Settings, load_settings


def create_app(settings: Settings | None = None, workers: int | None = None) -> FastAPI:
    """The app, with ``workers`` in-process workers (default: the settings' count)."""
    settings = settings or load_settings()
    count = settings.workers if workers is None else workers

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await run_in_threadpool(Runtime, settings)
        runtime.start_events(asyncio.get_running_loop())
        runtime.start_safety()
        runtime.start_workers(count, background=True)
        if count <= 0:
            runtime.start_upkeep()
        runtime.start_sweeper()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await run_in_threadpool(runtime.close)

    # Swagger UI and ReDoc from files of our own, not a CDN: the docs work offline.
    app = FastAPIOffline(
        title="ImageGate",
        version=imagegate.__version__,
        summary="Submit a prompt, follow the job, fetch the PNG.",
        lifespan=lifespan,
        responses=problems.documented(400),  # host_untrusted, on every route
    )
    # The polled routes first: the ones matched most, matched soonest.
    polled = (legacy.polls, jobs.polls)
    routers = (legacy.router, ws_legacy.router, jobs.router, stream.router, images.router)
    more = (meta.router, openai_compat.router, safety.router, admin.router, tenancy.router)
    for router in (*polled, *routers, *more, usage.router, playground.router):
        app.include_router(router)
    problems.install(app)
    openapi.install(app, envelope_of)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    policy = OriginPolicy(settings.trusted_hosts, settings.cors_origins, settings.public_url)
    app.add_middleware(BrowserGuard, policy=policy)  # outermost: before anything reads
    app.add_middleware(RequestMetrics)  # around it: refusals are counted and timed too
    app.add_middleware(RequestId)  # around all: every line and answer names the request
    return app


def envelope_of(route: APIRoute) -> type[BaseModel]:
    """The body of a route's refusals: OpenAI's envelope on its routes, else problem+json."""
    return openapi.OpenAIErrorOut if isinstance(route, openai_compat.OpenAIRoute) else ProblemOut


# What a page of an allowed origin may read of our answers, besides the CORS-safelisted few:
# what the clients act on (poll hints, limits, the cache, idempotent replays, request ids).
EXPOSED_HEADERS = [
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "Location",
    "Content-Disposition",
    "Cache-Status",
    "Idempotent-Replayed",
    "ETag",
    "X-Request-ID",
]
# What such a page may send besides the safelisted ones (Accept, Content-Type's form kinds):
# a credential, an idempotency key, JSON, a stream's resume point, the cache's directives.
ALLOWED_HEADERS = [
    "Authorization",
    "Idempotency-Key",
    "Content-Type",
    "Last-Event-ID",
    "Cache-Control",
    "X-Request-ID",
]
