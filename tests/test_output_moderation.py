"""Output moderation with NudeNet's bundled ONNX detector, on images drawn here.

No photographs can be downloaded, so the real detector is run on drawn images: sketch
renders and plain landscapes (which must pass) and a crude skin-toned figure that the
detector does score as FEMALE_BREAST_EXPOSED (about 0.6). The threshold rules are also
tested on detections in NudeNet's own output shape.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFilter

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


def grainy(image: Image.Image) -> Image.Image:
    """The image under fixed blurred noise: detail everywhere, as in a photograph."""
    noise = Image.frombytes("L", image.size, random.Random(3).randbytes(image.width * image.height))
    grain = noise.filter(ImageFilter.GaussianBlur(1.2))
    return Image.blend(image, Image.merge("RGB", [grain] * 3), 0.15)


TESTS_IMAGES = [
    landscape(),
    landscape(320, 640).convert("L"),
    render("a lighthouse at dusk", None, 512, 512, 7),
    render("a forest cabin at night", "watercolor", 384, 256, 1),
    render("people on a beach at noon", "photorealistic", 512, 512, 3),
    skin_toned_figure(),
    grainy(skin_toned_figure()),
    grainy(render("people on a beach at noon", "photorealistic", 512, 512, 3)),
]


@pytest.mark.parametrize("image", TESTS_IMAGES)
def test_the_lean_post_processing_returns_what_nudenet_returns(image: Image.Image) -> None:
    """The same model output, through NudeNet's own loop and through the array version:
    the same labels, scores and boxes, in the same order."""
    import numpy as np
    from nudenet.nudenet import _postprocess, _read_image

    from imagegate.safety.detector import LeanNudeDetector, detections

    detector = LeanNudeDetector()
    blob, x_ratio, y_ratio, x_pad, y_pad, width, height = _read_image(
        np.asarray(image.convert("RGBA")), detector.size
    )
    output = detector.session.run(None, {detector.input_name: blob})
    size = detector.size
    expected = _postprocess(output, x_pad, y_pad, x_ratio, y_ratio, width, height, size, size)
    assert detections(output[0], (width, height), (x_pad, y_pad), size) == expected


def test_the_lean_detector_decides_as_stock_nudenet_does() -> None:
    """Stock ``nudenet.NudeDetector`` (its own session and loop) and ours flag the same
    images, for the same labels, with the same scores."""
    import nudenet

    stock = OutputModerator(detector=nudenet.NudeDetector())
    ours = OutputModerator()
    verdicts = [(stock.check(image), ours.check(image)) for image in TESTS_IMAGES]
    assert [s.flagged for s, _ in verdicts] == [o.flagged for _, o in verdicts]
    assert sum(o.flagged for _, o in verdicts) == 2  # the figure, plain and grainy
    for expected, verdict in verdicts:
        assert (verdict.categories, verdict.reasons) == (expected.categories, expected.reasons)
        assert verdict.scores["nudenet"] == pytest.approx(expected.scores["nudenet"], abs=1e-3)
