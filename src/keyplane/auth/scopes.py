"""What an API key may be narrowed to on Keyplane's own API: the scope catalogue.

A key without scopes may do everything its owner may do. A key with scopes may do only
the operations whose scope it carries, and only as long as its owner may still do them:
its rights are its owner's role's rights (checked by the services, as for any request)
intersected with its scopes (checked here, before any lookup, for every operation). So a
key follows its owner's role as it changes, and is refused with ``ApiKeyScopeMissing``
(403, naming the scope) for anything outside its scopes.

| scope               | operations                                                         |
|---------------------|--------------------------------------------------------------------|
| ``apiKeys:read``    | list and read API keys                                             |
| ``apiKeys:write``   | create, edit, revoke, re-activate, rotate and delete API keys      |
| ``users:read``      | list and read users; one's own notifications and their settings    |
| ``users:write``     | create, edit, deactivate and delete users; one's notification      |
|                     | settings                                                           |
| ``limits:read``     | read the tenant's resource limits and API key policy               |
| ``limits:write``    | change the tenant's resource limits and API key policy             |
| ``permissions:read``| read the tenant's permission names and roles                       |
| ``permissions:write``| define, change and delete permission names and roles              |
| ``audit:read``      | read the audit log                                                 |
| ``webhooks:read``   | list and read webhook endpoints and their deliveries               |
| ``webhooks:write``  | register, change, delete webhook endpoints, rotate their secrets,  |
|                     | resend deliveries                                                  |
| ``verify``          | verify keys (``POST /v1/apiKeys/verify``) and follow the            |
|                     | invalidation feed                                                  |

``GET /v1/users/info`` (who am I) needs no scope: every key may say whose it is. Session
endpoints (log in, refresh, log out), ``/metrics``, the health checks and the leak reports
(``POST /v1/apiKeys/leaks`` and its GitHub door, which take no credential at all) are not
operations a key is used for.

A key can never be given a scope its owner's role lacks (``ROLE_SCOPES``), and a key
that creates or edits keys cannot give them scopes it does not carry itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from keyplane.roles import Role

API_KEYS_READ = "apiKeys:read"
API_KEYS_WRITE = "apiKeys:write"
USERS_READ = "users:read"
USERS_WRITE = "users:write"
LIMITS_READ = "limits:read"
LIMITS_WRITE = "limits:write"
PERMISSIONS_READ = "permissions:read"
PERMISSIONS_WRITE = "permissions:write"
AUDIT_READ = "audit:read"
WEBHOOKS_READ = "webhooks:read"
WEBHOOKS_WRITE = "webhooks:write"
VERIFY = "verify"

SCOPES: dict[str, str] = {
    API_KEYS_READ: "List and read API keys.",
    API_KEYS_WRITE: "Create, edit, revoke, re-activate, rotate and delete API keys.",
    USERS_READ: "List and read users.",
    USERS_WRITE: "Create, edit, deactivate and delete users.",
    LIMITS_READ: "Read the tenant's resource limits.",
    LIMITS_WRITE: "Change the tenant's resource limits.",
    PERMISSIONS_READ: "Read the tenant's permission names and roles.",
    PERMISSIONS_WRITE: "Define, change and delete permission names and roles.",
    AUDIT_READ: "Read the audit log.",
    WEBHOOKS_READ: "List and read webhook endpoints and their deliveries.",
    WEBHOOKS_WRITE: "Register, change and delete webhook endpoints, rotate their signing "
    "secrets and resend deliveries.",
    VERIFY: "Verify API keys for the tenant's own services, and follow the invalidation feed.",
}

# The catalogue as a type, for request bodies (OpenAPI lists the values; SDKs type them).
Scope = Literal[
    "apiKeys:read",
    "apiKeys:write",
    "users:read",
    "users:write",
    "limits:read",
    "limits:write",
    "permissions:read",
    "permissions:write",
    "audit:read",
    "webhooks:read",
    "webhooks:write",
    "verify",
]
assert set(get_args(Scope)) == set(SCOPES)

# The scopes each role holds: what a key of a user in that role may be given.
ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.TENANT_ADMIN: frozenset(SCOPES),
    Role.USER: frozenset({API_KEYS_READ, API_KEYS_WRITE, USERS_READ}),
    Role.VERIFIER: frozenset({VERIFY}),
}

# Every operation a key may be used for, by OpenAPI operation id, and the scope it needs
# (None: any key). An operation missing here is refused to a scoped key: a new route must
# be given its scope before scoped keys can use it (a test walks the OpenAPI document).
OPERATION_SCOPES: dict[str, str | None] = {
    "v1UsersInfoGet": None,
    "v1ApiKeysList": API_KEYS_READ,
    "v1ApiKeysUidGet": API_KEYS_READ,
    "v1ApiKeysCreate": API_KEYS_WRITE,
    "v1ApiKeysUidUpdate": API_KEYS_WRITE,
    "v1ApiKeysUidDelete": API_KEYS_WRITE,
    "v1ApiKeysUidActiveState": API_KEYS_WRITE,
    "v1ApiKeysUidState": API_KEYS_WRITE,
    "v1ApiKeysUidRotate": API_KEYS_WRITE,
    "v1ApiKeysVerify": VERIFY,
    "v1ApiKeysInvalidations": VERIFY,
    "v1UsersList": USERS_READ,
    "v1UsersUidGet": USERS_READ,
    "v1UsersCreate": USERS_WRITE,
    "v1UsersUidUpdate": USERS_WRITE,
    "v1UsersUidPatch": USERS_WRITE,
    "v1UsersUidDelete": USERS_WRITE,
    # One's own notifications and their settings: reading oneself, and (the digest is a
    # tenant admin's) changing oneself.
    "v1UsersMeNotificationsList": USERS_READ,
    "v1UsersMeNotificationSettingsGet": USERS_READ,
    "v1UsersMeNotificationSettingsUpdate": USERS_WRITE,
    "v1TenantResourceLimitsGet": LIMITS_READ,
    "v1TenantResourceLimitsUpdate": LIMITS_WRITE,
    # The API key policy is a tenant setting, like the limits.
    "v1TenantApiKeyPolicyGet": LIMITS_READ,
    "v1TenantApiKeyPolicyUpdate": LIMITS_WRITE,
    "v1TenantApiKeyPolicyViolations": LIMITS_READ,
    "v1AuditsList": AUDIT_READ,
    "v1PermissionsList": PERMISSIONS_READ,
    "v1PermissionsCreate": PERMISSIONS_WRITE,
    "v1PermissionsUidDelete": PERMISSIONS_WRITE,
    "v1PermissionRolesList": PERMISSIONS_READ,
    "v1PermissionRolesCreate": PERMISSIONS_WRITE,
    "v1PermissionRolesUidUpdate": PERMISSIONS_WRITE,
    "v1PermissionRolesUidDelete": PERMISSIONS_WRITE,
    "v1WebhookEndpointsList": WEBHOOKS_READ,
    "v1WebhookEndpointsUidGet": WEBHOOKS_READ,
    "v1WebhookEndpointsUidDeliveries": WEBHOOKS_READ,
    "v1WebhookEndpointsCreate": WEBHOOKS_WRITE,
    "v1WebhookEndpointsUidUpdate": WEBHOOKS_WRITE,
    "v1WebhookEndpointsUidDelete": WEBHOOKS_WRITE,
    "v1WebhookEndpointsUidRotateSecret": WEBHOOKS_WRITE,
    "v1WebhookDeliveriesUidResend": WEBHOOKS_WRITE,
}


class UnknownScope(ValueError):
    pass


def normalised_scopes(scopes: Iterable[str]) -> list[str]:
    """Sorted, without repeats; ``UnknownScope`` names the first that is not in the
    catalogue."""
    found = sorted(set(scopes))
    for scope in found:
        if scope not in SCOPES:
            raise UnknownScope(scope)
    return found


def missing_scope(operation_id: str | None, scopes: frozenset[str] | None) -> str | None:
    """The scope a key with ``scopes`` lacks for this operation, or None when it may go on.
    ``scopes`` None: an unrestricted key."""
    if scopes is None:
        return None
    if operation_id is None or operation_id not in OPERATION_SCOPES:
        # Not a documented operation a key is meant for: only an unrestricted key goes on.
        return "*"
    needed = OPERATION_SCOPES[operation_id]
    if needed is None or needed in scopes:
        return None
    return needed
