"""Queries on a tenant's permissions and permission roles.

Every query on a caller's behalf starts from ``visible_permissions`` or ``visible_roles``,
the one place each table is scoped to the caller's tenant; keys are reached through
``api_keys.repository.visible_only``, the one place key reads are scoped. The exception is
``role_permissions``, for the credential path (see there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from keyplane.api_keys.repository import visible_only
from keyplane.auth.principal import Principal
from keyplane.models import ApiKey, Permission, PermissionRole, Tenant


def visible_permissions(principal: Principal) -> Select[Permission]:
    """The one place permission reads are scoped: the caller's tenant."""
    return select(Permission).where(Permission.tenant_uid == principal.tenant_uid)


def visible_roles(principal: Principal) -> Select[PermissionRole]:
    """The one place permission role reads are scoped: the caller's tenant."""
    return select(PermissionRole).where(PermissionRole.tenant_uid == principal.tenant_uid)


async def lock_tenant(session: AsyncSession, principal: Principal) -> None:
    """Serialises changes to the caller's tenant's permissions and roles (PostgreSQL; on
    SQLite a writing transaction holds the database's write lock already), so that the
    per-tenant bounds hold and a role never names a permission deleted meanwhile.
    FOR NO KEY UPDATE: rows that merely reference the tenant are still inserted."""
    statement = (
        select(Tenant.uid).where(Tenant.uid == principal.tenant_uid).with_for_update(key_share=True)
    )
    await session.execute(statement)


def _mentions(column: Any, name: str) -> ColumnElement[bool]:
    """Whether a JSON list column's text holds ``name`` as an element: a narrowing done by
    the database, so that only the rows that hold it are read and locked. Exact on its own
    (a name is stored as ``"name"``, and names need no JSON escaping), and callers still
    compare the decoded lists."""
    needle = json.dumps(name)
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(column, String).like(f"%{escaped}%", escape="\\")


# --- permissions --------------------------------------------------------------------


async def list_permissions(session: AsyncSession, principal: Principal) -> Sequence[Permission]:
    return (await session.scalars(visible_permissions(principal))).all()


async def count_permissions(session: AsyncSession, principal: Principal) -> int:
    statement = visible_permissions(principal).with_only_columns(func.count(Permission.uid))
    return int(await session.scalar(statement) or 0)


async def get_permission(
    session: AsyncSession, principal: Principal, uid: str, *, for_update: bool = False
) -> Permission | None:
    statement = visible_permissions(principal).where(Permission.uid == uid)
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(statement)


async def permission_name_taken(session: AsyncSession, principal: Principal, name: str) -> bool:
    statement = (
        visible_permissions(principal)
        .with_only_columns(Permission.uid)
        .where(Permission.name == name)
    )
    return (await session.scalar(statement.limit(1))) is not None


async def existing_permission_names(
    session: AsyncSession, principal: Principal, names: Sequence[str], *, lock: bool = False
) -> set[str]:
    """Which of ``names`` the tenant defines. ``lock``: held FOR SHARE until the end of the
    transaction, so that none of them is deleted (or renamed) before it commits."""
    if not names:
        return set()
    statement = (
        visible_permissions(principal)
        .with_only_columns(Permission.name)
        .where(Permission.name.in_(sorted(set(names))))
    )
    if lock:
        statement = statement.with_for_update(read=True)
    return set((await session.scalars(statement)).all())


# --- roles --------------------------------------------------------------------------


async def list_roles(session: AsyncSession, principal: Principal) -> Sequence[PermissionRole]:
    return (await session.scalars(visible_roles(principal))).all()


async def count_roles(session: AsyncSession, principal: Principal) -> int:
    statement = visible_roles(principal).with_only_columns(func.count(PermissionRole.uid))
    return int(await session.scalar(statement) or 0)


async def get_role(
    session: AsyncSession, principal: Principal, uid: str, *, for_update: bool = False
) -> PermissionRole | None:
    statement = visible_roles(principal).where(PermissionRole.uid == uid)
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(statement)


async def role_name_taken(
    session: AsyncSession, principal: Principal, name: str, except_uid: str = ""
) -> bool:
    statement = (
        visible_roles(principal)
        .with_only_columns(PermissionRole.uid)
        .where(PermissionRole.name == name, PermissionRole.uid != except_uid)
    )
    return (await session.scalar(statement.limit(1))) is not None


async def existing_role_names(
    session: AsyncSession, principal: Principal, names: Sequence[str], *, lock: bool = False
) -> set[str]:
    """As ``existing_permission_names``, for roles."""
    if not names:
        return set()
    statement = (
        visible_roles(principal)
        .with_only_columns(PermissionRole.name)
        .where(PermissionRole.name.in_(sorted(set(names))))
    )
    if lock:
        statement = statement.with_for_update(read=True)
    return set((await session.scalars(statement)).all())


async def roles_holding(
    session: AsyncSession, principal: Principal, permission: str
) -> Sequence[PermissionRole]:
    """The roles whose permissions include ``permission``, locked, in uid order."""
    statement = (
        visible_roles(principal)
        .where(_mentions(PermissionRole.permissions, permission))
        .order_by(PermissionRole.uid)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    roles = (await session.scalars(statement)).all()
    return [role for role in roles if permission in role.permissions]


# --- keys ---------------------------------------------------------------------------


async def _keys_holding(
    session: AsyncSession, principal: Principal, column: Any, name: str
) -> Sequence[ApiKey]:
    statement = (
        visible_only(select(ApiKey), principal)
        .where(_mentions(column, name))
        .order_by(ApiKey.uid)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).all()


async def keys_with_permission(
    session: AsyncSession, principal: Principal, permission: str
) -> Sequence[ApiKey]:
    """The keys given ``permission`` directly, locked, in uid order."""
    keys = await _keys_holding(session, principal, ApiKey.permissions, permission)
    return [key for key in keys if permission in key.permissions]


async def keys_with_role(
    session: AsyncSession, principal: Principal, role: str
) -> Sequence[ApiKey]:
    """The keys given the permission role ``role``, locked, in uid order."""
    keys = await _keys_holding(session, principal, ApiKey.permission_roles, role)
    return [key for key in keys if role in key.permission_roles]


# --- the credential path ------------------------------------------------------------


async def role_permissions(
    connection: AsyncConnection | AsyncSession, tenant_uid: str, role_names: Sequence[str]
) -> set[str]:
    """The permissions the named roles of a tenant give, together. A credential lookup: it
    runs while a key is being authenticated, before any principal exists, so it takes the
    key's tenant itself (as ``auth/repository.py`` does) rather than scoping by a caller.
    One statement, so it may run without a transaction around it
    (``kit.db.single_read``)."""
    if not role_names:
        return set()
    statement = select(PermissionRole.permissions).where(
        PermissionRole.tenant_uid == tenant_uid,
        PermissionRole.name.in_(sorted(set(role_names))),
    )
    granted: set[str] = set()
    for permissions in (await connection.execute(statement)).scalars():
        granted.update(permissions or ())
    return granted
