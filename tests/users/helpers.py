from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from keyplane.kit.db import transaction
from keyplane.models import Tenant
from keyplane.runtime import Runtime
from keyplane.tenants.service import system_principal
from keyplane.users import service as users
from keyplane.users.schemas import UserSpecEntity

DEFAULT_PASSWORD = "correct horse battery staple"


@dataclass
class Actor:
    """A user of a tenant, logged in: ``headers`` carry their session token."""

    uid: str
    email: str
    tenant_uid: str
    tenant_name: str
    password: str = DEFAULT_PASSWORD
    headers: dict[str, str] = field(default_factory=dict)


async def make_user(
    runtime: Runtime,
    tenant: Tenant,
    email: str,
    *,
    role: str = "user",
    first_name: str = "",
    last_name: str = "",
    password: str = DEFAULT_PASSWORD,
) -> Actor:
    spec = UserSpecEntity.model_validate(
        {
            "emailId": email,
            "firstName": first_name,
            "lastName": last_name,
            "roles": [role],
            "password": password,
        }
    )
    async with transaction(runtime.sessionmaker) as session:
        user = await users.create_user(session, runtime, system_principal(tenant), spec)
    return Actor(
        uid=user.uid,
        email=user.email,
        tenant_uid=tenant.uid,
        tenant_name=tenant.name,
        password=password,
    )


async def login(client: httpx.AsyncClient, actor: Actor) -> dict[str, str]:
    response = await client.post(
        "/v1/auth/authenticate",
        json={"emailId": actor.email, "org": actor.tenant_name, "password": actor.password},
    )
    assert response.status_code == 200, response.text
    actor.headers = {"Authorization": response.json()["Authorization"]}
    return actor.headers
