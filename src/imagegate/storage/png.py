"""A fast PNG writer for the images a job makes: every row Up-filtered and the stream
deflated by ISA-L at level 1.

Pillow's encoder picks a filter for every row by trying all five (libpng's heuristic),
whatever the compression level: on a photographic 512x512 image that choice alone is most
of its 15 ms. Up alone, from Pillow's own ``subtract_modulo``, costs 0.7 ms, and ISA-L's
deflate 2 ms, for 5% more bytes (``bench/formats.py``). The file is plain PNG (ISO/IEC
15948): IHDR, the parameters as uncompressed iTXt chunks (as Pillow's ``add_itxt`` writes
them), one IDAT, IEND. Modes other than L, LA, RGB and RGBA go through Pillow.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {"L": 0, "RGB": 2, "LA": 4, "RGBA": 6}  # 8 bits a sample
NONE, UP = b"\x00", b"\x02"  # filter types
LEVEL = 1


def writable(image: Image) -> bool:
    return image.mode in COLOUR_TYPES


def write_png(image: Image, text: Mapping[str, str]) -> bytes:
    """The image (``writable``) as PNG bytes, with ``text`` as iTXt chunks."""
    from isal import isal_zlib  # where images are made, not in an API-only process

    header = struct.pack(
        ">IIBBBBB", image.width, image.height, 8, COLOUR_TYPES[image.mode], 0, 0, 0
    )
    chunks = [SIGNATURE, _chunk(b"IHDR", header)]
    for key, value in text.items():
        chunks.append(
            _chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode())
        )
    chunks.append(_chunk(b"IDAT", isal_zlib.compress(_up_filtered(image), LEVEL)))
    chunks.append(_chunk(b"IEND", b""))
    return b"".join(chunks)


def _up_filtered(image: Image) -> bytes:
    """Each row minus the one above it, modulo 256, after its filter-type byte; the first
    row as it is (Up over an all-zero row above)."""
    from PIL import ImageChops

    stride = image.width * len(image.getbands())
    raw = image.tobytes()
    below = ImageChops.offset(image, 0, 1)  # row y holds row y-1 (the last wraps to the top)
    diff = memoryview(ImageChops.subtract_modulo(image, below).tobytes())
    rows: list[bytes | memoryview] = [NONE, raw[:stride]]
    for start in range(stride, len(raw), stride):
        rows += (UP, diff[start : start + stride])
    return b"".join(rows)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
    )
