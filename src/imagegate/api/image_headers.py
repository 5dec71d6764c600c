"""Headers for image bytes: never sniffed as something else, never run as a document, and
saved under a safe file name."""

from __future__ import annotations

import re

from imagegate.storage.keys import EXTENSIONS

SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


def image_headers(name: str, cache_control: str, media_type: str = "image/png") -> dict[str, str]:
    extension = EXTENSIONS.get(media_type, "png")
    return {
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": f'inline; filename="{SAFE_NAME.sub("_", name)[:100]}.{extension}"',
    }
