"""structlog set-up, once per process, from the settings.

Context bound with :mod:`structlog.contextvars` joins every line logged under it: the API
binds ``request_id`` for each request (:mod:`imagegate.api.request_id`), and a worker binds
``job_id`` and ``tenant`` along a job's path (:func:`job_context`). With
``IMAGEGATE_LOG_JSON=true`` each line is one JSON object, and the standard library's
loggers (SQLAlchemy, httpx, …) are rendered the same way. Values under names that hold
credentials are redacted before any renderer sees them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

from imagegate.settings import Settings

REDACTED = "[redacted]"
# Event keys whose values are credentials, wherever they are logged from.
SECRET_KEYS = re.compile(
    r"authorization|api[_-]?key|secret|password|passwd|bearer|cookie|^token$|signature|^sig$",
    re.IGNORECASE,
)


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),  # a line in one write
    )
    if settings.log_json:
        _render_standard_logging(shared, level)


def _render_standard_logging(shared: list[structlog.types.Processor], level: int) -> None:
    """The standard library's records as JSON lines too, through the same processors."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(level, logging.WARNING))  # libraries' info lines are noise here


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in event:
        if SECRET_KEYS.search(key) and event[key] is not None:
            event[key] = REDACTED
    return event


@contextmanager
def job_context(job_id: str, tenant: str) -> Iterator[None]:
    """Every line logged inside names the job and its tenant."""
    with structlog.contextvars.bound_contextvars(job_id=job_id, tenant=tenant):
        yield
