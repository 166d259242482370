"""Standard Webhooks signing (https://www.standardwebhooks.com): pure, no I/O.

A secret is ``whsec_`` + base64 of 32 random bytes; the signature of a message is
``v1,`` + base64 of HMAC-SHA256(secret bytes, ``{webhook-id}.{webhook-timestamp}.{body}``).
``webhook-signature`` may carry several, space-separated: during a secret rotation's
overlap Keyplane signs with the new secret and the previous one, so a receiver still
configured with either verifies the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from typing import Any

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON, the same on every retry."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.digest(secret_bytes(secret), signed, hashlib.sha256)
    return "v1," + base64.b64encode(digest).decode()


def headers(
    secrets_in_use: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with each of ``secrets_in_use``."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, message_id, timestamp, body) for secret in secrets_in_use
        ),
        "content-type": "application/json",
    }
