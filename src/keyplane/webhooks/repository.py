"""Queries on webhook endpoints, their events and deliveries.

Every query on a caller's behalf starts from ``visible_endpoints`` or
``visible_deliveries``, the one place each is scoped to the caller's tenant. The delivery
worker's queries (``claim_due`` and the reads after it) act for no caller: they take the
rows' own tenant, as the credential path does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.auth.principal import Principal
from keyplane.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from keyplane.models.webhook import DeliveryStatus


def visible_endpoints(principal: Principal) -> Select[WebhookEndpoint]:
    """The one place endpoint reads are scoped: the caller's tenant."""
    return select(WebhookEndpoint).where(WebhookEndpoint.tenant_uid == principal.tenant_uid)


def visible_deliveries(principal: Principal) -> Select[WebhookDelivery, WebhookEvent]:
    """The one place delivery reads are scoped: the caller's tenant. Each with its event."""
    return (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.uid == WebhookDelivery.event_uid)
        .where(WebhookDelivery.tenant_uid == principal.tenant_uid)
    )


async def list_endpoints(session: AsyncSession, principal: Principal) -> Sequence[WebhookEndpoint]:
    statement = visible_endpoints(principal).order_by(
        WebhookEndpoint.created_at, WebhookEndpoint.uid
    )
    return (await session.scalars(statement)).all()


async def count_endpoints(session: AsyncSession, principal: Principal) -> int:
    statement = visible_endpoints(principal).with_only_columns(func.count(WebhookEndpoint.uid))
    return int(await session.scalar(statement) or 0)


async def get_endpoint(
    session: AsyncSession, principal: Principal, uid: str, *, for_update: bool = False
) -> WebhookEndpoint | None:
    statement = visible_endpoints(principal).where(WebhookEndpoint.uid == uid)
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(statement)


async def enabled_endpoints(
    session: AsyncSession, principal: Principal
) -> Sequence[WebhookEndpoint]:
    statement = visible_endpoints(principal).where(WebhookEndpoint.enabled.is_(True))
    return (await session.scalars(statement.order_by(WebhookEndpoint.uid))).all()


async def list_deliveries(
    session: AsyncSession, principal: Principal, endpoint_uid: str, offset: int, limit: int | None
) -> tuple[Sequence[tuple[WebhookDelivery, WebhookEvent]], int]:
    """An endpoint's deliveries, newest first, and how many there are."""
    base = visible_deliveries(principal).where(WebhookDelivery.endpoint_uid == endpoint_uid)
    total = await session.scalar(
        base.with_only_columns(func.count(WebhookDelivery.uid)).order_by(None)
    )
    statement = base.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.uid.desc())
    statement = statement.offset(offset)
    if limit is not None:
        statement = statement.limit(limit)
    rows = (await session.execute(statement)).all()
    return rows, int(total or 0)


async def get_delivery(
    session: AsyncSession, principal: Principal, uid: str
) -> tuple[WebhookDelivery, WebhookEvent] | None:
    statement = visible_deliveries(principal).where(WebhookDelivery.uid == uid)
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1])


# --- the delivery worker ------------------------------------------------------------


async def claim_due(
    session: AsyncSession, now: datetime, lease_until: datetime, limit: int
) -> list[str]:
    """Up to ``limit`` due deliveries (pending, their time come, unclaimed or their lease
    lapsed), claimed until ``lease_until``; their uids.

    On PostgreSQL ``FOR UPDATE SKIP LOCKED``: concurrent workers each take other rows and
    never wait on each other. SQLite has one writer: the caller's transaction began with
    BEGIN IMMEDIATE (``kit.db``), so the read and the claim below are one atomic step."""
    statement = (
        select(WebhookDelivery.uid)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.uid)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    uids = list((await session.scalars(statement)).all())
    if uids:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.uid.in_(uids))
            .values(claimed_until=lease_until)
            .execution_options(synchronize_session=False)
        )
    return uids


async def claimed(
    session: AsyncSession, uids: Sequence[str]
) -> Sequence[tuple[WebhookDelivery, WebhookEndpoint, WebhookEvent]]:
    statement = (
        select(WebhookDelivery, WebhookEndpoint, WebhookEvent)
        .join(WebhookEndpoint, WebhookEndpoint.uid == WebhookDelivery.endpoint_uid)
        .join(WebhookEvent, WebhookEvent.uid == WebhookDelivery.event_uid)
        .where(WebhookDelivery.uid.in_(list(uids)))
    )
    return (await session.execute(statement)).all()


async def delivery_under_claim(
    session: AsyncSession, uid: str, lease_until: datetime
) -> WebhookDelivery | None:
    """The delivery, locked, if this worker's claim still holds it (another worker may
    have taken it over once the lease lapsed: then its result is that worker's to write)."""
    statement = (
        select(WebhookDelivery)
        .where(
            WebhookDelivery.uid == uid,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.claimed_until == lease_until,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


async def endpoint_for_update(session: AsyncSession, uid: str) -> WebhookEndpoint | None:
    statement = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.uid == uid)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


async def delete_finished_events(session: AsyncSession, before: datetime, limit: int) -> int:
    """Deletes up to ``limit`` events written before ``before`` none of whose deliveries is
    still pending, with their deliveries; how many events went."""
    pending = (
        select(WebhookDelivery.uid)
        .where(
            WebhookDelivery.event_uid == WebhookEvent.uid,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .exists()
    )
    uids = list(
        await session.scalars(
            select(WebhookEvent.uid)
            .where(WebhookEvent.created_at < before, ~pending)
            .order_by(WebhookEvent.created_at)
            .limit(limit)
        )
    )
    if not uids:
        return 0
    await session.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.event_uid.in_(uids))
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        delete(WebhookEvent)
        .where(WebhookEvent.uid.in_(uids))
        .execution_options(synchronize_session=False)
    )
    return len(uids)
