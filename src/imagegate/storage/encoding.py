"""Image bytes as served: PNG (the default), WebP or JPEG, each with the generation's
parameters inside it (PNG text chunks; XMP for WebP and JPEG), and a ThumbHash placeholder.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from imagegate.storage.png import writable, write_png
from imagegate.storage.thumbhash import thumb_hash

if TYPE_CHECKING:  # Pillow loads where images are made, not in an API-only process
    from PIL.Image import Image

FORMATS = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
DEFAULT_QUALITY = 100  # OpenAI's default output_compression: the least lossy encoding
# For the modes storage/png.py doesn't write: zlib level 1 with the run-length strategy, on
# photographic 512x512 output a fifth of level 6's CPU for 4% more bytes (bench/formats.py).
PNG_LEVEL = 1
PNG_STRATEGY = 3  # zlib's Z_RLE
XMP_NS = "https://imagegate.dev/ns/1.0/"
# ThumbHash keeps at most 7x7 frequencies, which 16 px still samples: its placeholders decode
# within 9/255 of 32 px's (100 px's are within 7/255), for a third of the CPU (0.4 ms).
PLACEHOLDER_SIDE = 16
DATA_URL_SIDE = 12  # a few hundred bytes; shown blurred, the pixels don't show


@dataclass(frozen=True, slots=True)
class Encoded:
    data: bytes
    content_type: str
    sha256: str


def encode(
    image: Image, output_format: str, compression: int | None, parameters: Mapping[str, str]
) -> Encoded:
    """``compression`` is OpenAI's ``output_compression``: WebP's and JPEG's quality, 0-100."""
    buffer = io.BytesIO()
    quality = DEFAULT_QUALITY if compression is None else compression
    if output_format == "png" and writable(image):
        buffer.write(write_png(image, parameters))
    elif output_format == "png":  # a mode the fast writer doesn't take (P, I;16, ...)
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in parameters.items():
            info.add_itxt(key, value)
        image.save(
            buffer,
            format="PNG",
            pnginfo=info,
            compress_level=PNG_LEVEL,
            compress_type=PNG_STRATEGY,
        )
    elif output_format == "webp":
        image.save(buffer, format="WEBP", quality=quality, method=4, xmp=xmp_packet(parameters))
    elif output_format == "jpeg":
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        rgb.save(buffer, format="JPEG", quality=quality, xmp=xmp_packet(parameters))
    else:
        raise ValueError(f"unknown output format {output_format!r}")
    data = buffer.getvalue()
    return Encoded(data, FORMATS[output_format], hashlib.sha256(data).hexdigest())


def encode_png(image: Image, parameters: Mapping[str, str]) -> bytes:
    return encode(image, "png", None, parameters).data


def xmp_packet(parameters: Mapping[str, str]) -> bytes:
    """An XMP packet holding the parameters as properties of ImageGate's own namespace,
    and the prompt as ``dc:description`` too, where photo tools look for a caption."""
    fields = "".join(
        f"\n   ig:{name}={quoteattr(value)}" for name, value in parameters.items() if value
    )
    caption = escape(parameters.get("prompt", ""))
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        f'   xmlns:ig="{XMP_NS}"\n'
        '   xmlns:dc="http://purl.org/dc/elements/1.1/"'
        f"{fields}>\n"
        "   <dc:description><rdf:Alt>"
        f'<rdf:li xml:lang="x-default">{caption}</rdf:li>'
        "</rdf:Alt></dc:description>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return packet.encode()


def placeholder(image: Image) -> dict[str, str]:
    """A ThumbHash (evanw's format) of the image, for clients that decode one, and a tiny
    PNG of it as a data URL, for a plain ``<img>`` to show blurred until the image loads.
    Both come from one reduction of the image to ``PLACEHOLDER_SIDE`` pixels (no full-size
    copy is made)."""
    source = image if image.mode in ("RGB", "RGBA") else image.convert("RGBA")
    small = source.resize(_fitted(source.size, PLACEHOLDER_SIDE), reducing_gap=2.0)
    hashed = thumb_hash(small if small.mode == "RGBA" else small.convert("RGBA"))
    tiny = small.convert("RGB").resize(_fitted(small.size, DATA_URL_SIDE))
    buffer = io.BytesIO()
    tiny.save(buffer, format="PNG", optimize=True)
    return {
        "thumbhash": base64.b64encode(hashed).decode(),
        "data_url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
    }


def _fitted(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled to fit a ``side``-pixel square, its aspect kept (never enlarged)."""
    width, height = size
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))
