"""Turning what a caller asked for into a :class:`JobSpec`, refusing bad input by field.

The API, the CLI and any later entry point share these checks, so a prompt that is
refused over HTTP is refused the same way everywhere, with the same stable code.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any, TypeVar

from imagegate.errors import InvalidField
from imagegate.jobs.models import JobSpec
from imagegate.prompts.styles import build_full_prompt, resolve_style
from imagegate.settings import Settings
from imagegate.storage.encoding import FORMATS

MAX_PROMPT_CHARS = 2000
MAX_N = 4
MAX_SEED = 2**32 - 1
PRIORITY_RANGE = (-100, 100)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JobRequest:
    """The caller's fields, as typed but not yet checked."""

    prompt: str
    style: str | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    n: int = 1
    priority: int = 0
    output_format: str | None = None
    output_compression: int | None = None


def build_spec(request: JobRequest, settings: Settings) -> JobSpec:
    prompt = check_prompt(request.prompt, "prompt")
    negative = request.negative_prompt
    if negative:
        negative = check_prompt(negative, "negative_prompt")
    style = resolve_style(request.style)
    return JobSpec(
        prompt=prompt,
        full_prompt=build_full_prompt(prompt, style),
        style=style.name if style else None,
        negative_prompt=negative or None,
        width=_size(_or(request.width, settings.default_size), "width", settings),
        height=_size(_or(request.height, settings.default_size), "height", settings),
        steps=_within(_or(request.steps, settings.default_steps), "steps", 1, settings.max_steps),
        guidance=_guidance(_or(request.guidance, settings.default_guidance)),
        seed=_seed(request.seed),
        n=_within(request.n, "n", 1, MAX_N),
        priority=_within(request.priority, "priority", *PRIORITY_RANGE),
        **_output(request.output_format, request.output_compression),
    )


def check_prompt(text: str, field: str) -> str:
    cleaned = unicodedata.normalize("NFC", text).strip()
    if not cleaned:
        raise InvalidField(field, "prompt_empty", f"The {field} must not be empty.")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise InvalidField(
            field,
            "prompt_too_long",
            f"The {field} has {len(cleaned)} characters; at most {MAX_PROMPT_CHARS} are allowed.",
        )
    bad = next((ch for ch in cleaned if _is_control(ch)), None)
    if bad is not None:
        raise InvalidField(
            field,
            "prompt_invalid_characters",
            f"The {field} contains a control character (U+{ord(bad):04X}).",
        )
    return cleaned


def _is_control(ch: str) -> bool:
    # Tabs and newlines are ordinary prompt text; NUL and other C0/C1 controls are not.
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cs")


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def _size(size: int, field: str, settings: Settings) -> int:
    _within(size, field, settings.min_size, settings.max_size, code="invalid_dimensions")
    if size % 8:
        raise InvalidField(field, "invalid_dimensions", f"The {field} must be a multiple of 8.")
    return size


def _output(output_format: str | None, compression: int | None) -> dict[str, Any]:
    kind = output_format or "png"
    if kind not in FORMATS:
        raise InvalidField(
            "output_format", "invalid_value", "The output_format is png, webp or jpeg."
        )
    if compression is not None:
        if kind == "png":
            raise InvalidField(
                "output_compression",
                "invalid_value",
                "The output_compression applies to webp and jpeg only; png is lossless.",
            )
        _within(compression, "output_compression", 0, 100)
    return {"output_format": kind, "output_compression": compression}


def _guidance(guidance: float) -> float:
    if not 0 <= guidance <= 30:
        raise InvalidField("guidance", "out_of_range", "The guidance must be between 0 and 30.")
    return guidance


def _seed(value: int | None) -> int:
    if value is None:
        return secrets.randbelow(MAX_SEED + 1)
    return _within(value, "seed", 0, MAX_SEED)


def _within(value: int, field: str, low: int, high: int, code: str = "out_of_range") -> int:
    if not low <= value <= high:
        raise InvalidField(
            field, code, f"The {field} must be between {low} and {high}.", minimum=low, maximum=high
        )
    return value
