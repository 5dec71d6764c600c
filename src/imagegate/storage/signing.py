"""HMAC-signed, expiring image URLs: the signature is the permission to read the image."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from urllib.parse import urlencode

from imagegate.errors import BadSignature


class UrlSigner:
    def __init__(self, key: bytes, ttl_s: int) -> None:
        self._key = key
        self._ttl_s = ttl_s

    def _signature(self, image_id: str, expires: int) -> str:
        message = f"image:{image_id}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def query(self, image_id: str, now: float | None = None) -> str:
        # Rounded up to the hour, so the same image keeps the same URL (and browser cache)
        # for an hour at a time, while still expiring at least ``ttl_s`` from now.
        moment = (now if now is not None else time.time()) + self._ttl_s
        expires = math.ceil(moment / 3600) * 3600
        return urlencode({"expires": expires, "sig": self._signature(image_id, expires)})

    def verify(self, image_id: str, expires: int, signature: str) -> None:
        expected = self._signature(image_id, expires)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise BadSignature("The image URL's signature is not valid.")
        if expires < time.time():
            raise BadSignature("The image URL has expired.")
