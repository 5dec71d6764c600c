"""Output moderation with NudeNet's bundled ONNX detector, on images drawn here.

No photographs can be downloaded, so the real detector is run on drawn images: sketch
renders and plain landscapes (which must pass) and a crude skin-toned figure that the
detector does score as FEMALE_BREAST_EXPOSED (about 0.6). The threshold rules are also
tested on detections in NudeNet's own output shape.
"""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image, ImageDraw

from imagegate.generators.sketch_scene import render
from imagegate.safety.output import DEFAULT_THRESHOLDS, OutputModerator, shared_detector
from imagegate.safety.verdict import Action
from imagegate.settings import Settings


def landscape(width: int = 512, height: int = 384) -> Image.Image:
    image = Image.new("RGB", (width, height), (120, 180, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, height * 2 // 3, width, height), fill=(40, 140, 60))
    draw.polygon([(0, 260), (150, 90), (300, 260)], fill=(110, 110, 120))
    draw.ellipse((380, 40, 440, 100), fill=(250, 220, 90))
    return image


def skin_toned_figure() -> Image.Image:
    image = Image.new("RGB", (512, 512), (230, 190, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((150, 100, 350, 400), fill=(210, 160, 130))
    draw.ellipse((200, 200, 230, 230), fill=(150, 80, 70))
    draw.ellipse((280, 200, 310, 230), fill=(150, 80, 70))
    return image


def detection(label: str, score: float) -> dict[str, Any]:
    return {"class": label, "score": score, "box": [10, 20, 100, 120]}


@pytest.mark.parametrize(
    "image",
    [
        landscape(),
        landscape(320, 640).convert("L"),  # greyscale, portrait
        render("a lighthouse at dusk", None, 512, 512, 7),
        render("a forest cabin at night", "watercolor", 384, 256, 1),
        render("people on a beach at noon", "photorealistic", 512, 512, 3),
    ],
)
def test_ordinary_images_pass(image: Image.Image) -> None:
    verdict = OutputModerator().check(image)
    assert verdict.action is Action.ALLOW
    assert not verdict.flagged


def test_the_real_detector_flags_an_exposed_label_over_its_threshold() -> None:
    verdict = OutputModerator().check(skin_toned_figure())
    assert verdict.action is Action.BLOCK
    assert verdict.categories == {"sexual"}
    assert verdict.reasons == ("nudenet:FEMALE_BREAST_EXPOSED",)
    score = verdict.scores["nudenet"]["FEMALE_BREAST_EXPOSED"]
    assert DEFAULT_THRESHOLDS["FEMALE_BREAST_EXPOSED"] <= score < 0.9
    lenient = OutputModerator(thresholds={"FEMALE_BREAST_EXPOSED": 0.9})
    assert lenient.check(skin_toned_figure()).action is Action.ALLOW


def test_the_detector_is_created_once() -> None:
    assert shared_detector() is shared_detector()


@pytest.mark.parametrize(
    ("detections", "flagged"),
    [
        ([], []),
        ([detection("FEMALE_BREAST_EXPOSED", 0.49)], []),
        ([detection("FEMALE_BREAST_EXPOSED", 0.5)], ["FEMALE_BREAST_EXPOSED"]),
        ([detection("MALE_GENITALIA_EXPOSED", 0.41)], ["MALE_GENITALIA_EXPOSED"]),
        ([detection("FEMALE_BREAST_COVERED", 0.99), detection("FACE_FEMALE", 0.95)], []),
        ([detection("BELLY_EXPOSED", 0.97), detection("FEET_EXPOSED", 0.9)], []),
        (
            [detection("BUTTOCKS_EXPOSED", 0.3), detection("BUTTOCKS_EXPOSED", 0.7)],
            ["BUTTOCKS_EXPOSED"],
        ),
        (
            [detection("ANUS_EXPOSED", 0.8), detection("FEMALE_GENITALIA_EXPOSED", 0.45)],
            ["ANUS_EXPOSED", "FEMALE_GENITALIA_EXPOSED"],
        ),
    ],
)
def test_labels_are_flagged_at_or_over_their_threshold(
    detections: list[dict[str, Any]], flagged: list[str]
) -> None:
    verdict = OutputModerator().judge(detections)
    assert list(verdict.reasons) == [f"nudenet:{label}" for label in flagged]
    assert verdict.action is (Action.BLOCK if flagged else Action.ALLOW)
    for item in detections:
        assert verdict.scores["nudenet"][item["class"]] >= item["score"]


def test_thresholds_from_the_settings_change_add_and_disable_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "IMAGEGATE_NUDENET_THRESHOLDS",
        '{"FEMALE_BREAST_EXPOSED": 0.8, "BELLY_EXPOSED": 0.6, "BUTTOCKS_EXPOSED": 1.5}',
    )
    moderator = OutputModerator(thresholds=Settings().nudenet_thresholds)
    assert moderator.judge([detection("FEMALE_BREAST_EXPOSED", 0.7)]).action is Action.ALLOW
    assert moderator.judge([detection("BELLY_EXPOSED", 0.65)]).action is Action.BLOCK
    assert moderator.judge([detection("BUTTOCKS_EXPOSED", 0.99)]).action is Action.ALLOW
    assert moderator.judge([detection("ANUS_EXPOSED", 0.5)]).action is Action.BLOCK  # default


class RecordingDetector:
    def __init__(self, detections: list[dict[str, Any]]) -> None:
        self.detections = detections
        self.seen: list[Any] = []

    def detect(self, image: Any) -> list[dict[str, Any]]:
        self.seen.append(image)
        return self.detections


def test_the_detector_gets_the_image_as_rgba_pixels() -> None:
    detector = RecordingDetector([detection("MALE_GENITALIA_EXPOSED", 0.9)])
    verdict = OutputModerator(detector=detector).check(landscape(64, 48))
    assert verdict.reasons == ("nudenet:MALE_GENITALIA_EXPOSED",)
    (pixels,) = detector.seen
    assert pixels.shape == (48, 64, 4)
    assert tuple(pixels[0, 0]) == (120, 180, 240, 255)
