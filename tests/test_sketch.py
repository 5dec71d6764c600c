"""The built-in sketch renderer: deterministic, and visibly following prompt and style."""

from __future__ import annotations

from PIL import Image, ImageChops, ImageStat

from imagegate.generators import GenerationRequest
from imagegate.generators.sketch import SketchGenerator
from imagegate.storage.encoding import encode_png


def render(prompt: str, style: str | None = None, seed: int = 1, size: int = 256) -> Image.Image:
    request = GenerationRequest("job", prompt, None, style, size, size, 4, 7.5, seed)
    (images,) = SketchGenerator().generate([request], lambda info: None)
    return images[0]


def png(image: Image.Image) -> bytes:
    return encode_png(image, {"prompt": "p"})


def brightness(image: Image.Image) -> float:
    return float(ImageStat.Stat(image.convert("L")).mean[0])


def is_greyscale(image: Image.Image) -> bool:
    red, green, blue = image.split()
    same = ImageChops.difference(red, green).getbbox() is None
    return same and ImageChops.difference(green, blue).getbbox() is None


def test_same_inputs_give_the_same_bytes() -> None:
    assert png(render("a lighthouse at dusk", "noir", 5)) == png(
        render("a lighthouse at dusk", "noir", 5)
    )


def test_seed_prompt_and_style_each_change_the_picture() -> None:
    base = png(render("a lighthouse at dusk", None, 5))
    assert png(render("a lighthouse at dusk", None, 6)) != base
    assert png(render("a lighthouse at night", None, 5)) != base
    assert png(render("a lighthouse at dusk", "watercolor", 5)) != base


def test_night_is_darker_than_day() -> None:
    assert brightness(render("a city at night")) < brightness(render("a city at noon")) - 30


def test_colour_words_tint_the_scene() -> None:
    red = ImageStat.Stat(render("a red house")).mean
    blue = ImageStat.Stat(render("a blue house")).mean
    assert red[0] > blue[0] and blue[2] > red[2]


def test_styles_have_visible_finishes() -> None:
    assert is_greyscale(render("a forest", "pencil_sketch"))
    assert is_greyscale(render("a forest", "noir"))
    assert not is_greyscale(render("a forest"))
    pixels = render("a forest", "pixel_art", size=256)
    assert pixels.getpixel((0, 0)) == pixels.getpixel((7, 7))  # 8x8 blocks


def test_size_and_n_are_honoured() -> None:
    request = GenerationRequest("job", "boats", None, None, 128, 64, 2, 7.5, 9, n=3)
    (images,) = SketchGenerator().generate([request], lambda info: None)
    assert [im.size for im in images] == [(128, 64)] * 3
    assert len({png(im) for im in images}) == 3


def test_progress_is_reported_for_every_step() -> None:
    seen: list[tuple[int, int]] = []
    request = GenerationRequest("job", "x", None, None, 64, 64, 5, 7.5, 1)
    SketchGenerator(delay_ms=50).generate(
        [request], lambda info: seen.append((info.step, info.total))
    )
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
