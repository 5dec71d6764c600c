"""Every refusal as RFC 9457 problem+json, mapped from the one exception tree in one place."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sql
from starlette.exceptions import HTTPException

from imagegate.errors import DatabaseUnavailable, ImageGateError, InvalidField, MalformedBody

log = structlog.get_logger(__name__)
MEDIA_TYPE = "application/problem+json"

# What each refusal status means, for the OpenAPI document, with the codes it carries.
REFUSALS = {
    400: "Bad input: malformed_json, content_policy_violation; host_untrusted (the Host "
    "header is not in IMAGEGATE_TRUSTED_HOSTS).",
    401: "unauthorized: no credential, or an unknown, revoked, expired or tampered one.",
    402: "budget_exceeded: the job's estimated cost would pass a budget; names the budget, "
    "the spend and the period's end.",
    403: "forbidden: the credential lacks the scope (or a token, the user or template); "
    "origin_forbidden: a page of an origin not in IMAGEGATE_CORS_ORIGINS sent it.",
    404: "Not found, or not yours: job_not_found, image_not_found, key_not_found.",
    409: "illegal_transition: the job's state does not allow this.",
    413: "body_too_large: the request body is over IMAGEGATE_MAX_BODY_BYTES.",
    422: "A field's value is refused; the problem names the field and its code.",
    429: "rate_limited or quota_exceeded, with Retry-After, RateLimit-Policy and RateLimit; "
    "names the policy hit.",
    502: "The image provider behind the server failed (upstream_error).",
    503: "queue_full, database_unavailable, too_many_streams (IMAGEGATE_MAX_EVENT_STREAMS "
    "are open), or another dependency (Redis) is unavailable; with Retry-After.",
    504: "wait_timeout: the job did not finish within the time the route waits.",
}


class ProblemOut(BaseModel):
    """RFC 9457 problem details, with ImageGate's stable ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str
    field: str | None = None


def documented(
    *statuses: int, answers: Mapping[int, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses``: a route's own refusals (api/openapi.py gives each its body and
    headers), after what it documents of its other ``answers``."""
    found: dict[int | str, dict[str, Any]] = {key: value for key, value in (answers or {}).items()}
    return found | {status: {"description": REFUSALS[status]} for status in statuses}


def problem(status: int, code: str, detail: str, instance: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:imagegate:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": instance,
        **extra,
    }
    return ProblemResponse(body, status_code=status, media_type=MEDIA_TYPE)


class ProblemResponse(JSONResponse):
    """ASCII-escaped JSON: a problem may echo a client's broken text (a lone surrogate in a
    field name) and must still encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def problem_response(exc: ImageGateError, instance: str, **extra: Any) -> JSONResponse:
    extra |= {key: value for key, value in exc.extra.items() if key != "job_id"}
    if isinstance(exc, InvalidField):
        extra["field"] = exc.field
    response = problem(exc.status, exc.code, exc.message, instance, **extra)
    response.headers.update(error_headers(exc))
    return response


def error_headers(exc: ImageGateError) -> dict[str, str]:
    """Retry-After (for 429 and 503) and any headers the error carries."""
    headers = dict(exc.headers)
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    return headers


async def on_imagegate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageGateError)
    return problem_response(exc, request.url.path)


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_field_error(error) for error in exc.errors()]
    if any(error["code"] == "malformed_json" for error in errors):
        return problem_response(MalformedBody(), request.url.path)
    first = errors[0]
    detail = f"{first['field'] or 'request'}: {first['message']}"
    return problem(
        422, first["code"], detail, request.url.path, field=first["field"], errors=errors
    )


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    response = problem(exc.status_code, code, str(exc.detail), request.url.path)
    response.headers.update(exc.headers or {})
    return response


# What the database driver raises while the server restarts, is unreachable, or (SQLite)
# stays locked past the busy timeout; the pool raises TimeoutError when it has no
# connection to give. Each is a moment's outage, answered 503 with Retry-After, not a bug.
DATABASE_OUTAGES = (sql.OperationalError, sql.InterfaceError, sql.TimeoutError)


async def on_database_outage(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database.unavailable", path=request.url.path, error=type(exc).__name__)
    return problem_response(DatabaseUnavailable(), request.url.path)


async def on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request.failed", path=request.url.path)
    return problem(500, "internal_error", "An unexpected error occurred.", request.url.path)


_PYDANTIC_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "json_invalid": "malformed_json",
    "model_attributes_type": "invalid_type",
    "dict_type": "invalid_type",
}


def _field_error(error: Any) -> dict[str, str]:
    kind = str(error.get("type", ""))
    code = _PYDANTIC_CODES.get(kind)
    if code is None:
        code = "invalid_type" if kind.endswith(("_type", "_parsing")) else "invalid_value"
    return {"field": _field_name(error.get("loc", ())), "code": code, "message": error["msg"]}


def _field_name(location: Sequence[Any]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path")]
    return ".".join(parts)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ImageGateError, on_imagegate_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    for outage in DATABASE_OUTAGES:
        app.add_exception_handler(outage, on_database_outage)
    app.add_exception_handler(Exception, on_unexpected_error)
