"""PNG encoding with the generation parameters kept in text chunks."""

from __future__ import annotations

import io

from PIL.Image import Image
from PIL.PngImagePlugin import PngInfo


def encode_png(image: Image, parameters: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, value in parameters.items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    return buffer.getvalue()
