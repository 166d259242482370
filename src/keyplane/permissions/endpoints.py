"""A tenant's permission names and permission roles (tenant admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from keyplane.auth.dependencies import CurrentPrincipal
from keyplane.kit.db import DbSession
from keyplane.kit.pagination import PageRequest, list_meta, page_request, resolve_limit
from keyplane.permissions import service
from keyplane.permissions.schemas import (
    PermissionCreate,
    PermissionList,
    PermissionRead,
    PermissionRoleCreate,
    PermissionRoleList,
    PermissionRoleRead,
    PermissionRoleUpdate,
    permission_read,
    permission_role_read,
)
from keyplane.runtime import RuntimeDep

router = APIRouter(tags=["permissions"])

Uid = Annotated[str, Path(max_length=64)]
Page = Annotated[PageRequest, Depends(page_request)]


@router.get("/v1/permissions", response_model=PermissionList, operation_id="v1PermissionsList")
async def list_permissions(
    principal: CurrentPrincipal, session: DbSession, runtime: RuntimeDep, page: Page
) -> PermissionList:
    """The tenant's permission names, by name."""
    settings = runtime.settings
    limit = resolve_limit(page, settings.page_default_limit, settings.page_max_limit)
    permissions, total = await service.list_permissions(session, principal, page.offset, limit)
    items = [permission_read(permission) for permission in permissions]
    if limit is None:
        return PermissionList(items=items)
    return PermissionList(items=items, listmeta=list_meta(page, limit, len(items), total))


@router.post(
    "/v1/permissions",
    status_code=201,
    response_model=PermissionRead,
    operation_id="v1PermissionsCreate",
)
async def create_permission(
    body: PermissionCreate, principal: CurrentPrincipal, session: DbSession
) -> PermissionRead:
    """Define a permission name (at most 1,000 per tenant)."""
    permission = await service.create_permission(
        session,
        principal,
        name=body.metadata.name,
        description=body.metadata.annotations.description,
    )
    return permission_read(permission)


@router.delete("/v1/permissions/{uid}", status_code=204, operation_id="v1PermissionsUidDelete")
async def delete_permission(uid: Uid, principal: CurrentPrincipal, session: DbSession) -> Response:
    """Delete a permission; every role and API key of the tenant loses it."""
    await service.delete_permission(session, principal, uid)
    return Response(status_code=204)


@router.get(
    "/v1/permissionRoles", response_model=PermissionRoleList, operation_id="v1PermissionRolesList"
)
async def list_roles(
    principal: CurrentPrincipal, session: DbSession, runtime: RuntimeDep, page: Page
) -> PermissionRoleList:
    """The tenant's permission roles, by name."""
    settings = runtime.settings
    limit = resolve_limit(page, settings.page_default_limit, settings.page_max_limit)
    roles, total = await service.list_roles(session, principal, page.offset, limit)
    items = [permission_role_read(role) for role in roles]
    if limit is None:
        return PermissionRoleList(items=items)
    return PermissionRoleList(items=items, listmeta=list_meta(page, limit, len(items), total))


@router.post(
    "/v1/permissionRoles",
    status_code=201,
    response_model=PermissionRoleRead,
    operation_id="v1PermissionRolesCreate",
)
async def create_role(
    body: PermissionRoleCreate, principal: CurrentPrincipal, session: DbSession
) -> PermissionRoleRead:
    """Define a role bundling permissions of the tenant (at most 100; 200 roles per
    tenant)."""
    role = await service.create_role(
        session,
        principal,
        name=body.metadata.name,
        description=body.metadata.annotations.description,
        permissions=body.spec.permissions,
    )
    return permission_role_read(role)


@router.put("/v1/permissionRoles/{uid}", status_code=204, operation_id="v1PermissionRolesUidUpdate")
async def update_role(
    uid: Uid, body: PermissionRoleUpdate, principal: CurrentPrincipal, session: DbSession
) -> Response:
    """Replace a role's name, description and permissions. Keys holding the role keep it
    under its new name, with its new permissions at once."""
    await service.update_role(
        session,
        principal,
        uid,
        name=body.metadata.name,
        description=body.metadata.annotations.description,
        permissions=body.spec.permissions,
    )
    return Response(status_code=204)


@router.delete(
    "/v1/permissionRoles/{uid}", status_code=204, operation_id="v1PermissionRolesUidDelete"
)
async def delete_role(uid: Uid, principal: CurrentPrincipal, session: DbSession) -> Response:
    """Delete a role; every API key of the tenant loses it."""
    await service.delete_role(session, principal, uid)
    return Response(status_code=204)
