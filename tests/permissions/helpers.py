from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from tests.users.helpers import Actor


def permission_body(name: str, description: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if description is not None:
        metadata["annotations"] = {"description": description}
    return {"metadata": metadata}


def role_body(
    name: str, permissions: Sequence[str] = (), description: str | None = None
) -> dict[str, Any]:
    body = permission_body(name, description)
    body["spec"] = {"permissions": list(permissions)}
    return body


async def make_permission(
    client: httpx.AsyncClient, admin: Actor, name: str, description: str | None = None
) -> str:
    """Defines a permission through the REST API; its uid."""
    response = await client.post(
        "/v1/permissions", json=permission_body(name, description), headers=admin.headers
    )
    assert response.status_code == 201, response.text
    uid: str = response.json()["metadata"]["uid"]
    return uid


async def make_role(
    client: httpx.AsyncClient,
    admin: Actor,
    name: str,
    permissions: Sequence[str] = (),
    description: str | None = None,
) -> str:
    """Defines a permission role through the REST API; its uid."""
    response = await client.post(
        "/v1/permissionRoles",
        json=role_body(name, permissions, description),
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    uid: str = response.json()["metadata"]["uid"]
    return uid
