"""Finished webhook events and notifications are deleted after their retention period;
anything still waiting (a pending delivery, a notification not yet mailed) is kept."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from keyplane.kit.db import transaction
from keyplane.kit.time import utcnow
from keyplane.models import (
    DeliveryStatus,
    Notification,
    NotificationStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from keyplane.retention import prune_history
from keyplane.runtime import Runtime
from tests.helpers import World


async def test_old_finished_history_goes_and_unfinished_work_stays(
    runtime: Runtime, world: World
) -> None:
    now = utcnow()
    old = now - timedelta(days=runtime.settings.webhook_retention_days + 1)
    older = now - timedelta(days=runtime.settings.notification_retention_days + 1)
    tenant = world.admin.tenant_uid
    async with transaction(runtime.sessionmaker) as session:
        endpoint = WebhookEndpoint(
            tenant_uid=tenant, url="https://hooks.example/k", events=[], secret_encrypted="x"
        )
        session.add(endpoint)
        await session.flush()
        events = {}
        for name, written, status in (
            ("old-done", old, DeliveryStatus.SUCCEEDED),
            ("old-failed", old, DeliveryStatus.FAILED),
            ("old-pending", old, DeliveryStatus.PENDING),
            ("new-done", now, DeliveryStatus.SUCCEEDED),
        ):
            event = WebhookEvent(tenant_uid=tenant, type=name, payload={}, created_at=written)
            session.add(event)
            await session.flush()
            session.add(
                WebhookDelivery(
                    tenant_uid=tenant,
                    endpoint_uid=endpoint.uid,
                    event_uid=event.uid,
                    status=status,
                    created_at=written,
                )
            )
            events[name] = event.uid
        for name, written, state in (
            ("old-sent", older, NotificationStatus.SENT),
            ("old-listed", older, NotificationStatus.NOT_MAILED),
            ("old-pending", older, NotificationStatus.PENDING),
            ("new-sent", now, NotificationStatus.SENT),
        ):
            session.add(
                Notification(
                    tenant_uid=tenant,
                    user_uid=world.alice.uid,
                    email=world.alice.email,
                    kind="test",
                    subject=name,
                    body="",
                    dedupe_key=f"retention:{name}",
                    status=state,
                    created_at=written,
                )
            )

    await prune_history(runtime)
    await prune_history(runtime)  # nothing more to do: a no-op

    async with transaction(runtime.sessionmaker, writes=False) as session:
        kept_events = set(await session.scalars(select(WebhookEvent.type)))
        kept_deliveries = set(await session.scalars(select(WebhookDelivery.event_uid)))
        kept_notifications = set(await session.scalars(select(Notification.subject)))
    assert kept_events == {"old-pending", "new-done"}
    assert kept_deliveries == {events["old-pending"], events["new-done"]}
    assert kept_notifications == {"old-pending", "new-sent"}
