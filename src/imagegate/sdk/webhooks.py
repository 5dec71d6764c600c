"""Checking ImageGate's webhooks in your receiver, per Standard Webhooks.

The message is signed as ``base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))``, sent as
``webhook-signature: v1,<signature>`` (several, space separated, while a secret is being
rotated), with ``webhook-id`` and ``webhook-timestamp``. A message verifies when one of
its ``v1`` signatures matches one of your secrets, compared in constant time, and its
timestamp is within ``tolerance_s`` of now (either way), which stops replays::

    payload = webhooks.verify(request.body, request.headers, "whsec_…")
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from imagegate.sdk.errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
DEFAULT_TOLERANCE_S = 300.0


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> Any:
    """The message's JSON payload, once it verifies; else :class:`WebhookVerificationError`.
    ``secret`` may be several (old and new, while you rotate); ``now`` is for tests."""
    body = payload.encode() if isinstance(payload, str) else payload
    message_id, timestamp, signatures = _signed_headers(headers)
    _check_timestamp(timestamp, time.time() if now is None else now, tolerance_s)
    signed = f"{message_id}.{timestamp}.".encode() + body
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [_signature(_key(s), signed) for s in secrets]
    # Every pair is compared, each in constant time: how long this takes says nothing of
    # which signature, if any, came close.
    matches = [hmac.compare_digest(want, got) for want in expected for got in signatures]
    if not any(matches):
        raise WebhookVerificationError("No signature matches.", code="invalid_signature")
    return json.loads(body)


def _signed_headers(headers: Mapping[str, str]) -> tuple[str, str, list[bytes]]:
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = lowered["webhook-timestamp"]
        signature_header = lowered["webhook-signature"]
    except KeyError as missing:
        raise WebhookVerificationError(
            f"The {missing.args[0]} header is missing.", code="missing_header"
        ) from None
    return message_id, timestamp, _v1_signatures(signature_header)


def _v1_signatures(header: str) -> list[bytes]:
    """The ``v1`` signatures, decoded; other versions are ignored, as the spec says."""
    found = []
    for part in header.split():
        version, _, encoded = part.partition(",")
        if version != "v1":
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            continue
    return found


def _check_timestamp(timestamp: str, now: float, tolerance_s: float) -> None:
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookVerificationError(
            "The webhook-timestamp is not a number.", code="invalid_timestamp"
        ) from None
    if abs(now - sent) > tolerance_s:
        raise WebhookVerificationError(
            f"The message was sent {now - sent:+.0f} s from now, outside ±{tolerance_s:g} s.",
            code="timestamp_out_of_tolerance",
        )


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise WebhookVerificationError(
            "The secret is not a whsec_ secret (base64 after the prefix).", code="invalid_secret"
        ) from None


def _signature(key: bytes, signed: bytes) -> bytes:
    if not key:
        raise WebhookVerificationError("The secret is empty.", code="invalid_secret")
    return hmac.new(key, signed, hashlib.sha256).digest()
