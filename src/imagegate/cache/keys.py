"""Which requests may be answered from the cache, and the key of what decides their pixels.

Only a deterministic request is cached: one with an explicit seed, on a backend that
makes the same pixels from the same inputs (``sketch``, ``diffusers``; never ``openai``,
whose API takes no seed). An unseeded request asks for a fresh image and gets one.

The key is the SHA-256 of the canonical JSON of everything that decides the pixels: the
backend, the model and the settings that change its output, the full prompt, the negative
prompt, the size, steps, guidance, seed and n, and the output format. The cache's scope
comes first, so by default one tenant's entries are never another's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from imagegate.errors import InvalidField
from imagegate.jobs.models import JobSpec
from imagegate.jobs.rows import spec_values
from imagegate.settings import Settings

DETERMINISTIC_BACKENDS = frozenset({"sketch", "diffusers"})
GLOBAL_SCOPE = "*"


class CacheMode(StrEnum):
    """The request's directive, as ``Cache-Control`` spells it (RFC 9111)."""

    DEFAULT = "default"  # look up, and store
    NO_CACHE = "no-cache"  # generate afresh, and store
    NO_STORE = "no-store"  # generate afresh, and keep nothing

    @property
    def looks_up(self) -> bool:
        return self is CacheMode.DEFAULT

    @property
    def stores(self) -> bool:
        return self is not CacheMode.NO_STORE


@dataclass(frozen=True, slots=True)
class CacheRequest:
    """What the cache may do for one new job: its key (None: not cacheable) and mode."""

    key: str | None
    mode: CacheMode = CacheMode.DEFAULT

    @property
    def status_if_generated(self) -> str:
        """RFC 9211's word for a job that runs: a miss, or the cache was bypassed."""
        return "miss" if self.key is not None and self.mode.looks_up else "bypass"


NOT_CACHEABLE = CacheRequest(None)


def mode_of(cache_control: str | None, field: str | None = None) -> CacheMode:
    """The strictest of the ``Cache-Control`` request directives and the body's ``cache``."""
    asked = {CacheMode.DEFAULT}
    if field is not None:
        try:
            asked.add(CacheMode(field))
        except ValueError:
            raise InvalidField(
                "cache", "invalid_value", "The cache field is default, no-cache or no-store."
            ) from None
    for directive in (cache_control or "").lower().split(","):
        name = directive.split("=", 1)[0].strip()
        if name in (CacheMode.NO_CACHE, CacheMode.NO_STORE):
            asked.add(CacheMode(name))
        elif name == "max-age" and directive.split("=", 1)[-1].strip() == "0":
            asked.add(CacheMode.NO_CACHE)  # what browsers send for a hard reload
    order = [CacheMode.NO_STORE, CacheMode.NO_CACHE, CacheMode.DEFAULT]
    return next(mode for mode in order if mode in asked)


def cache_request(
    spec: JobSpec, seeded: bool, tenant: str, settings: Settings, mode: CacheMode
) -> CacheRequest:
    """The job's cache key and mode; not cacheable unless seeded on a deterministic backend
    with the cache on."""
    if not (settings.cache_enabled and seeded and settings.backend in DETERMINISTIC_BACKENDS):
        return CacheRequest(None, mode)
    scope = GLOBAL_SCOPE if settings.cache_scope == "global" else tenant
    return CacheRequest(request_key(spec, scope, settings), mode)


def request_key(spec: JobSpec, scope: str, settings: Settings) -> str:
    canonical = json.dumps(
        {"scope": scope, "model": model_identity(settings), **pixel_inputs(spec)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def pixel_inputs(spec: JobSpec) -> dict[str, Any]:
    """The spec's fields that decide the pixels: the full prompt holds the prompt and the
    style, and the priority draws nothing."""
    values = spec_values(spec)
    for name in ("prompt", "style", "priority"):
        del values[name]
    return values  # output_format and output_compression among them


def model_identity(settings: Settings) -> dict[str, Any]:
    """The backend and model, with the settings that change what it draws."""
    identity: dict[str, Any] = {"backend": settings.backend, "model": settings.model_name}
    if settings.backend == "diffusers":
        identity |= {
            "scheduler": settings.diffusers_scheduler,
            "dtype": settings.diffusers_dtype,
        }
    return identity
