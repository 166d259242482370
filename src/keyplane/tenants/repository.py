from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.models import ResourceLimit, Tenant


async def find_by_name(session: AsyncSession, name: str) -> Tenant | None:
    return await session.scalar(select(Tenant).where(Tenant.name_key == name.strip().lower()))


async def get_limit_override(session: AsyncSession, tenant_uid: str, kind: str) -> int | None:
    limit = await session.get(ResourceLimit, (tenant_uid, kind))
    return None if limit is None else limit.limit


async def set_limit(session: AsyncSession, tenant_uid: str, kind: str, value: int) -> None:
    existing = await session.get(ResourceLimit, (tenant_uid, kind))
    if existing is None:
        session.add(ResourceLimit(tenant_uid=tenant_uid, kind=kind, limit=value))
    else:
        existing.limit = value
    await session.flush()


async def count_tenants(session: AsyncSession) -> int:
    return len((await session.scalars(select(Tenant.uid).limit(1))).all())
