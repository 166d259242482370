from __future__ import annotations

from typing import Any

import httpx

from tests.users.helpers import Actor


def policy_path(actor: Actor) -> str:
    return f"/v1/tenants/{actor.tenant_uid}/apiKeyPolicy"


async def set_policy(client: httpx.AsyncClient, admin: Actor, **fields: Any) -> dict[str, Any]:
    response = await client.put(policy_path(admin), json=fields, headers=admin.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
