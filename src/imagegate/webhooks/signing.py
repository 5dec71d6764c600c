"""Standard Webhooks signatures: ``v1,`` + base64(HMAC-SHA256(key, "id.timestamp.body")).

Secrets look like ``whsec_<base64 key>``. Several secrets give several signatures, space
separated, so a receiver can roll its secret without missing a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "whsec_"


def derive_secret(signing_key: bytes) -> str:
    """A stable webhook secret derived from the service's secret key, for when none is set."""
    key = hmac.new(signing_key, b"imagegate-webhooks", hashlib.sha256).digest()
    return PREFIX + base64.b64encode(key).decode()


def key_bytes(secret: str) -> bytes:
    """The key inside a ``whsec_`` secret (empty if it is not valid base64)."""
    try:
        return base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except ValueError:
        return b""


def sign(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key_bytes(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def headers(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, message_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": "ImageGate-Webhooks/1",
    }
