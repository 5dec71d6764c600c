"""HMAC-signed, expiring image URLs: the signature is the permission to read the image.

Each URL names the key that signed it (``kid``, a short digest of the key), so a key can
be rotated: the new key signs, and URLs signed by a retired one keep working for as long
as it is listed in ``IMAGEGATE_SECRET_KEY_PREVIOUS``. URLs made before key ids existed
carry none and are checked against the current key.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Sequence
from urllib.parse import urlencode

from imagegate.errors import BadSignature


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"imagegate-url-key:" + key).hexdigest()[:8]


class UrlSigner:
    def __init__(self, key: bytes, ttl_s: int, previous: Sequence[bytes] = ()) -> None:
        self._kid = key_id(key)
        self._keys = {key_id(k): k for k in (*previous, key)}
        self._ttl_s = ttl_s

    def _signature(self, key: bytes, image_id: str, expires: int) -> str:
        message = f"image:{image_id}:{expires}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def query(self, image_id: str, now: float | None = None) -> str:
        # Rounded up to the hour, so the same image keeps the same URL (and browser cache)
        # for an hour at a time, while still expiring at least ``ttl_s`` from now.
        moment = (now if now is not None else time.time()) + self._ttl_s
        expires = math.ceil(moment / 3600) * 3600
        signature = self._signature(self._keys[self._kid], image_id, expires)
        return urlencode({"expires": expires, "kid": self._kid, "sig": signature})

    def verify(self, image_id: str, expires: int, signature: str, kid: str | None = None) -> None:
        key = self._keys.get(kid or self._kid)
        expected = self._signature(key, image_id, expires) if key is not None else ""
        if not key or not hmac.compare_digest(expected.encode(), signature.encode()):
            raise BadSignature("The image URL's signature is not valid.")
        if expires < time.time():
            raise BadSignature("The image URL has expired.")
