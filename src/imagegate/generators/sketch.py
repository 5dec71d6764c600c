"""``sketch``: the built-in placeholder backend, for development, demos and tests.

It is not a learned model. It draws a deterministic scene from the prompt's words
(:mod:`imagegate.generators.sketch_scene`), needs no GPU and no download, and can be
slowed down with ``IMAGEGATE_SKETCH_DELAY_MS``, spread over its steps, to act like one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from PIL import ImageFilter
from PIL.Image import Image

from imagegate.generators import GenerationRequest, StepCallback, StepInfo
from imagegate.generators.sketch_scene import render


class SketchGenerator:
    def __init__(
        self, delay_ms: int = 0, model_name: str = "sketch-v1", preview_every: int = 0
    ) -> None:
        self._delay_s = delay_ms / 1000
        self._model_name = model_name
        self._preview_every = preview_every

    @property
    def model_name(self) -> str:
        return self._model_name

    def load(self) -> None:
        render("warm up", None, 64, 64, 0)

    def generate(
        self, batch: Sequence[GenerationRequest], on_step: StepCallback
    ) -> list[list[Image]]:
        started = time.monotonic()
        images = [self._render(request) for request in batch]
        # The delay stands in for a model's whole generation time, drawing included:
        # each step sleeps towards its share of the deadline.
        steps = max(request.steps for request in batch)
        for step in range(1, steps + 1):
            pause = started + self._delay_s * step / steps - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            on_step(StepInfo(step, steps, self._previews(images, step)))
        return images

    def _previews(self, images: list[list[Image]], step: int) -> list[Image] | None:
        """A small, blurred version of each request's first image, like a denoising preview."""
        if not self._preview_every or step % self._preview_every:
            return None
        return [preview_of(first) for first, *_ in images]

    @staticmethod
    def _render(request: GenerationRequest) -> list[Image]:
        return [
            render(request.prompt, request.style, request.width, request.height, request.seed + i)
            for i in range(request.n)
        ]


def preview_of(image: Image, size: int = 64) -> Image:
    small = image.copy()
    small.thumbnail((size, size))
    return small.filter(ImageFilter.GaussianBlur(2))
