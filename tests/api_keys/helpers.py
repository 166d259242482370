from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from keyplane.kit.db import transaction
from keyplane.kit.invalidation import Invalidation, publish
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKey
from keyplane.runtime import Runtime
from tests.users.helpers import Actor


@dataclass(frozen=True)
class CreatedKey:
    uid: str
    value: str

    @property
    def headers(self) -> dict[str, str]:
        return {"ApiKey": self.value}


def key_body(
    name: str,
    *,
    description: str | None = None,
    expiry: datetime | None = None,
    user_uid: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if description is not None:
        metadata["annotations"] = {"description": description}
    spec: dict[str, Any] = {}
    if expiry is not None:
        spec["expiry"] = rfc3339(expiry)
    if user_uid is not None:
        spec["userUid"] = user_uid
    return {"metadata": metadata, "spec": spec}


async def make_api_key(
    client: httpx.AsyncClient,
    actor: Actor,
    name: str = "ci",
    **options: Any,
) -> CreatedKey:
    response = await client.post(
        "/v1/apiKeys", json=key_body(name, **options), headers=actor.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return CreatedKey(uid=body["uid"], value=body["apiKey"])


async def key_state(client: httpx.AsyncClient, actor: Actor, uid: str) -> bool | None:
    """The Active column as the owner's or admin's list shows it; None when not listed."""
    response = await client.get("/v1/apiKeys", headers=actor.headers)
    assert response.status_code == 200, response.text
    for item in response.json()["items"]:
        if item["metadata"]["uid"] == uid:
            return bool(item["status"]["isActive"])
    return None


async def backdate_expiry(runtime: Runtime, uid: str, **values: Any) -> None:
    """Moves a key's expiry into the past, as time passing would. Written straight to the
    database (the API refuses past expiries), so it tells the key caches like any change."""
    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.uid == uid)
            .values(expires_at=utcnow() - timedelta(seconds=1), **values)
        )
        await publish(session, Invalidation.key(uid))
