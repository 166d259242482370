from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, update

from keyplane.kit.db import transaction
from keyplane.models import WebhookDelivery, WebhookEndpoint
from keyplane.runtime import Runtime
from tests.users.helpers import Actor

KEY_EVENTS = ["apiKey.created", "apiKey.revoked", "apiKey.deleted"]


async def make_endpoint(
    client: httpx.AsyncClient,
    actor: Actor,
    url: str,
    events: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A registered endpoint: its JSON, with ``secret``."""
    body = {"url": url, "events": events or KEY_EVENTS, **fields}
    response = await client.post("/v1/webhooks/endpoints", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def deliveries(runtime: Runtime, endpoint_uid: str | None = None) -> list[WebhookDelivery]:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        statement = select(WebhookDelivery).order_by(WebhookDelivery.created_at)
        if endpoint_uid is not None:
            statement = statement.where(WebhookDelivery.endpoint_uid == endpoint_uid)
        return list((await session.scalars(statement)).all())


async def make_due(runtime: Runtime) -> None:
    """Moves every pending delivery's next attempt to now, as time passing would."""
    from keyplane.kit.time import utcnow

    async with transaction(runtime.sessionmaker) as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "pending")
            .values(next_attempt_at=utcnow())
        )


async def get_endpoint_row(runtime: Runtime, uid: str) -> WebhookEndpoint:
    async with transaction(runtime.sessionmaker, writes=False) as session:
        endpoint = await session.get(WebhookEndpoint, uid)
        assert endpoint is not None
        return endpoint
