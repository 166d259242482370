"""Keyplane's Python SDK, shaped like httpx: ``Client`` and ``AsyncClient``.

from keyplane.client import Client

with Client("http://127.0.0.1:8000", api_key="kp_...") as keyplane:
    created = keyplane.create_api_key("ci", description="CI pipeline")
    print(created.value)            # the only time the value is available
    for key in keyplane.list_api_keys(active=True):
        print(key.name, key.expires_at)

Restricted keys: ``create_api_key(..., permissions=["invoices.read"], rate_limits=
[RateLimit(limit=100, window_seconds=1)], credits=Credits(remaining=1000))``; on
``update_api_key`` a restriction left out is kept and None removes it.
"""

from keyplane.client._async import AsyncClient
from keyplane.client._core import UNCHANGED
from keyplane.client._sync import Client
from keyplane.client.errors import (
    AuthenticationError,
    Conflict,
    ConnectionFailed,
    KeyplaneError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ValidationError,
)
from keyplane.client.models import (
    ApiKey,
    ApiKeyPolicy,
    AuditEvent,
    CreatedApiKey,
    Credits,
    CreditsRefill,
    KeyVerification,
    Permission,
    PermissionRole,
    RateLimit,
    ResourceLimit,
    RotatedApiKey,
    User,
    UserInfo,
    VerifiedRateLimit,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = [
    "UNCHANGED",
    "ApiKey",
    "ApiKeyPolicy",
    "AsyncClient",
    "AuditEvent",
    "AuthenticationError",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "CreatedApiKey",
    "Credits",
    "CreditsRefill",
    "KeyVerification",
    "KeyplaneError",
    "NotFound",
    "Permission",
    "PermissionDenied",
    "PermissionRole",
    "RateLimit",
    "RateLimited",
    "ResourceLimit",
    "RotatedApiKey",
    "ServerError",
    "User",
    "UserInfo",
    "ValidationError",
    "VerifiedRateLimit",
    "WebhookDelivery",
    "WebhookEndpoint",
]
