"""The OpenAPI document, completed with every answer a route can give.

FastAPI documents what a route returns and, for a route with parameters, a 422 in its own
shape. ImageGate's refusals come from more places than that: the guards in front of every
route (the Host, a page's Origin, the body's size), the dependencies a route takes (the
credential and its limits, the database behind the runtime), and the route itself. Each
of those places states what it can refuse, here or with :func:`refuses`, and
:func:`complete` writes it into every operation once:

- each refusal status, with the problem+json schema (OpenAI's error envelope on the
  OpenAI-compatible routes) in place of FastAPI's own 422;
- the headers each answer carries: ``Retry-After`` and the ``RateLimit`` pair on a 429,
  ``Retry-After`` on a 503, and ``X-Request-ID`` on every answer.

Routes add their own refusals with ``responses=documented(...)`` and their own headers with
:func:`headers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from imagegate.api.problems import MEDIA_TYPE, REFUSALS, ProblemOut

F = TypeVar("F", bound=Callable[..., Any])
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}  # where a foreign Origin is refused

# The headers ImageGate sets, by name, as OpenAPI header objects.
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id (the client's own X-Request-ID, or a new one); "
        "every log line about the request carries it.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again (on a 429 or 503), or before "
        "the next poll of an unfinished job.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Policy": {
        "description": 'The limits that apply, as in the IETF RateLimit draft: `"rpm";q=60;w=60`.',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of the nearest limit: `"rpm";r=59;t=60`.',
        "schema": {"type": "string"},
    },
    "Location": {"description": "The job's URL.", "schema": {"type": "string"}},
    "Cache-Status": {
        "description": "RFC 9211: what the result cache did (`ImageGate; hit`, `; fwd=miss`, "
        "`; fwd=bypass`, or `; collapsed` when following a job in flight).",
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when the Idempotency-Key had been used with this request "
        "before: the answer is the first job's.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "ETag": {"description": "A strong tag of the image's content.", "schema": {"type": "string"}},
    "Cache-Control": {
        "description": "How long the answer may be kept.",
        "schema": {"type": "string"},
    },
    "Content-Disposition": {
        "description": "The file name to save the image as.",
        "schema": {"type": "string"},
    },
}
# The headers each refusal status carries, besides X-Request-ID.
REFUSAL_HEADERS = {429: ("Retry-After", "RateLimit-Policy", "RateLimit"), 503: ("Retry-After",)}


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorOut(BaseModel):
    """OpenAI's error envelope, which the OpenAI-compatible routes answer in."""

    error: OpenAIErrorDetail


def refuses(*statuses: int) -> Callable[[F], F]:
    """Marks a dependency with the refusal statuses it can raise: every route that takes it
    documents them."""

    def mark(call: F) -> F:
        call.__refusals__ = statuses  # type: ignore[attr-defined]
        return call

    return mark


def headers(*names: str) -> dict[str, Any]:
    """An OpenAPI ``headers`` entry for a route's ``responses``: ``{202: headers(...)}``."""
    return {"headers": {name: HEADERS[name] for name in names}}


def install(app: FastAPI, envelope_of: Callable[[APIRoute], type[BaseModel]]) -> None:
    """Completes ``app``'s OpenAPI document the first time it is asked for.
    ``envelope_of`` names the error body of a route."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate(), _routes(app), envelope_of)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(
    schema: dict[str, Any],
    routes: Iterable[tuple[str, APIRoute]],
    envelope_of: Callable[[APIRoute], type[BaseModel]],
) -> dict[str, Any]:
    """Writes each route's refusals and headers into ``schema``; ``routes`` pairs each
    route with its path as mounted."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, route in routes:
        envelope = envelope_of(route)
        _add_schema(schemas, envelope)
        for method in sorted(route.methods or ()):
            operation = schema["paths"][path][method.lower()]
            _complete_operation(operation["responses"], refusals_of(route, method), envelope)
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, replaced
        schemas.pop(unused, None)
    return schema


def refusals_of(route: APIRoute, method: str) -> set[int]:
    """What a request to ``route`` may be refused with, by where the refusal comes from."""
    found = {400}  # host_untrusted, from the guard in front of every route
    found |= _dependency_refusals(route.dependant)
    if route.dependant.body_params:
        found |= {400, 413, 422}  # malformed_json, body_too_large, a field refused
    if _parameters(route.dependant):
        found.add(422)
    if method in UNSAFE_METHODS:
        found.add(403)  # origin_forbidden
    return found


def _dependency_refusals(dependant: Dependant) -> set[int]:
    found = set(getattr(dependant.call, "__refusals__", ()))
    for sub in dependant.dependencies:
        found |= _dependency_refusals(sub)
    return found


def _parameters(dependant: Dependant) -> bool:
    if dependant.path_params or dependant.query_params or dependant.header_params:
        return True
    return any(_parameters(sub) for sub in dependant.dependencies)


def _complete_operation(
    responses: dict[str, Any], refusals: set[int], envelope: type[BaseModel]
) -> None:
    body = {"schema": {"$ref": f"#/components/schemas/{envelope.__name__}"}}
    media = MEDIA_TYPE if envelope is ProblemOut else "application/json"
    for refusal in refusals:
        responses.setdefault(str(refusal), {"description": REFUSALS[refusal]})
    for key, response in responses.items():
        status = int(key)
        if status >= 400:
            response["content"] = {media: body}
            if status == 422:  # FastAPI's own description of its own body
                response["description"] = REFUSALS[422]
            for name in REFUSAL_HEADERS.get(status, ()):
                response.setdefault("headers", {})[name] = HEADERS[name]
        response.setdefault("headers", {})["X-Request-ID"] = HEADERS["X-Request-ID"]


def _add_schema(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    found = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in found.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, found)


def _routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """The app's documented routes, those of included routers too, with their full paths."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema:
            found.append((str(context.path_format), route))
    return found
