"""storage/png.py, the fast PNG writer: what it writes decodes, pixel for pixel, with the
parameters intact, for every mode it takes and at odd sizes; what it doesn't take goes
through Pillow; and its bytes stay near Pillow's."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFilter

from imagegate.storage.encoding import encode
from imagegate.storage.png import writable, write_png

TEXT = {"prompt": "un phare au crépuscule — 夕暮れの灯台", "seed": "7", "job_id": "0" * 36}


def photo(size: tuple[int, int], mode: str) -> Image.Image:
    """Noise blurred over a gradient: detail everywhere, as in a generated image."""
    grain = Image.effect_noise(size, 50).filter(ImageFilter.GaussianBlur(1.2))
    base = Image.linear_gradient("L").resize(size)
    picture = Image.merge("RGB", [grain, base, Image.blend(grain, base, 0.5)])
    if mode in ("RGBA", "LA"):
        picture = picture.convert(mode[:-1])
        picture.putalpha(base.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
        return picture
    return picture.convert(mode)


def decoded(data: bytes) -> Image.Image:
    Image.open(io.BytesIO(data)).verify()  # every chunk's CRC, and the stream's end
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
@pytest.mark.parametrize("size", [(512, 512), (1, 1), (3, 5), (640, 360)])
def test_every_pixel_and_the_parameters_come_back(mode: str, size: tuple[int, int]) -> None:
    picture = photo(size, mode)
    back = decoded(write_png(picture, TEXT))
    assert (back.format, back.mode, back.size) == ("PNG", mode, size)
    assert back.tobytes() == picture.tobytes()
    assert back.text == TEXT


def test_other_modes_are_encoded_by_pillow() -> None:
    palette = photo((64, 48), "RGB").quantize(16)
    assert not writable(palette)
    encoded = encode(palette, "png", None, TEXT)
    back = decoded(encoded.data)
    assert back.mode == "P" and back.convert("RGB").tobytes() == palette.convert("RGB").tobytes()
    assert back.text == TEXT


def test_its_bytes_are_within_a_tenth_of_pillows_on_photographic_output() -> None:
    picture = photo((512, 512), "RGB")
    ours = len(write_png(picture, {}))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1, compress_type=3)
    assert ours < 1.1 * len(buffer.getvalue())
    assert ours < 0.75 * len(picture.tobytes())  # and it does compress
