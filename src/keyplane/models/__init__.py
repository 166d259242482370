"""SQLAlchemy models, one module per table."""

from keyplane.models.api_key import ApiKey, ApiKeyState
from keyplane.models.audit_event import AuditEvent
from keyplane.models.auth_session import AuthSession
from keyplane.models.base import Base
from keyplane.models.cache_instance import CacheInstance
from keyplane.models.cache_invalidation import CacheInvalidation
from keyplane.models.key_leak import KeyLeak, LeakReporter
from keyplane.models.login_lockout import LoginLockout
from keyplane.models.notification import Notification, NotificationStatus
from keyplane.models.permission import Permission, PermissionRole
from keyplane.models.resource_limit import ResourceLimit
from keyplane.models.tenant import Tenant
from keyplane.models.tenant_policy import KeyCreation, LeakAction, TenantPolicy
from keyplane.models.user import Role, User
from keyplane.models.webhook import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

__all__ = [
    "ApiKey",
    "ApiKeyState",
    "AuditEvent",
    "AuthSession",
    "Base",
    "CacheInstance",
    "CacheInvalidation",
    "DeliveryStatus",
    "KeyCreation",
    "KeyLeak",
    "LeakAction",
    "LeakReporter",
    "LoginLockout",
    "Notification",
    "NotificationStatus",
    "Permission",
    "PermissionRole",
    "ResourceLimit",
    "Role",
    "Tenant",
    "TenantPolicy",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
