"""The credential a client sends as ``Authorization: Bearer …``.

A secret API key (server side), a browser token, or a ``token_provider``: a callable that
returns a fresh browser token (your backend minting one). A provider's token is kept until
shortly before the ``exp`` its JWT states, and asked for again after a 401.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable

REFRESH_MARGIN_S = 30.0  # ask for a new token this long before the current one expires

TokenProvider = Callable[[], str]
AsyncTokenProvider = Callable[[], str | Awaitable[str]]


class Credentials:
    def __init__(self, secret: str | None, provider: object | None) -> None:
        self.secret = secret
        self.provider = provider
        self._expires_at: float | None = None

    @classmethod
    def of(cls, api_key: str | None, token: str | None, provider: object | None) -> Credentials:
        given = [value for value in (api_key, token, provider) if value is not None]
        if len(given) > 1:
            raise ValueError("Give one of api_key, token or token_provider, not several.")
        return cls(api_key or token, provider)

    def current(self) -> str | None:
        """The token to send, or None when the provider must be asked (or there is none)."""
        if self.provider is not None and self._stale():
            return None
        return self.secret

    def needs_token(self) -> bool:
        return self.provider is not None and self.current() is None

    def store(self, token: str) -> str:
        self.secret = token
        self._expires_at = jwt_expiry(token)
        return token

    def forget(self) -> bool:
        """After a 401: drop a provider's token. True when asking again may help."""
        if self.provider is None:
            return False
        self.secret = None
        return True

    def _stale(self) -> bool:
        if self.secret is None:
            return True
        return self._expires_at is not None and time.time() > self._expires_at - REFRESH_MARGIN_S

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"} if self.secret else {}


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without checking its signature (the server does)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None
