"""How long the history of background work is kept: delivered (or failed) webhook events
and sent (or listed) notifications go after their retention period, so that the outbox
tables do not grow for ever. Deleted in small batches, each in its own transaction; every
instance may run it at once (deleting what another already deleted is a no-op)."""

from __future__ import annotations

from datetime import timedelta

from keyplane.kit.db import transaction
from keyplane.kit.time import utcnow
from keyplane.notifications import repository as notifications
from keyplane.runtime import Runtime
from keyplane.webhooks import repository as webhooks

BATCH = 500
# Batches per run at most: a large backlog goes over several runs, never in one long one.
MAX_BATCHES = 20


async def prune_history(runtime: Runtime) -> None:
    settings = runtime.settings
    now = utcnow()
    webhook_cutoff = now - timedelta(days=settings.webhook_retention_days)
    notification_cutoff = now - timedelta(days=settings.notification_retention_days)
    for _ in range(MAX_BATCHES):
        async with transaction(runtime.sessionmaker) as session:
            if await webhooks.delete_finished_events(session, webhook_cutoff, BATCH) < BATCH:
                break
    for _ in range(MAX_BATCHES):
        async with transaction(runtime.sessionmaker) as session:
            deleted = await notifications.delete_old_notifications(
                session, notification_cutoff, BATCH
            )
            if deleted < BATCH:
                break
