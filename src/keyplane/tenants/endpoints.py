from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from keyplane.auth.dependencies import CurrentPrincipal
from keyplane.kit.db import DbSession
from keyplane.runtime import RuntimeDep
from keyplane.tenants import service
from keyplane.tenants.schemas import TenantResourceLimits, TenantResourceLimitsEntity

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])

TenantUid = Annotated[str, Path(alias="tenantUid", max_length=64)]


@router.get(
    "/{tenantUid}/resourceLimits",
    response_model=TenantResourceLimits,
    operation_id="v1TenantResourceLimitsGet",
)
async def get_resource_limits(
    tenant_uid: TenantUid,
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
) -> TenantResourceLimits:
    """The tenant's limits; Keyplane enforces ``apiKey`` (API keys per user)."""
    return await service.get_resource_limits(session, runtime.settings, principal, tenant_uid)


@router.patch(
    "/{tenantUid}/resourceLimits", status_code=204, operation_id="v1TenantResourceLimitsUpdate"
)
async def update_resource_limits(
    tenant_uid: TenantUid,
    body: TenantResourceLimitsEntity,
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
) -> Response:
    """Change the per-user API key limit (tenant admins only)."""
    await service.update_resource_limits(session, runtime.settings, principal, tenant_uid, body)
    return Response(status_code=204)
