"""Events into the outbox, in the transaction of the change that caused them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.kit.time import utcnow
from keyplane.models import WebhookDelivery, WebhookEvent
from keyplane.models.webhook import DeliveryStatus
from keyplane.webhooks import repository

if TYPE_CHECKING:
    from keyplane.events.service import Event


async def enqueue(session: AsyncSession, event: Event) -> None:
    """One ``webhook_events`` row and a pending delivery per enabled endpoint of the
    tenant that wants this type; nothing when no endpoint does."""
    endpoints = [
        endpoint
        for endpoint in await repository.enabled_endpoints(session, event.principal)
        if event.type.value in endpoint.events
    ]
    if not endpoints:
        return
    now = utcnow()
    row = WebhookEvent(
        tenant_uid=event.principal.tenant_uid,
        type=event.type.value,
        payload=event.payload(),
        created_at=now,
    )
    session.add(row)
    # The event first: the deliveries refer to it (PostgreSQL checks at each statement).
    await session.flush()
    session.add_all(
        WebhookDelivery(
            tenant_uid=row.tenant_uid,
            endpoint_uid=endpoint.uid,
            event_uid=row.uid,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for endpoint in endpoints
    )
    await session.flush()
