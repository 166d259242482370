"""Delivery of the outbox: claimed, signed, sent, retried with backoff.

Each run claims up to ``BATCH`` due deliveries with a lease (``repository.claim_due``:
``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and commits, so several instances never take
the same row. The requests go out after that commit, outside any transaction, at most
``CONCURRENCY`` at a time; each result is then written in a short transaction of its
own, only if this run's claim still holds the row. A process killed after the change's
commit loses nothing: the delivery row is there, pending; a process killed during a send
leaves a lease that lapses, and the next run anywhere takes the row again (at least once:
a receiver deduplicates by ``webhook-id``).

Outcome of an attempt: a 2xx answer succeeds. Anything else (another status, a redirect,
a refusal by the network rules of ``kit.outbound``, a timeout) counts one attempt and
schedules the next after ``BACKOFF_SECONDS`` (with jitter), until the next one would
come later than ``webhook_retry_seconds`` after the event: then the delivery has failed.

An endpoint's health: every success clears ``failing_since``; a failure sets it if unset.
An endpoint failing for longer than ``webhook_disable_after_seconds`` is disabled, the
audit log records it (by Keyplane itself), and the person who created it is told once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.kit import outbound
from keyplane.kit.db import transaction
from keyplane.kit.secretbox import SecretBoxError
from keyplane.kit.time import utcnow
from keyplane.models import Tenant, User, WebhookDelivery, WebhookEndpoint, WebhookEvent
from keyplane.models.webhook import DeliveryStatus
from keyplane.notifications import service as notifications
from keyplane.runtime import Runtime
from keyplane.tenants.service import system_principal
from keyplane.webhooks import repository, signing
from keyplane.webhooks.service import open_secrets, secret_box

logger = logging.getLogger("keyplane.webhooks")

BATCH = 64
CONCURRENCY = 8
# After the 1st failed attempt, the 2nd, ...; the last repeats.
BACKOFF_SECONDS = (5, 30, 120, 600, 1800, 3600, 7200, 14400)
JITTER = 0.1
MAX_ERROR = 500


def backoff(attempts: int) -> timedelta:
    """The wait after ``attempts`` failed attempts, give or take ``JITTER``, so that the
    retries of many deliveries that failed together spread out."""
    base = BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1]
    return timedelta(seconds=base * random.uniform(1 - JITTER, 1 + JITTER))  # noqa: S311


def _lease(runtime: Runtime) -> timedelta:
    # Longer than any one attempt can take (the total timeout), with room for the write.
    return timedelta(seconds=runtime.settings.webhook_timeout_seconds * 2 + 5)


async def deliver_due(runtime: Runtime) -> None:
    """Claims due deliveries and sends them, until none is due (or a run's worth)."""
    for _ in range(8):
        if await _deliver_batch(runtime) < BATCH:
            return


async def _deliver_batch(runtime: Runtime) -> int:
    now = utcnow()
    lease_until = now + _lease(runtime)
    async with transaction(runtime.sessionmaker) as session:
        uids = await repository.claim_due(session, now, lease_until, BATCH)
    if not uids:
        return 0
    async with transaction(runtime.sessionmaker, writes=False) as session:
        rows = await repository.claimed(session, uids)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(
        delivery: WebhookDelivery, endpoint: WebhookEndpoint, event: WebhookEvent
    ) -> None:
        async with gate:
            try:
                await _attempt(runtime, delivery, endpoint, event, lease_until)
            except Exception:
                # The row stays claimed until the lease lapses, then is tried again.
                logger.exception("webhook delivery %s could not be recorded", delivery.uid)

    await asyncio.gather(*(one(*row) for row in rows))
    return len(uids)


async def _attempt(
    runtime: Runtime,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    event: WebhookEvent,
    lease_until: datetime,
) -> None:
    settings = runtime.settings
    if not endpoint.enabled:
        result = outbound.OutboundResult(None, 0, "The endpoint is disabled; not sent.")
        await _record(runtime, delivery.uid, endpoint.uid, lease_until, result, final=True)
        return
    try:
        secrets_in_use = open_secrets(secret_box(runtime), endpoint.secret_encrypted).in_use(
            utcnow()
        )
    except (SecretBoxError, ValueError, KeyError):
        result = outbound.OutboundResult(
            None,
            0,
            "The endpoint's signing secret cannot be read (the server secret changed?): "
            "rotate the secret.",
        )
        await _record(runtime, delivery.uid, endpoint.uid, lease_until, result)
        return
    body = signing.body_bytes(event.payload)
    timestamp = int(utcnow().timestamp())
    headers = signing.headers(secrets_in_use, event.uid, timestamp, body)
    headers["user-agent"] = "Keyplane-Webhooks/1"
    result = await outbound.send(
        endpoint.url,
        body,
        headers,
        allow_private=settings.webhook_allow_private_targets,
        timeout_seconds=settings.webhook_timeout_seconds,
        max_response_bytes=settings.webhook_max_response_bytes,
    )
    await _record(runtime, delivery.uid, endpoint.uid, lease_until, result)


async def _record(
    runtime: Runtime,
    uid: str,
    endpoint_uid: str,
    lease_until: datetime,
    result: outbound.OutboundResult,
    *,
    final: bool = False,
) -> None:
    settings = runtime.settings
    now = utcnow()
    async with transaction(runtime.sessionmaker) as session:
        delivery = await repository.delivery_under_claim(session, uid, lease_until)
        if delivery is None:
            return  # taken over by another run after the lease lapsed: its result counts
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.response_status = result.status_code
        delivery.duration_ms = result.duration_ms
        delivery.error = result.error[:MAX_ERROR] if result.error else None
        delivery.claimed_until = None
        if result.succeeded:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.finished_at = now
        else:
            retry_at = now + backoff(delivery.attempts)
            deadline = delivery.created_at + timedelta(seconds=settings.webhook_retry_seconds)
            if final or retry_at > deadline:
                delivery.status = DeliveryStatus.FAILED
                delivery.finished_at = now
            else:
                delivery.next_attempt_at = retry_at
        if final:
            return
        endpoint = await repository.endpoint_for_update(session, endpoint_uid)
        if endpoint is None:
            return
        if result.succeeded:
            endpoint.failing_since = None
        elif endpoint.failing_since is None:
            endpoint.failing_since = now
        elif endpoint.enabled and now - endpoint.failing_since > timedelta(
            seconds=settings.webhook_disable_after_seconds
        ):
            await _disable(session, runtime, endpoint, delivery.error or "")


async def _disable(
    session: AsyncSession, runtime: Runtime, endpoint: WebhookEndpoint, last_error: str
) -> None:
    assert endpoint.failing_since is not None
    since = endpoint.failing_since
    hours = runtime.settings.webhook_disable_after_seconds / 3600
    endpoint.enabled = False
    endpoint.disabled_reason = (
        f"Every delivery failed for more than {hours:g} h (since {since:%Y-%m-%d %H:%M} UTC); "
        f"last error: {last_error}"
    )[:256]
    endpoint.modified_at = utcnow()
    tenant = await session.get(Tenant, endpoint.tenant_uid)
    if tenant is None:
        return
    audit.record(
        session,
        system_principal(tenant),
        Action.WEBHOOK_ENDPOINT_DISABLE,
        ResourceKind.WEBHOOK_ENDPOINT,
        endpoint.uid,
        endpoint.url,
        message=endpoint.disabled_reason,
        changes={"enabled": {"old": True, "new": False}},
    )
    # Its pending deliveries (this one among them) are not tried again; a resend after
    # re-enabling sends one.
    await session.flush()
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_uid == endpoint.uid,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.claimed_until.is_(None),
        )
        .values(
            status=DeliveryStatus.FAILED,
            finished_at=utcnow(),
            error="The endpoint was disabled; not sent.",
        )
        .execution_options(synchronize_session=False)
    )
    creator = await session.get(User, endpoint.created_by_uid) if endpoint.created_by_uid else None
    if creator is None:
        return
    await notifications.notify(
        session,
        creator,
        kind="webhookDisabled",
        subject=f"Keyplane disabled the webhook endpoint {endpoint.url}",
        body=(
            f"Keyplane could not deliver events to {endpoint.url} since "
            f"{since:%Y-%m-%d %H:%M} UTC, so it disabled the endpoint. Fix the receiver, "
            "then enable the endpoint again (and resend the deliveries you need) in "
            "Tenant Settings > Webhooks."
        ),
        link_path=f"/tenant/settings/webhooks/{endpoint.uid}",
        dedupe_key=f"webhookDisabled:{endpoint.uid}:{since.isoformat()}",
    )
