"""The generator seam: a backend loads once, then renders batches of requests.

A backend is one module (``sketch`` is built in; heavy ones import their libraries inside
their own module only). :func:`load_generator` picks one by name from the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from PIL.Image import Image

    from imagegate.settings import Settings


@dataclass(frozen=True, slots=True)
class StepInfo:
    """Progress after one step. ``previews``: one low-resolution image per request of the
    batch, on the steps where the backend made them (every ``preview_every`` steps)."""

    step: int
    total: int
    previews: Sequence[Image] | None = None


StepCallback = Callable[[StepInfo], None]
"""Called after each step; it raises to stop the generation (cancel, timeout, shutdown)."""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    job_id: str
    prompt: str
    negative_prompt: str | None
    style: str | None
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    n: int = 1


class Generator(Protocol):
    @property
    def model_name(self) -> str: ...

    def load(self) -> None:
        """Load weights and warm up; called once per worker process before any job."""

    def generate(
        self, batch: Sequence[GenerationRequest], on_step: StepCallback
    ) -> list[list[Image]]:
        """Render every request of the batch; one list of ``n`` images per request."""
        ...


def load_generator(settings: Settings) -> Generator:
    if settings.backend == "sketch":
        from imagegate.generators.sketch import SketchGenerator

        return SketchGenerator(
            delay_ms=settings.sketch_delay_ms,
            model_name=settings.model_name,
            preview_every=settings.preview_every,
        )
    if settings.backend == "openai":
        from imagegate.generators.openai import OpenAIGenerator

        return OpenAIGenerator.from_settings(settings)
    if settings.backend == "diffusers":
        from imagegate.generators.diffusers import DiffusersGenerator

        return DiffusersGenerator.from_settings(settings)
    raise ValueError(f"unknown backend {settings.backend!r}")  # pragma: no cover
