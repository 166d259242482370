from __future__ import annotations

from keyplane.kit.db import transaction
from keyplane.models import Tenant
from keyplane.runtime import Runtime
from keyplane.tenants import service as tenants


async def make_tenant(runtime: Runtime, name: str) -> Tenant:
    async with transaction(runtime.sessionmaker) as session:
        return await tenants.create_tenant(session, name)
