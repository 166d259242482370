from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from keyplane.auth.dependencies import CurrentPrincipal
from keyplane.kit.db import DbSession
from keyplane.policies import service
from keyplane.policies.schemas import ApiKeyPolicyRead, ApiKeyPolicyUpdate, PolicyViolations
from keyplane.runtime import RuntimeDep

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])

TenantUid = Annotated[str, Path(alias="tenantUid", max_length=64)]


@router.get(
    "/{tenantUid}/apiKeyPolicy",
    response_model=ApiKeyPolicyRead,
    operation_id="v1TenantApiKeyPolicyGet",
)
async def get_api_key_policy(
    tenant_uid: TenantUid, principal: CurrentPrincipal, session: DbSession, runtime: RuntimeDep
) -> ApiKeyPolicyRead:
    """The tenant's API key policy, and what is in force with the server's limits
    (any member of the tenant)."""
    return await service.get_policy(session, runtime.settings, principal, tenant_uid)


@router.put(
    "/{tenantUid}/apiKeyPolicy",
    response_model=ApiKeyPolicyRead,
    operation_id="v1TenantApiKeyPolicyUpdate",
)
async def update_api_key_policy(
    tenant_uid: TenantUid,
    body: ApiKeyPolicyUpdate,
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
) -> ApiKeyPolicyRead:
    """Replace the policy (tenant admins only): fields left out take their defaults. It
    applies to keys created or edited from now on; existing keys that break it are listed
    by ``GET .../apiKeyPolicy/violations``."""
    return await service.update_policy(session, runtime.settings, principal, tenant_uid, body)


@router.get(
    "/{tenantUid}/apiKeyPolicy/violations",
    response_model=PolicyViolations,
    operation_id="v1TenantApiKeyPolicyViolations",
)
async def list_api_key_policy_violations(
    tenant_uid: TenantUid, principal: CurrentPrincipal, session: DbSession, runtime: RuntimeDep
) -> PolicyViolations:
    """Live keys that break the policy and the rules each breaks (tenant admins only; at
    most 1000)."""
    return await service.list_violations(session, runtime.settings, principal, tenant_uid)
