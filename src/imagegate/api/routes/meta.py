"""Styles, and the liveness and readiness probes."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from imagegate.api.deps import PrincipalDep, RuntimeDep
from imagegate.api.schemas import StyleOut
from imagegate.errors import StorageUnavailable
from imagegate.prompts.styles import STYLES

log = structlog.get_logger(__name__)
router = APIRouter()


@router.get("/v1/styles", response_model=list[StyleOut], tags=["styles"])
def list_styles(_: PrincipalDep) -> list[StyleOut]:
    return [
        StyleOut(name=s.name, description=s.description, suffix=s.suffix) for s in STYLES.values()
    ]


@router.get("/metrics", tags=["probes"], response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics: jobs, the queue, costs, the cache, safety (docs/metrics.md)."""
    body = runtime.metrics()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/health", tags=["probes"])
def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/ready", tags=["probes"])
def ready(runtime: RuntimeDep) -> JSONResponse:
    """Database reachable, storage writable, backend loaded: 200; otherwise 503."""
    checks = {
        "database": _check("database", runtime.store.ping),
        "storage": _check("storage", runtime.storage.check_writable),
        "backend": _state(runtime.backend_ready, runtime.load_error),
        "safety": _state(
            runtime.safety_state == "ok",
            None if runtime.safety_state in ("ok", "loading") else runtime.safety_state,
        ),
    }
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


def _check(name: str, probe: Callable[[], None]) -> str:
    """``ok`` or ``unavailable``: this probe is open to anyone, so the details (hosts,
    ports, paths) go to the log only."""
    try:
        probe()
    except (SQLAlchemyError, OSError, StorageUnavailable) as exc:
        log.warning("ready.check_failed", check=name, error=f"{type(exc).__name__}: {exc}")
        return "unavailable"
    return "ok"


def _state(ready: bool, failed: object) -> str:
    """A component that loads in the background: ok, loading, or failed (the details were
    logged when its load failed)."""
    if ready:
        return "ok"
    return "failed" if failed else "loading"
