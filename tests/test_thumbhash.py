"""The placeholder's ThumbHash encoder against the ``thumbhash`` package's own."""

from __future__ import annotations

import random

import pytest
import thumbhash
from PIL import Image, ImageFilter

from imagegate.generators.sketch_scene import render
from imagegate.storage.thumbhash import thumb_hash

PROMPTS = ["a lighthouse at dusk", "a forest cabin at night", "red city skyline", "flowers"]


def grainy(image: Image.Image, seed: int) -> Image.Image:
    pixels = random.Random(seed).randbytes(image.width * image.height)
    grain = Image.frombytes("L", image.size, pixels).filter(ImageFilter.GaussianBlur(1.2))
    return Image.blend(image, Image.merge("RGB", [grain] * 3), 0.35)


def small(image: Image.Image, side: int = 32) -> Image.Image:
    copy = image.convert("RGBA")
    copy.thumbnail((side, side))
    return copy


def reference(image: Image.Image) -> bytes:
    return bytes(thumbhash.rgba_to_thumb_hash(image.width, image.height, list(image.tobytes())))


SKETCHES = [render(prompt, None, 512, 384, seed) for seed, prompt in enumerate(PROMPTS)]


@pytest.mark.parametrize("image", SKETCHES + [s.resize((64, 100)) for s in SKETCHES])
def test_the_hash_is_the_packages_on_drawn_images(image: Image.Image) -> None:
    assert thumb_hash(small(image)) == reference(small(image))


@pytest.mark.parametrize("seed", range(8))
def test_on_noisy_images_only_a_near_tie_can_round_the_other_way(seed: int) -> None:
    """A coefficient at 0.5 exactly (noise averages out) sits on a rounding tie: summed in
    another order it may round to 7 instead of 8. Nothing else differs."""
    image = small(grainy(SKETCHES[seed % len(SKETCHES)], seed))
    ours, theirs = thumb_hash(image), reference(image)
    assert ours[:5] == theirs[:5] and len(ours) == len(theirs)
    for mine, package in zip(ours[5:], theirs[5:], strict=True):
        assert abs((mine & 15) - (package & 15)) <= 1
        assert abs((mine >> 4) - (package >> 4)) <= 1


def test_a_transparent_image_keeps_its_alpha() -> None:
    """The package's encoder raises on one (a misplaced tuple); its decoder reads ours."""
    image = small(SKETCHES[0])
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    hashed = thumb_hash(image)
    assert hashed[2] & 0x80  # the header's has-alpha bit
    assert thumbhash.thumb_hash_to_average_rgba(list(hashed))[3] < 1


def test_too_large_an_image_is_refused() -> None:
    with pytest.raises(ValueError, match="100x100"):
        thumb_hash(Image.new("RGBA", (101, 10)))
