"""ThumbHash (evanw's format) of a small RGBA image, in plain Python but separable.

The ``thumbhash`` package's encoder sums every pixel once per coefficient, in Python:
about 5 ms of CPU for a 32 px image. A cosine transform is separable, so here each row
is transformed once per horizontal frequency (``sum(map(mul, ...))`` in C), and each
coefficient is then one short sum over the rows. The arithmetic is the package's, summed
in another order, so a coefficient can differ in its last bits; the tests hold the hashes
equal to the package's on their images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import mul
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image


def thumb_hash(image: Image) -> bytes:
    """The hash of an RGBA image of at most 100x100 pixels."""
    w, h = image.size
    if w > 100 or h > 100:
        raise ValueError(f"{w}x{h} doesn't fit in 100x100")
    r, g, b, a = _channels(image.tobytes(), w * h)
    has_alpha = sum(a) < w * h
    limit = 5 if has_alpha else 7
    lx = max(1, round(limit * w / max(w, h)))
    ly = max(1, round(limit * h / max(w, h)))
    light = [(r[i] + g[i] + b[i]) / 3 for i in range(w * h)]
    yellow = [(r[i] + g[i]) / 2 - b[i] for i in range(w * h)]
    red = [r[i] - g[i] for i in range(w * h)]
    l_dc, l_ac, l_scale = _encode_channel(light, w, h, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _encode_channel(yellow, w, h, 3, 3)
    q_dc, q_ac, q_scale = _encode_channel(red, w, h, 3, 3)
    a_dc, a_ac, a_scale = _encode_channel(a, w, h, 5, 5) if has_alpha else (1.0, [], 1.0)
    header24 = (
        round(63 * l_dc)
        | (round(31.5 + 31.5 * p_dc) << 6)
        | (round(31.5 + 31.5 * q_dc) << 12)
        | (round(31 * l_scale) << 18)
        | (has_alpha << 23)
    )
    landscape = w > h
    header16 = (
        (ly if landscape else lx)
        | (round(63 * p_scale) << 3)
        | (round(63 * q_scale) << 9)
        | (landscape << 15)
    )
    hashed = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255]
    hashed.append(header16 >> 8)
    if has_alpha:
        hashed.append(round(15 * a_dc) | (round(15 * a_scale) << 4))
    nibbles = [round(15.0 * f) for f in (*l_ac, *p_ac, *q_ac, *a_ac)]
    for index in range(0, len(nibbles), 2):
        high = nibbles[index + 1] << 4 if index + 1 < len(nibbles) else 0
        hashed.append(nibbles[index] | high)
    return bytes(hashed)


def _channels(rgba: bytes, count: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """Red, green and blue over the average colour where transparent, and alpha, in 0-1."""
    alpha = [value / 255 for value in rgba[3::4]]
    total = sum(alpha)
    averages = [0.0, 0.0, 0.0]
    for band in range(3):
        averages[band] = sum(a / 255 * v for a, v in zip(alpha, rgba[band::4], strict=True))
        if total:
            averages[band] /= total
    bands = [
        [avg * (1 - a) + a / 255 * v for a, v in zip(alpha, rgba[band::4], strict=True)]
        for band, avg in enumerate(averages)
    ]
    return bands[0], bands[1], bands[2], alpha


def _encode_channel(
    channel: Sequence[float], w: int, h: int, nx: int, ny: int
) -> tuple[float, list[float], float]:
    """The channel's DC, its AC coefficients (scaled into 0-1) and their scale."""
    rows = [channel[y * w : (y + 1) * w] for y in range(h)]
    fx = [[math.cos(math.pi / w * cx * (x + 0.5)) for x in range(w)] for cx in range(nx)]
    fy = [[math.cos(math.pi / h * cy * (y + 0.5)) for y in range(h)] for cy in range(ny)]
    across = [[sum(map(mul, row, fx[cx])) for row in rows] for cx in range(nx)]
    dc, ac = 0.0, []
    for cy in range(ny):
        cx = 0
        while cx * ny < nx * (ny - cy):
            f = sum(map(mul, across[cx], fy[cy])) / (w * h)
            if cx or cy:
                ac.append(f)
            else:
                dc = f
            cx += 1
    scale = max(map(abs, ac), default=0.0)
    if scale:
        ac = [0.5 + 0.5 / scale * f for f in ac]
    return dc, ac, scale
