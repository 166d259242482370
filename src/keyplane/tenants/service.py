"""Tenants (created from the command line) and their per-user API key limit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.auth import policy
from keyplane.auth.principal import AuthMethod, Principal
from keyplane.kit.errors import Conflict, Forbidden, NotFound, ValidationFailed
from keyplane.models import Role, Tenant
from keyplane.settings import Settings
from keyplane.tenants import repository
from keyplane.tenants.schemas import (
    TenantResourceLimit,
    TenantResourceLimits,
    TenantResourceLimitsEntity,
)

API_KEY_LIMIT_KIND = "apiKey"


def system_principal(tenant: Tenant, client_address: str = "") -> Principal:
    """The actor for changes made from the command line on the server itself."""
    return Principal(
        tenant_uid=tenant.uid,
        tenant_name=tenant.name,
        user_uid="",
        email="",
        first_name="keyplane",
        last_name="cli",
        role=Role.TENANT_ADMIN,
        method=AuthMethod.SYSTEM,
        credential_uid="",
        client_address=client_address,
    )


async def create_tenant(session: AsyncSession, name: str) -> Tenant:
    if await repository.find_by_name(session, name) is not None:
        raise Conflict(f"A tenant named {name!r} already exists.", code="TenantAlreadyExists")
    tenant = Tenant(name=name.strip(), name_key=name.strip().lower())
    session.add(tenant)
    await session.flush()
    audit.record(
        session,
        system_principal(tenant),
        Action.TENANT_CREATE,
        ResourceKind.TENANT,
        tenant.uid,
        tenant.name,
    )
    return tenant


async def any_tenant_exists(session: AsyncSession) -> bool:
    return await repository.count_tenants(session) > 0


async def api_key_limit(session: AsyncSession, settings: Settings, tenant_uid: str) -> int:
    override = await repository.get_limit_override(session, tenant_uid, API_KEY_LIMIT_KIND)
    return settings.api_key_default_per_user_limit if override is None else override


def _require_own_tenant_admin(principal: Principal, tenant_uid: str) -> None:
    policy.require_account_access(principal)
    # Another tenant's uid reads as unknown, so that no one learns which tenants exist.
    if tenant_uid != principal.tenant_uid:
        raise NotFound("No such tenant.", code="TenantNotFound")
    if not principal.is_tenant_admin:
        raise Forbidden("Only tenant admins can manage resource limits.")


async def get_resource_limits(
    session: AsyncSession, settings: Settings, principal: Principal, tenant_uid: str
) -> TenantResourceLimits:
    _require_own_tenant_admin(principal, tenant_uid)
    limit = await api_key_limit(session, settings, tenant_uid)
    return TenantResourceLimits(
        resources=[
            TenantResourceLimit(
                kind=API_KEY_LIMIT_KIND,
                label="API Keys per user",
                limit=limit,
                max_limit=settings.api_key_max_per_user_limit,
            )
        ]
    )


async def update_resource_limits(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    tenant_uid: str,
    body: TenantResourceLimitsEntity,
) -> None:
    _require_own_tenant_admin(principal, tenant_uid)
    for resource in body.resources:
        if resource.limit > settings.api_key_max_per_user_limit:
            raise ValidationFailed(
                f"The apiKey limit may be at most {settings.api_key_max_per_user_limit}.",
                code="ResourceLimitTooHigh",
                details={"maxLimit": settings.api_key_max_per_user_limit},
            )
        await repository.set_limit(session, tenant_uid, resource.kind, resource.limit)
        audit.record(
            session,
            principal,
            Action.RESOURCE_LIMIT_UPDATE,
            ResourceKind.RESOURCE_LIMIT,
            tenant_uid,
            f"{resource.kind}={resource.limit}",
        )
