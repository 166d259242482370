"""What can be recorded, and how each action maps onto Palette's ``actionType``."""

from __future__ import annotations

from enum import StrEnum


class ResourceKind(StrEnum):
    API_KEY = "apiKey"
    USER = "user"
    TENANT = "tenant"
    RESOURCE_LIMIT = "resourceLimit"
    PERMISSION = "permission"
    PERMISSION_ROLE = "permissionRole"
    TENANT_POLICY = "tenantPolicy"
    WEBHOOK_ENDPOINT = "webhookEndpoint"


class Action(StrEnum):
    API_KEY_CREATE = "apiKey.create"
    API_KEY_UPDATE = "apiKey.update"
    API_KEY_REVOKE = "apiKey.revoke"
    API_KEY_REACTIVATE = "apiKey.reactivate"
    API_KEY_DELETE = "apiKey.delete"
    API_KEY_ROTATE = "apiKey.rotate"
    # A report that the key's value was seen in public (by Keyplane, on the report).
    API_KEY_LEAK_REPORTED = "apiKey.leakReported"
    USER_CREATE = "user.create"
    USER_UPDATE = "user.update"
    USER_DEACTIVATE = "user.deactivate"
    USER_REACTIVATE = "user.reactivate"
    USER_DELETE = "user.delete"
    TENANT_CREATE = "tenant.create"
    RESOURCE_LIMIT_UPDATE = "resourceLimit.update"
    PERMISSION_CREATE = "permission.create"
    PERMISSION_DELETE = "permission.delete"
    PERMISSION_ROLE_CREATE = "permissionRole.create"
    PERMISSION_ROLE_UPDATE = "permissionRole.update"
    PERMISSION_ROLE_DELETE = "permissionRole.delete"
    TENANT_POLICY_UPDATE = "tenantPolicy.update"
    WEBHOOK_ENDPOINT_CREATE = "webhookEndpoint.create"
    WEBHOOK_ENDPOINT_UPDATE = "webhookEndpoint.update"
    WEBHOOK_ENDPOINT_DELETE = "webhookEndpoint.delete"
    WEBHOOK_ENDPOINT_ROTATE_SECRET = "webhookEndpoint.rotateSecret"  # noqa: S105 (an action)
    # Disabled by Keyplane after failing for too long.
    WEBHOOK_ENDPOINT_DISABLE = "webhookEndpoint.disable"
    LOGIN = "auth.login"
    LOGOUT = "auth.logout"
    # Failed authentications from one address over its limit (at most one per interval).
    AUTH_RATE_LIMITED = "auth.rateLimited"
    LOGIN_LOCKOUT = "auth.lockout"

    @property
    def action_type(self) -> str:
        """Palette's coarse ``actionType``: create, update, delete or activity."""
        verb = self.value.split(".", 1)[1]
        if verb == "create":
            return "create"
        if verb == "delete":
            return "delete"
        if self.value.startswith("auth."):
            return "activity"
        return "update"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
