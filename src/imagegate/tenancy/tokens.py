"""Browser tokens: short-lived, signed (JWT, HS256) and bound to one end user.

An app's backend mints one with its secret key; a page then creates and follows that
user's jobs with it, and nothing else. The token names the key it was minted with, so
revoking the key ends its tokens too.

PyJWT is imported on first use: it brings in ``cryptography`` (10 MB resident), which a
service that never mints or reads a token should not carry.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

ISSUER = "imagegate"
ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    id: str
    tenant: str
    key_id: str
    user: str
    expires_at: datetime
    max_jobs: int | None = None
    templates: tuple[str, ...] | None = None


class TokenSigner:
    def __init__(self, signing_key: bytes) -> None:
        # A key of its own, so a token can never pass for a signed URL or a webhook.
        self._key = hmac.new(signing_key, b"imagegate-client-tokens", hashlib.sha256).digest()

    def mint(
        self,
        tenant: str,
        key_id: str,
        user: str,
        ttl_s: int,
        max_jobs: int | None = None,
        templates: tuple[str, ...] | None = None,
    ) -> tuple[str, TokenClaims]:
        now = datetime.now(UTC).replace(microsecond=0)
        claims = TokenClaims(
            id=f"tok_{uuid.uuid4().hex[:24]}",
            tenant=tenant,
            key_id=key_id,
            user=user,
            expires_at=now + timedelta(seconds=ttl_s),
            max_jobs=max_jobs,
            templates=templates,
        )
        payload = {
            "iss": ISSUER,
            "jti": claims.id,
            "ten": tenant,
            "kid": key_id,
            "sub": user,
            "iat": now,
            "exp": claims.expires_at,
            "mj": max_jobs,
            "tpl": list(templates) if templates is not None else None,
        }
        import jwt

        return jwt.encode(payload, self._key, algorithm=ALGORITHM), claims

    def verify(self, token: str) -> TokenClaims | None:
        """The claims of a valid, unexpired token; None for anything else."""
        import jwt

        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "iss"]},
            )
        except jwt.PyJWTError:
            return None
        templates = payload.get("tpl")
        return TokenClaims(
            id=str(payload["jti"]),
            tenant=str(payload["ten"]),
            key_id=str(payload["kid"]),
            user=str(payload["sub"]),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            max_jobs=payload.get("mj"),
            templates=tuple(templates) if templates is not None else None,
        )
