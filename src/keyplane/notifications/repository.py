"""Queries for notifications: a person's own list, and the background scans (which read
across tenants on Keyplane's own behalf, never for a caller)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.auth.principal import Principal
from keyplane.models import (
    ApiKey,
    Notification,
    NotificationStatus,
    Role,
    Tenant,
    TenantPolicy,
    User,
)
from keyplane.models.tenant_policy import DEFAULT_EXPIRY_NOTICE_DAYS


def visible_notifications(principal: Principal) -> Select[Notification]:
    """The one place a caller's notification reads are scoped: their own, in their
    tenant. Nobody reads another person's mail, tenant admins included."""
    return select(Notification).where(
        Notification.tenant_uid == principal.tenant_uid,
        Notification.user_uid == principal.user_uid,
    )


async def list_page(
    session: AsyncSession, principal: Principal, offset: int, limit: int
) -> tuple[Sequence[Notification], int]:
    statement = visible_notifications(principal)
    total = await session.scalar(select(func.count()).select_from(statement.subquery()))
    ordered = (
        statement.order_by(Notification.created_at.desc(), Notification.uid.desc())
        .offset(offset)
        .limit(limit)
    )
    return (await session.scalars(ordered)).all(), int(total or 0)


async def exists(session: AsyncSession, dedupe_key: str) -> bool:
    found = await session.scalar(
        select(Notification.uid).where(Notification.dedupe_key == dedupe_key)
    )
    return found is not None


# --- sending --------------------------------------------------------------------------


async def claim_due(
    session: AsyncSession, now: datetime, lease_until: datetime, limit: int
) -> Sequence[Notification]:
    """Pending notifications whose time has come and that nobody holds, claimed until
    ``lease_until``. PostgreSQL: FOR UPDATE SKIP LOCKED, so that instances claiming at
    the same moment take disjoint rows; SQLite: the writing transaction's BEGIN IMMEDIATE
    already makes this select-then-update one writer's (FOR UPDATE is not rendered)."""
    statement = (
        select(Notification)
        .where(
            Notification.status == NotificationStatus.PENDING,
            Notification.next_attempt_at <= now,
            or_(Notification.claimed_until.is_(None), Notification.claimed_until < now),
        )
        .order_by(Notification.next_attempt_at, Notification.uid)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = (await session.scalars(statement)).all()
    for notification in claimed:
        notification.claimed_until = lease_until
    await session.flush()
    return claimed


async def finish(session: AsyncSession, uid: str, lease_until: datetime, **values: object) -> bool:
    """Records the outcome of a send, if the claim is still this sender's (a sender whose
    lease ran out must not overwrite what the next one recorded)."""
    result = await session.execute(
        update(Notification)
        .where(Notification.uid == uid, Notification.claimed_until == lease_until)
        .values(claimed_until=None, **values)
    )
    return bool(getattr(result, "rowcount", 0))


async def mark_pending_not_mailed(session: AsyncSession) -> None:
    """Without SMTP: pending notifications are listed in the console only."""
    await session.execute(
        update(Notification)
        .where(Notification.status == NotificationStatus.PENDING)
        .values(status=NotificationStatus.NOT_MAILED, claimed_until=None)
    )


# --- the scans ------------------------------------------------------------------------


async def notice_days_by_tenant(session: AsyncSession) -> dict[str, tuple[int, ...]]:
    """Tenants whose policy sets notice days; every other tenant has the defaults. One row
    per tenant with a policy: small next to the keys."""
    rows = await session.execute(select(TenantPolicy.tenant_uid, TenantPolicy.expiry_notice_days))
    days: dict[str, tuple[int, ...]] = {}
    for tenant_uid, values in rows:
        valid = tuple(sorted({int(v) for v in values or () if isinstance(v, int) and v > 0}))
        days[tenant_uid] = valid
    return days


def default_notice_days() -> tuple[int, ...]:
    return tuple(sorted(DEFAULT_EXPIRY_NOTICE_DAYS))


async def active_keys_expiring_between(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[tuple[ApiKey, User]]:
    """Active keys of active owners with ``start < expires_at <= end``, in (expiry, uid)
    order from ``after`` on: one bounded batch of a keyset scan."""
    statement = (
        select(ApiKey, User)
        .join(User, User.uid == ApiKey.user_uid)
        .where(
            ApiKey.is_active.is_(True),
            # A rotated key was replaced: its owner has the new one, which has its own expiry.
            ApiKey.rotated_to_uid.is_(None),
            User.is_active.is_(True),
            ApiKey.expires_at > start,
            ApiKey.expires_at <= end,
        )
        .order_by(ApiKey.expires_at, ApiKey.uid)
        .limit(limit)
    )
    if after is not None:
        statement = statement.where(tuple_(ApiKey.expires_at, ApiKey.uid) > tuple_(*after))
    return [(key, user) for key, user in (await session.execute(statement)).all()]


async def tenant(session: AsyncSession, uid: str) -> Tenant | None:
    return await session.get(Tenant, uid)


async def digest_recipients(session: AsyncSession, after: str, limit: int) -> Sequence[User]:
    """Active tenant admins who asked for the daily digest, in uid order from ``after``."""
    statement = (
        select(User)
        .where(
            User.expiry_digest.is_(True),
            User.is_active.is_(True),
            User.role == Role.TENANT_ADMIN.value,
            User.uid > after,
        )
        .order_by(User.uid)
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


def visible_tenant_keys(tenant_uid: str) -> Select[ApiKey, User]:
    """A tenant's keys with their owners, for that tenant's own admins' digest (the only
    reader: the digest goes to admins of ``tenant_uid``)."""
    return (
        select(ApiKey, User)
        .join(User, User.uid == ApiKey.user_uid)
        .where(ApiKey.tenant_uid == tenant_uid)
    )


async def tenant_keys_expiring_between(
    session: AsyncSession, tenant_uid: str, start: datetime, end: datetime, limit: int
) -> tuple[Sequence[tuple[ApiKey, User]], int]:
    statement = visible_tenant_keys(tenant_uid).where(
        ApiKey.is_active.is_(True),
        ApiKey.rotated_to_uid.is_(None),
        ApiKey.expires_at > start,
        ApiKey.expires_at <= end,
    )
    total = await session.scalar(select(func.count()).select_from(statement.subquery()))
    rows = await session.execute(statement.order_by(ApiKey.expires_at, ApiKey.uid).limit(limit))
    return [(key, user) for key, user in rows.all()], int(total or 0)


async def set_expiry_digest(session: AsyncSession, user: User, on: bool) -> None:
    user.expiry_digest = on
    await session.flush()


async def delete_old_notifications(session: AsyncSession, before: datetime, limit: int) -> int:
    """Deletes up to ``limit`` notifications written before ``before`` that are no longer
    waiting to be mailed; how many went."""
    uids = list(
        await session.scalars(
            select(Notification.uid)
            .where(
                Notification.created_at < before,
                Notification.status != NotificationStatus.PENDING,
            )
            .order_by(Notification.created_at)
            .limit(limit)
        )
    )
    if uids:
        await session.execute(
            delete(Notification)
            .where(Notification.uid.in_(uids))
            .execution_options(synchronize_session=False)
        )
    return len(uids)
