from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from keyplane.auth.dependencies import CurrentPrincipal
from keyplane.kit.db import DbSession
from keyplane.kit.pagination import PageRequest, list_meta, page_request, resolve_limit
from keyplane.kit.schemas import Uid
from keyplane.runtime import RuntimeDep
from keyplane.users import service
from keyplane.users.schemas import (
    UserChanges,
    UserCreate,
    UserInfo,
    UserList,
    UserPatchOperation,
    UserRead,
    UserUpdate,
    user_read,
)

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/info", response_model=UserInfo, operation_id="v1UsersInfoGet")
async def get_user_info(principal: CurrentPrincipal) -> UserInfo:
    """Who the credential on this request belongs to."""
    return UserInfo(
        org_name=principal.tenant_name,
        tenant_uid=principal.tenant_uid,
        user_uid=principal.user_uid,
    )


@router.get("", response_model=UserList, operation_id="v1UsersList")
async def list_users(
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    page: Annotated[PageRequest, Depends(page_request)],
) -> UserList:
    """The tenant's users (tenant admins only)."""
    settings = runtime.settings
    limit = resolve_limit(page, settings.page_default_limit, settings.page_max_limit)
    users, total = await service.list_users(session, principal, page.offset, limit)
    items = [user_read(user) for user in users]
    if limit is None:
        return UserList(items=items)
    return UserList(items=items, listmeta=list_meta(page, limit, len(items), total))


@router.post("", status_code=201, response_model=Uid, operation_id="v1UsersCreate")
async def create_user(
    body: UserCreate, principal: CurrentPrincipal, session: DbSession, runtime: RuntimeDep
) -> Uid:
    """Create a user (tenant admins only); ``spec.password`` sets an initial password."""
    user = await service.create_user(session, runtime, principal, body.spec)
    return Uid(uid=user.uid)


@router.get("/{uid}", response_model=UserRead, operation_id="v1UsersUidGet")
async def get_user(uid: str, principal: CurrentPrincipal, session: DbSession) -> UserRead:
    """A user of the tenant: any for tenant admins, oneself for everyone else."""
    return user_read(await service.get_user(session, principal, uid))


@router.put("/{uid}", status_code=204, operation_id="v1UsersUidUpdate")
async def update_user(
    uid: str,
    body: UserUpdate,
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
) -> Response:
    """Change a user's email, names or role (tenant admins only)."""
    changes = UserChanges.model_validate(body.spec.model_dump(exclude_none=True))
    await service.update_user(session, runtime, principal, uid, changes)
    return Response(status_code=204)


@router.patch("/{uid}", status_code=204, operation_id="v1UsersUidPatch")
async def patch_user(
    uid: str,
    body: list[UserPatchOperation],
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
) -> Response:
    """JSON Patch; ``/status/isActive`` deactivates or re-activates the user, and with them
    every API key they own."""
    changes = service.changes_from_patch(body)
    await service.update_user(session, runtime, principal, uid, changes)
    return Response(status_code=204)


@router.delete("/{uid}", status_code=204, operation_id="v1UsersUidDelete")
async def delete_user(uid: str, principal: CurrentPrincipal, session: DbSession) -> Response:
    """Delete a user and every API key they own (tenant admins only)."""
    await service.delete_user(session, principal, uid)
    return Response(status_code=204)
