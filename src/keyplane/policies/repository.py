"""Queries for tenant key policies, the keys that break them, and the keys the inactivity
sweep revokes. Key reads are scoped by ``api_keys.repository.visible_only`` (a tenant
admin's view: the tenant's keys); the policy row is found by its primary key."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.api_keys.repository import visible_only
from keyplane.auth.principal import Principal
from keyplane.models import ApiKey, Tenant, TenantPolicy, User


async def get(session: AsyncSession, tenant_uid: str) -> TenantPolicy | None:
    return await session.get(TenantPolicy, tenant_uid)


async def get_for_update(session: AsyncSession, tenant_uid: str) -> TenantPolicy | None:
    """Locked: two admins saving at once are serialised, so each audit record's "old"
    values are what the other left."""
    statement = (
        select(TenantPolicy)
        .where(TenantPolicy.tenant_uid == tenant_uid)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


def _live(now: datetime) -> list[ColumnElement[bool]]:
    """Keys that still authenticate: active, not expired, not rotated away."""
    return [
        ApiKey.is_active.is_(True),
        ApiKey.expires_at > now,
        or_(ApiKey.rotation_grace_ends_at.is_(None), ApiKey.rotation_grace_ends_at > now),
    ]


def last_activity() -> ColumnElement[datetime]:
    """When a key was last used, else when it was created."""
    return func.coalesce(ApiKey.last_used_at, ApiKey.created_at)


async def violation_candidates(
    session: AsyncSession,
    principal: Principal,
    *,
    now: datetime,
    expires_after: datetime | None,
    inactive_before: datetime | None,
    with_ranges: bool,
    limit: int,
) -> Sequence[tuple[ApiKey, User]]:
    """Live keys of the tenant that may break its policy: expiring after
    ``expires_after``, unused since ``inactive_before``, or (``with_ranges``) carrying
    address ranges of their own, which the caller compares with the tenant's."""
    conditions = []
    if expires_after is not None:
        conditions.append(ApiKey.expires_at > expires_after)
    if inactive_before is not None:
        conditions.append(last_activity() < inactive_before)
    if with_ranges:
        conditions.append(ApiKey.allowed_cidrs.is_not(None))
    if not conditions:
        return []
    statement = (
        visible_only(select(ApiKey, User).join(User, User.uid == ApiKey.user_uid), principal)
        .where(and_(*_live(now)), or_(*conditions))
        .order_by(ApiKey.created_at, ApiKey.uid)
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    return [(row[0], row[1]) for row in rows]


async def inactivity_policies(session: AsyncSession) -> Sequence[tuple[TenantPolicy, Tenant]]:
    """Every tenant whose policy revokes unused keys (a system read for the sweep)."""
    statement = (
        select(TenantPolicy, Tenant)
        .join(Tenant, Tenant.uid == TenantPolicy.tenant_uid)
        .where(TenantPolicy.inactivity_days.is_not(None))
        .order_by(TenantPolicy.tenant_uid)
    )
    rows = (await session.execute(statement)).all()
    return [(row[0], row[1]) for row in rows]


async def claim_inactive_keys(
    session: AsyncSession, principal: Principal, now: datetime, unused_since: datetime, limit: int
) -> Sequence[tuple[ApiKey, User]]:
    """Live keys of the principal's tenant unused since ``unused_since``, locked for the
    caller's transaction. ``SKIP LOCKED`` on PostgreSQL: a key another instance's sweep
    holds is left to it, and once that commits the key is no longer active, so the
    condition (evaluated again on the locked row) excludes it: never revoked twice.
    SQLite has one writer, and a writing transaction takes the lock up front
    (``kit.db``), so two sweeps there run one after the other."""
    statement = (
        visible_only(select(ApiKey, User).join(User, User.uid == ApiKey.user_uid), principal)
        .where(*_live(now), last_activity() < unused_since)
        .order_by(ApiKey.uid)
        .limit(limit)
        .with_for_update(of=ApiKey, skip_locked=True)
        .execution_options(populate_existing=True)
    )
    rows = (await session.execute(statement)).all()
    return [(row[0], row[1]) for row in rows]
