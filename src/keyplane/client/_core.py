"""What ``Client`` and ``AsyncClient`` share: every API call described as data (``Call``).
Credentials, the retry policy and the error mapping are in ``_transport``; the two clients
only send."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeAlias, TypeVar

import httpx

from keyplane.client.errors import KeyplaneError
from keyplane.client.models import (
    ApiKey,
    ApiKeyPolicy,
    AuditEvent,
    CreatedApiKey,
    Credits,
    KeyVerification,
    Permission,
    PermissionRole,
    RateLimit,
    ResourceLimit,
    RotatedApiKey,
    User,
    UserInfo,
)

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
PAGE_SIZE = 100


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    idempotent: bool = True
    authenticated: bool = True


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_offset: int | None


def _nothing(_response: httpx.Response) -> None:
    return None


def _json(response: httpx.Response) -> Any:
    return response.json()


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware (for example datetime.now(UTC))")
    return moment.isoformat()


def _page_parser(
    item: Callable[[dict[str, Any]], T],
) -> Callable[[httpx.Response], Page[T]]:
    def parse(response: httpx.Response) -> Page[T]:
        body = response.json()
        meta = body.get("listmeta") or {}
        more = bool(meta.get("continue"))
        return Page(
            items=[item(entry) for entry in body["items"]],
            next_offset=int(meta["offset"]) if more else None,
        )

    return parse


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class Unchanged(enum.Enum):
    """The type of ``UNCHANGED``."""

    UNCHANGED = "UNCHANGED"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged.UNCHANGED
"""The default of ``update_api_key``'s restrictions: keep what the key has. (None removes
the restriction.)"""

Change: TypeAlias = T | Unchanged | None


@dataclass(frozen=True)
class Restrictions:
    """A key's restrictions as a create or update sends them: a field left UNCHANGED is
    not sent (on create: unrestricted; on update: kept); None is sent as null (on update:
    removed)."""

    scopes: Change[Sequence[str]] = UNCHANGED
    permissions: Change[Sequence[str]] = UNCHANGED
    permission_roles: Change[Sequence[str]] = UNCHANGED
    allowed_cidrs: Change[Sequence[str]] = UNCHANGED
    rate_limits: Change[Sequence[RateLimit]] = UNCHANGED
    credits: Change[Credits] = UNCHANGED
    owner_id: Change[str] = UNCHANGED
    meta: Change[Mapping[str, Any]] = UNCHANGED

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        lists = {
            "scopes": self.scopes,
            "permissions": self.permissions,
            "permissionRoles": self.permission_roles,
            "allowedCidrs": self.allowed_cidrs,
        }
        for name, names in lists.items():
            if names is not UNCHANGED:
                body[name] = _names(names)
        if self.rate_limits is not UNCHANGED:
            body["rateLimits"] = (
                None if self.rate_limits is None else [limit.to_api() for limit in self.rate_limits]
            )
        if self.credits is not UNCHANGED:
            body["credits"] = None if self.credits is None else self.credits.to_api()
        if self.owner_id is not UNCHANGED:
            body["ownerId"] = self.owner_id
        if self.meta is not UNCHANGED:
            body["meta"] = None if self.meta is None else dict(self.meta)
        return body


def _names(names: Sequence[str] | None) -> list[str] | None:
    if isinstance(names, str):
        # A lone string would be sent as its characters.
        raise TypeError(f"a list of names is needed, not the string {names!r}")
    return None if names is None else list(names)


# --- The calls -------------------------------------------------------------------------


def login(email: str, org: str | None, password: str) -> Call[str]:
    return Call(
        "POST",
        "/v1/auth/authenticate",
        lambda response: str(response.json()["Authorization"]),
        json=_compact({"emailId": email, "org": org, "password": password}),
        authenticated=False,
    )


def renew(token: str) -> Call[str]:
    return Call(
        "GET",
        f"/v1/auth/refresh/{token}",
        lambda response: str(response.json()["Authorization"]),
        idempotent=False,
        authenticated=False,
    )


def logout() -> Call[None]:
    return Call("POST", "/v1/auth/logout", _nothing, idempotent=False)


def whoami() -> Call[UserInfo]:
    def parse(response: httpx.Response) -> UserInfo:
        body = response.json()
        return UserInfo(
            org_name=body["orgName"], tenant_uid=body["tenantUid"], user_uid=body["userUid"]
        )

    return Call("GET", "/v1/users/info", parse)


def list_api_keys_page(
    user_uid: str | None, active: bool | None, offset: int, limit: int = PAGE_SIZE
) -> Call[Page[ApiKey]]:
    params = _compact(
        {
            "userUid": user_uid,
            "isActive": None if active is None else str(active).lower(),
            "offset": offset,
            "limit": limit,
        }
    )
    return Call("GET", "/v1/apiKeys", _page_parser(ApiKey.from_api), params=params)


def get_api_key(uid: str) -> Call[ApiKey]:
    return Call("GET", f"/v1/apiKeys/{uid}", lambda response: ApiKey.from_api(response.json()))


def create_api_key(
    name: str,
    description: str | None,
    expires_at: datetime | None,
    user_uid: str | None,
    restrictions: Restrictions | None = None,
) -> Call[CreatedApiKey]:
    metadata: dict[str, Any] = {"name": name}
    if description is not None:
        metadata["annotations"] = {"description": description}
    spec = _compact({"expiry": _rfc3339(expires_at) if expires_at else None, "userUid": user_uid})
    # On create a null is the same as leaving the field out: unrestricted.
    spec.update(_compact((restrictions or Restrictions()).to_api()))

    def parse(response: httpx.Response) -> CreatedApiKey:
        body = response.json()
        return CreatedApiKey(uid=body["uid"], value=body["apiKey"])

    return Call(
        "POST", "/v1/apiKeys", parse, json={"metadata": metadata, "spec": spec}, idempotent=False
    )


def update_api_key(
    uid: str,
    name: str | None,
    description: str | None,
    expires_at: datetime | None,
    restrictions: Restrictions | None = None,
) -> Call[None]:
    metadata: dict[str, Any] = _compact({"name": name})
    if description is not None:
        metadata["annotations"] = {"description": description}
    spec = _compact({"expiry": _rfc3339(expires_at) if expires_at else None})
    spec.update((restrictions or Restrictions()).to_api())
    return Call("PUT", f"/v1/apiKeys/{uid}", _nothing, json={"metadata": metadata, "spec": spec})


def rotate_api_key(uid: str, grace_period_seconds: int) -> Call[RotatedApiKey]:
    def parse(response: httpx.Response) -> RotatedApiKey:
        return RotatedApiKey.from_api(response.json())

    return Call(
        "POST",
        f"/v1/apiKeys/{uid}/rotate",
        parse,
        json={"gracePeriodSeconds": grace_period_seconds},
        # Not retried: a second rotation would be refused (the key is rotated) and the
        # first one's value lost.
        idempotent=False,
    )


def set_api_key_active(uid: str, active: bool, *, confirm_leaked: bool = False) -> Call[None]:
    # The confirmation is sent only when given: a Palette server knows no such parameter.
    params = {"confirmLeaked": "true"} if confirm_leaked else None
    return Call("PATCH", f"/v1/apiKeys/{uid}", _nothing, params=params, json={"isActive": active})


def delete_api_key(uid: str) -> Call[None]:
    return Call("DELETE", f"/v1/apiKeys/{uid}", _nothing)


def verify_api_key(
    value: str,
    permissions: str | None = None,
    client_address: str | None = None,
    cost: int | None = None,
) -> Call[KeyVerification]:
    body = _compact(
        {"key": value, "permissions": permissions, "clientAddress": client_address, "cost": cost}
    )
    return Call(
        "POST",
        "/v1/apiKeys/verify",
        lambda response: KeyVerification.from_api(response.json()),
        json=body,
        # A verify spends the key's credits (``cost``, default 1) and counts against its
        # rate limits: sent again after it may have been answered, it could spend twice.
        # Only a check that spends nothing (cost 0) is retried.
        idempotent=cost == 0,
    )


def invalidations(leases: bool = False) -> Call[None]:
    params = {"leases": "true"} if leases else None
    return Call("GET", "/v1/apiKeys/invalidations", _nothing, params=params)


def list_permissions_page(offset: int, limit: int = PAGE_SIZE) -> Call[Page[Permission]]:
    params = {"offset": offset, "limit": limit}
    return Call("GET", "/v1/permissions", _page_parser(Permission.from_api), params=params)


def _named(name: str, description: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if description is not None:
        metadata["annotations"] = {"description": description}
    return metadata


def create_permission(name: str, description: str | None) -> Call[Permission]:
    return Call(
        "POST",
        "/v1/permissions",
        lambda response: Permission.from_api(response.json()),
        json={"metadata": _named(name, description)},
        idempotent=False,
    )


def delete_permission(uid: str) -> Call[None]:
    return Call("DELETE", f"/v1/permissions/{uid}", _nothing)


def list_permission_roles_page(offset: int, limit: int = PAGE_SIZE) -> Call[Page[PermissionRole]]:
    params = {"offset": offset, "limit": limit}
    return Call("GET", "/v1/permissionRoles", _page_parser(PermissionRole.from_api), params=params)


def create_permission_role(
    name: str, description: str | None, permissions: Sequence[str]
) -> Call[PermissionRole]:
    return Call(
        "POST",
        "/v1/permissionRoles",
        lambda response: PermissionRole.from_api(response.json()),
        json={
            "metadata": _named(name, description),
            "spec": {"permissions": _names(permissions)},
        },
        idempotent=False,
    )


def replace_permission_role(
    uid: str, name: str, description: str | None, permissions: Sequence[str]
) -> Call[None]:
    """``PUT`` replaces the role whole: its name, description (None: none) and permissions."""
    return Call(
        "PUT",
        f"/v1/permissionRoles/{uid}",
        _nothing,
        json={
            "metadata": _named(name, description),
            "spec": {"permissions": _names(permissions)},
        },
    )


def delete_permission_role(uid: str) -> Call[None]:
    return Call("DELETE", f"/v1/permissionRoles/{uid}", _nothing)


def list_users_page(offset: int, limit: int = PAGE_SIZE) -> Call[Page[User]]:
    params = {"offset": offset, "limit": limit}
    return Call("GET", "/v1/users", _page_parser(User.from_api), params=params)


def get_user(uid: str) -> Call[User]:
    return Call("GET", f"/v1/users/{uid}", lambda response: User.from_api(response.json()))


def create_user(
    email: str, first_name: str, last_name: str, role: str, password: str | None
) -> Call[str]:
    spec = _compact(
        {
            "emailId": email,
            "firstName": first_name,
            "lastName": last_name,
            "roles": [role],
            "password": password,
        }
    )
    return Call(
        "POST",
        "/v1/users",
        lambda response: str(response.json()["uid"]),
        json={"metadata": {}, "spec": spec},
        idempotent=False,
    )


def update_user(
    uid: str,
    email: str | None,
    first_name: str | None,
    last_name: str | None,
    role: str | None,
) -> Call[None]:
    spec = _compact(
        {
            "emailId": email,
            "firstName": first_name,
            "lastName": last_name,
            "roles": [role] if role else None,
        }
    )
    return Call("PUT", f"/v1/users/{uid}", _nothing, json={"metadata": {}, "spec": spec})


def set_user_active(uid: str, active: bool) -> Call[None]:
    patch = [{"op": "replace", "path": "/status/isActive", "value": active}]
    return Call("PATCH", f"/v1/users/{uid}", _nothing, json=patch)


def delete_user(uid: str) -> Call[None]:
    return Call("DELETE", f"/v1/users/{uid}", _nothing)


def get_api_key_limit(tenant_uid: str) -> Call[ResourceLimit]:
    def parse(response: httpx.Response) -> ResourceLimit:
        for resource in response.json()["resources"]:
            if resource["kind"] == "apiKey":
                return ResourceLimit(
                    kind="apiKey", limit=resource["limit"], max_limit=resource["maxLimit"]
                )
        raise KeyplaneError("The server reported no apiKey limit.")

    return Call("GET", f"/v1/tenants/{tenant_uid}/resourceLimits", parse)


def set_api_key_limit(tenant_uid: str, limit: int) -> Call[None]:
    body = {"resources": [{"kind": "apiKey", "limit": limit}]}
    return Call("PATCH", f"/v1/tenants/{tenant_uid}/resourceLimits", _nothing, json=body)


def get_api_key_policy(tenant_uid: str) -> Call[ApiKeyPolicy]:
    def parse(response: httpx.Response) -> ApiKeyPolicy:
        return ApiKeyPolicy.from_api(response.json())

    return Call("GET", f"/v1/tenants/{tenant_uid}/apiKeyPolicy", parse)


def update_api_key_policy(tenant_uid: str, policy: ApiKeyPolicy) -> Call[ApiKeyPolicy]:
    def parse(response: httpx.Response) -> ApiKeyPolicy:
        return ApiKeyPolicy.from_api(response.json())

    return Call("PUT", f"/v1/tenants/{tenant_uid}/apiKeyPolicy", parse, json=policy.to_api())


def changed_policy(current: ApiKeyPolicy, changes: Mapping[str, Any]) -> ApiKeyPolicy:
    """``current`` with the fields not ``UNCHANGED`` in ``changes`` replaced."""
    given = {name: value for name, value in changes.items() if value is not UNCHANGED}
    return current.model_copy(update=given)


def list_audit_events_page(filters: dict[str, Any], offset: int) -> Call[Page[AuditEvent]]:
    params = _compact({**filters, "offset": offset, "limit": PAGE_SIZE})
    for name in ("startTime", "endTime"):
        if isinstance(params.get(name), datetime):
            params[name] = _rfc3339(params[name])
    return Call("GET", "/v1/audits", _page_parser(AuditEvent.from_api), params=params)
