"""Output moderation: NudeNet looks at each generated image before it is stored.

NudeNet's detector (its ONNX model shipped inside the package, run on the CPU by
:mod:`imagegate.safety.detector`) finds body parts and gives each a label and a score. An
image is refused when a label with a threshold is found at or above it. Only the exposed
labels have one by default; ``IMAGEGATE_NUDENET_THRESHOLDS`` (JSON, label to score)
changes or adds some, and a threshold above 1 turns a label off. The detector loads once
per process, on first use.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from PIL import Image

from imagegate.safety.verdict import Action, Verdict

DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "FEMALE_GENITALIA_EXPOSED": 0.4,
    "MALE_GENITALIA_EXPOSED": 0.4,
    "ANUS_EXPOSED": 0.4,
    "FEMALE_BREAST_EXPOSED": 0.5,
    "BUTTOCKS_EXPOSED": 0.5,
}


class Detector(Protocol):
    def detect(self, image: Any) -> list[dict[str, Any]]:
        """NudeNet's shape: ``[{"class": label, "score": float, "box": [x, y, w, h]}]``."""
        ...


class OutputModerator:
    name = "nudenet"

    def __init__(
        self,
        detector: Detector | None = None,
        thresholds: Mapping[str, float] | None = None,
    ) -> None:
        self._detector = detector
        self.thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}

    def check(self, image: Image.Image) -> Verdict:
        """The verdict on one image: refused with the labels found over their threshold."""
        detector = self._detector or shared_detector()
        rgba = _as_array(image)
        return self.judge(detector.detect(rgba))

    def judge(self, detections: list[dict[str, Any]]) -> Verdict:
        scores: dict[str, float] = {}
        for detection in detections:
            label, score = str(detection["class"]), float(detection["score"])
            scores[label] = max(scores.get(label, 0.0), round(score, 4))
        flagged = sorted(label for label, s in scores.items() if s >= self._limit(label))
        if not flagged:
            return Verdict(scores={self.name: scores})
        reasons = tuple(f"nudenet:{label}" for label in flagged)
        return Verdict(Action.BLOCK, frozenset({"sexual"}), reasons, {self.name: scores})

    def _limit(self, label: str) -> float:
        return self.thresholds.get(label, float("inf"))


def _as_array(image: Image.Image) -> Any:
    import numpy as np

    # NudeNet converts with OpenCV's RGBA-to-BGR, so it gets RGBA.
    return np.asarray(image.convert("RGBA"))


class _LazyNudeDetector:
    """NudeNet's detector, created (the ONNX session loaded) on the first detection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._detector: Any = None

    def detect(self, image: Any) -> list[dict[str, Any]]:
        with self._lock:
            if self._detector is None:
                from imagegate.safety.detector import LeanNudeDetector

                self._detector = LeanNudeDetector()
        detections: list[dict[str, Any]] = self._detector.detect(image)
        return detections


@functools.cache
def shared_detector() -> Detector:
    """The process's one NudeNet detector."""
    return _LazyNudeDetector()
