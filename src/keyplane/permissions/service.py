"""A tenant's own permission names (``invoices.read``) and the roles that bundle them.

Only tenant admins read or change them; a verifier is refused first, as everywhere.
Keys refer to permissions and roles by name (``ApiKey.permissions``,
``ApiKey.permission_roles``), so in the same transaction as the change:

- deleting a permission removes it from every role and every key of the tenant;
- renaming a role renames it on every key; deleting one removes it from every key.

Each change that can alter what a key is allowed (those, and a change to a role's
permissions) is published to every instance's key cache (``Invalidation(ALL)``: a role
may be held by any number of keys). Every check comes before any change: the console
shows a refusal as a page, and its request still commits.

Changes take the tenant's lock first (``repository.lock_tenant``), so the bounds below
hold and a role never names a permission deleted meanwhile. ``check_permission_names``
and ``check_role_names``, for attaching names to keys, hold the rows they found FOR SHARE
instead: a concurrent delete or rename waits for the key change, and then sees it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.auth import policy
from keyplane.auth.principal import Principal
from keyplane.kit.errors import Conflict, Forbidden, NotFound, ValidationFailed
from keyplane.kit.invalidation import Invalidation, InvalidationKind, publish
from keyplane.kit.permission_query import RESERVED_WORDS, is_permission_name
from keyplane.kit.time import utcnow
from keyplane.models import Permission, PermissionRole
from keyplane.permissions import repository

MAX_PERMISSIONS = 1_000
MAX_ROLES = 200
MAX_ROLE_PERMISSIONS = 100
# Names listed in an error message; ``details`` lists them all.
_NAMED_IN_MESSAGE = 10

NAME_RULE = (
    "1 to 64 characters: letters, digits, '_', '.', ':' and '-', starting with a letter or "
    "a digit, such as invoices.read"
)

Named = TypeVar("Named", Permission, PermissionRole)


def _require_tenant_admin(principal: Principal) -> None:
    policy.require_account_access(principal)
    if not principal.is_tenant_admin:
        raise Forbidden("Only tenant admins can see and manage permissions and permission roles.")


def _check_name(raw: str, what: str, code: str) -> str:
    name = raw.strip()
    if not is_permission_name(name):
        reserved = name.lower() in RESERVED_WORDS
        problem = (
            f"'{name}' is reserved, as an operator of permission queries"
            if reserved
            else f"it must be {NAME_RULE}"
        )
        raise ValidationFailed(
            f"This is not a valid {what} name: {problem}.",
            code=code,
            details={"field": "metadata.name"},
        )
    return name


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMED_IN_MESSAGE])
    more = len(names) - _NAMED_IN_MESSAGE
    return f"{shown} and {more} more" if more > 0 else shown


def _window(items: Iterable[Named], offset: int, limit: int | None) -> tuple[list[Named], int]:
    # Sorted here, by code point: the same order on both databases whatever their collation
    # (a tenant has at most MAX_PERMISSIONS and MAX_ROLES of them).
    ordered = sorted(items, key=lambda item: item.name)
    end = None if limit is None else offset + limit
    return ordered[offset:end], len(ordered)


async def _known(
    session: AsyncSession,
    principal: Principal,
    names: Sequence[str],
    *,
    roles: bool,
    lock: bool,
) -> list[str]:
    wanted = sorted(set(names))
    find = repository.existing_role_names if roles else repository.existing_permission_names
    unknown = sorted(set(wanted) - await find(session, principal, wanted, lock=lock))
    if unknown:
        what = "permission roles" if roles else "permissions"
        raise ValidationFailed(
            f"Not {what} of this tenant: {_listed(unknown)}.",
            code="UnknownPermissionRole" if roles else "UnknownPermission",
            details={
                "field": "spec.permissionRoles" if roles else "spec.permissions",
                "unknown": unknown,
            },
        )
    return wanted


async def check_permission_names(
    session: AsyncSession, principal: Principal, names: Sequence[str]
) -> list[str]:
    """``names`` sorted and without repeats, once each is a permission of the caller's
    tenant (else ``UnknownPermission``, naming the others). For giving a key permissions:
    they stay defined until the caller's transaction ends (module docstring)."""
    return await _known(session, principal, names, roles=False, lock=True)


async def check_role_names(
    session: AsyncSession, principal: Principal, names: Sequence[str]
) -> list[str]:
    """As ``check_permission_names``, for permission roles (``UnknownPermissionRole``)."""
    return await _known(session, principal, names, roles=True, lock=True)


def _change(old: Any, new: Any) -> dict[str, Any]:
    return {"old": old, "new": new}


async def _invalidate_every_key(session: AsyncSession) -> None:
    await publish(session, Invalidation(InvalidationKind.ALL))


# --- permissions --------------------------------------------------------------------


def _permission_not_found() -> NotFound:
    return NotFound("No such permission.", code="PermissionNotFound")


async def list_permissions(
    session: AsyncSession, principal: Principal, offset: int = 0, limit: int | None = None
) -> tuple[list[Permission], int]:
    """The tenant's permissions by name, and how many there are."""
    _require_tenant_admin(principal)
    return _window(await repository.list_permissions(session, principal), offset, limit)


async def get_permission(session: AsyncSession, principal: Principal, uid: str) -> Permission:
    _require_tenant_admin(principal)
    permission = await repository.get_permission(session, principal, uid)
    if permission is None:
        raise _permission_not_found()
    return permission


async def create_permission(
    session: AsyncSession, principal: Principal, *, name: str, description: str | None
) -> Permission:
    _require_tenant_admin(principal)
    name = _check_name(name, "permission", "InvalidPermissionName")
    await repository.lock_tenant(session, principal)
    if await repository.permission_name_taken(session, principal, name):
        raise Conflict(
            f"This tenant already has a permission named {name}.",
            code="PermissionNameTaken",
            details={"field": "metadata.name"},
        )
    if await repository.count_permissions(session, principal) >= MAX_PERMISSIONS:
        raise Conflict(
            f"This tenant already has {MAX_PERMISSIONS} permissions, the most it may have: "
            "delete one first.",
            code="PermissionLimitReached",
            details={"kind": "permission", "limit": MAX_PERMISSIONS},
        )
    permission = Permission(
        tenant_uid=principal.tenant_uid,
        name=name,
        description=description or "",
        created_at=utcnow(),
    )
    session.add(permission)
    await session.flush()
    audit.record(
        session,
        principal,
        Action.PERMISSION_CREATE,
        ResourceKind.PERMISSION,
        permission.uid,
        permission.name,
        changes={"description": _change(None, permission.description)}
        if permission.description
        else None,
    )
    return permission


async def delete_permission(session: AsyncSession, principal: Principal, uid: str) -> None:
    """Deletes the permission, and takes it from every role and key of the tenant."""
    _require_tenant_admin(principal)
    await repository.lock_tenant(session, principal)
    permission = await repository.get_permission(session, principal, uid, for_update=True)
    if permission is None:
        raise _permission_not_found()
    name = permission.name
    # Deleted first: a key change holding the name FOR SHARE (check_permission_names)
    # commits before this goes on, so the keys read below include it.
    await session.delete(permission)
    await session.flush()
    now = utcnow()
    roles = await repository.roles_holding(session, principal, name)
    for role in roles:
        old = list(role.permissions)
        role.permissions = [held for held in old if held != name]
        role.modified_at = now
        audit.record(
            session,
            principal,
            Action.PERMISSION_ROLE_UPDATE,
            ResourceKind.PERMISSION_ROLE,
            role.uid,
            role.name,
            message=f"permission {name} deleted",
            changes={"permissions": _change(old, role.permissions)},
        )
    keys = await repository.keys_with_permission(session, principal, name)
    for key in keys:
        key.permissions = [held for held in key.permissions if held != name]
    await session.flush()
    await _invalidate_every_key(session)
    audit.record(
        session,
        principal,
        Action.PERMISSION_DELETE,
        ResourceKind.PERMISSION,
        uid,
        name,
        message=f"removed from {_count(len(roles), 'role')} and {_count(len(keys), 'API key')}",
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


# --- roles --------------------------------------------------------------------------


def _role_not_found() -> NotFound:
    return NotFound("No such permission role.", code="PermissionRoleNotFound")


def _role_name_taken(name: str) -> Conflict:
    return Conflict(
        f"This tenant already has a permission role named {name}.",
        code="PermissionRoleNameTaken",
        details={"field": "metadata.name"},
    )


async def _role_permissions(
    session: AsyncSession, principal: Principal, names: Sequence[str]
) -> list[str]:
    if len(set(names)) > MAX_ROLE_PERMISSIONS:
        raise ValidationFailed(
            f"A permission role may hold at most {MAX_ROLE_PERMISSIONS} permissions.",
            code="TooManyPermissions",
            details={"field": "spec.permissions", "max": MAX_ROLE_PERMISSIONS},
        )
    # The tenant's lock is held: no permission can be deleted before this commits.
    return await _known(session, principal, names, roles=False, lock=False)


async def list_roles(
    session: AsyncSession, principal: Principal, offset: int = 0, limit: int | None = None
) -> tuple[list[PermissionRole], int]:
    """The tenant's permission roles by name, and how many there are."""
    _require_tenant_admin(principal)
    return _window(await repository.list_roles(session, principal), offset, limit)


async def get_role(session: AsyncSession, principal: Principal, uid: str) -> PermissionRole:
    _require_tenant_admin(principal)
    role = await repository.get_role(session, principal, uid)
    if role is None:
        raise _role_not_found()
    return role


async def create_role(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str,
    description: str | None,
    permissions: Sequence[str],
) -> PermissionRole:
    _require_tenant_admin(principal)
    name = _check_name(name, "permission role", "InvalidPermissionRoleName")
    await repository.lock_tenant(session, principal)
    held = await _role_permissions(session, principal, permissions)
    if await repository.role_name_taken(session, principal, name):
        raise _role_name_taken(name)
    if await repository.count_roles(session, principal) >= MAX_ROLES:
        raise Conflict(
            f"This tenant already has {MAX_ROLES} permission roles, the most it may have: "
            "delete one first.",
            code="PermissionLimitReached",
            details={"kind": "permissionRole", "limit": MAX_ROLES},
        )
    now = utcnow()
    role = PermissionRole(
        tenant_uid=principal.tenant_uid,
        name=name,
        description=description or "",
        permissions=held,
        created_at=now,
        modified_at=now,
    )
    session.add(role)
    await session.flush()
    changes = {"permissions": _change(None, held)}
    if role.description:
        changes["description"] = _change(None, role.description)
    audit.record(
        session,
        principal,
        Action.PERMISSION_ROLE_CREATE,
        ResourceKind.PERMISSION_ROLE,
        role.uid,
        role.name,
        changes=changes,
    )
    return role


async def update_role(
    session: AsyncSession,
    principal: Principal,
    uid: str,
    *,
    name: str,
    description: str | None,
    permissions: Sequence[str],
) -> PermissionRole:
    """Replaces the role's name, description and permissions. A new name is given to every
    key that holds the role."""
    _require_tenant_admin(principal)
    name = _check_name(name, "permission role", "InvalidPermissionRoleName")
    await repository.lock_tenant(session, principal)
    role = await repository.get_role(session, principal, uid, for_update=True)
    if role is None:
        raise _role_not_found()
    held = await _role_permissions(session, principal, permissions)
    if name != role.name and await repository.role_name_taken(
        session, principal, name, except_uid=role.uid
    ):
        raise _role_name_taken(name)

    changes: dict[str, Any] = {}
    old_name = role.name
    if name != role.name:
        changes["name"] = _change(role.name, name)
        role.name = name
    if (description or "") != role.description:
        changes["description"] = _change(role.description, description or "")
        role.description = description or ""
    if held != list(role.permissions):
        changes["permissions"] = _change(list(role.permissions), held)
        role.permissions = held
    if not changes:
        return role
    role.modified_at = utcnow()
    # Renamed first: a key change holding the old name FOR SHARE (check_role_names)
    # commits before this goes on, so the keys read below include it.
    await session.flush()
    renamed = 0
    if "name" in changes:
        for key in await repository.keys_with_role(session, principal, old_name):
            others = [held_role for held_role in key.permission_roles if held_role != old_name]
            key.permission_roles = sorted({*others, name})
            renamed += 1
        await session.flush()
    if "name" in changes or "permissions" in changes:
        await _invalidate_every_key(session)
    audit.record(
        session,
        principal,
        Action.PERMISSION_ROLE_UPDATE,
        ResourceKind.PERMISSION_ROLE,
        role.uid,
        role.name,
        message=f"renamed on {_count(renamed, 'API key')}" if "name" in changes else "",
        changes=changes,
    )
    return role


async def delete_role(session: AsyncSession, principal: Principal, uid: str) -> None:
    """Deletes the role, and takes it from every key of the tenant."""
    _require_tenant_admin(principal)
    await repository.lock_tenant(session, principal)
    role = await repository.get_role(session, principal, uid, for_update=True)
    if role is None:
        raise _role_not_found()
    name, permissions = role.name, list(role.permissions)
    # Deleted first, for the reason delete_permission gives.
    await session.delete(role)
    await session.flush()
    keys = await repository.keys_with_role(session, principal, name)
    for key in keys:
        key.permission_roles = [held for held in key.permission_roles if held != name]
    await session.flush()
    await _invalidate_every_key(session)
    audit.record(
        session,
        principal,
        Action.PERMISSION_ROLE_DELETE,
        ResourceKind.PERMISSION_ROLE,
        uid,
        name,
        message=f"removed from {_count(len(keys), 'API key')}",
        changes={"permissions": _change(permissions, None)},
    )
