"""Keyplane's Python SDK, shaped like httpx: ``Client`` and ``AsyncClient``.

from keyplane.client import Client

with Client("http://127.0.0.1:8000", api_key="kp_...") as keyplane:
    created = keyplane.create_api_key("ci", description="CI pipeline")
    print(created.value)            # the only time the value is available
    for key in keyplane.list_api_keys(active=True):
        print(key.name, key.expires_at)
"""

from keyplane.client._async import AsyncClient
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
    AuditEvent,
    CreatedApiKey,
    KeyVerification,
    ResourceLimit,
    User,
    UserInfo,
)

__all__ = [
    "ApiKey",
    "AsyncClient",
    "AuditEvent",
    "AuthenticationError",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "CreatedApiKey",
    "KeyVerification",
    "KeyplaneError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ResourceLimit",
    "ServerError",
    "User",
    "UserInfo",
    "ValidationError",
]
