"""Why a key is refused, in one vocabulary for every door.

Keyplane's own API answers 401 with ``api_code``; ``POST /v1/apiKeys/verify`` answers
``valid: false`` with ``verify_code``; the SDK's ``KeyplaneAuth`` (and so the example
service) answers its callers with ``api_code`` and the same message. A tenant's service
therefore tells its callers exactly what Keyplane would have told them.

Pure data: imported by the server and by the client SDK alike.
"""

from __future__ import annotations

from typing import NamedTuple


class KeyRefusal(NamedTuple):
    verify_code: str
    api_code: str
    message: str
    # What Keyplane's API answers: 401 when the key is no good at all, 403 when it is good
    # but not for this (a restriction of the key), 429 when it is over a rate limit.
    status: int = 401


MALFORMED = KeyRefusal(
    "MALFORMED",
    "ApiKeyMalformed",
    "The API key is malformed: check that it was copied whole.",
)
NOT_FOUND = KeyRefusal("NOT_FOUND", "ApiKeyInvalid", "The API key is not valid.")
REVOKED = KeyRefusal(
    "REVOKED",
    "ApiKeyRevoked",
    "This API key has been revoked; re-activate it or use another key.",
)
EXPIRED = KeyRefusal("EXPIRED", "ApiKeyExpired", "This API key has expired.")
# Replaced by a rotation whose grace period has ended (api_keys.rotation).
ROTATED = KeyRefusal(
    "ROTATED",
    "ApiKeyRotated",
    "This API key was rotated and its grace period has ended; use the new key that replaced it.",
)
USER_INACTIVE = KeyRefusal(
    "USER_INACTIVE",
    "ApiKeyUserInactive",
    "The user this API key belongs to is deactivated.",
)

# A good key used outside what it carries (api_keys.restrictions).
FORBIDDEN_ADDRESS = KeyRefusal(
    "FORBIDDEN_ADDRESS",
    "ApiKeyAddressDenied",
    "This API key may not be used from this address.",
    403,
)
INSUFFICIENT_PERMISSIONS = KeyRefusal(
    "INSUFFICIENT_PERMISSIONS",
    "ApiKeyPermissionMissing",
    "This API key lacks a permission this request needs.",
    403,
)
RATE_LIMITED = KeyRefusal(
    "RATE_LIMITED",
    "ApiKeyRateLimited",
    "This API key is over its rate limit; wait before trying again.",
    429,
)
USAGE_EXCEEDED = KeyRefusal(
    "USAGE_EXCEEDED",
    "ApiKeyUsageExceeded",
    "This API key has no remaining uses.",
    403,
)

BY_VERIFY_CODE = {
    refusal.verify_code: refusal
    for refusal in (
        MALFORMED,
        NOT_FOUND,
        REVOKED,
        EXPIRED,
        ROTATED,
        USER_INACTIVE,
        FORBIDDEN_ADDRESS,
        INSUFFICIENT_PERMISSIONS,
        RATE_LIMITED,
        USAGE_EXCEEDED,
    )
}


def expired_message(expired_at: str | None) -> str:
    """``This API key expired at 2026-12-01T10:00:00Z.`` when the time is known."""
    return f"This API key expired at {expired_at}." if expired_at else EXPIRED.message
