from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.auth.principal import Principal
from keyplane.models import AuditEvent


@dataclass(frozen=True, slots=True)
class AuditFilters:
    resource_kind: str | None = None
    resource_uid: str | None = None
    user_uid: str | None = None
    action_type: str | None = None
    action: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


def visible_events(principal: Principal) -> Select[AuditEvent]:
    """The one place audit reads are scoped: the caller's tenant, nothing else."""
    return select(AuditEvent).where(AuditEvent.tenant_uid == principal.tenant_uid)


def _filtered(principal: Principal, filters: AuditFilters) -> Select[AuditEvent]:
    statement = visible_events(principal)
    if filters.resource_kind:
        statement = statement.where(AuditEvent.resource_kind == filters.resource_kind)
    if filters.resource_uid:
        statement = statement.where(AuditEvent.resource_uid == filters.resource_uid)
    if filters.user_uid:
        statement = statement.where(AuditEvent.actor_user_uid == filters.user_uid)
    if filters.action_type:
        statement = statement.where(AuditEvent.action_type == filters.action_type)
    if filters.action:
        statement = statement.where(AuditEvent.action == filters.action)
    if filters.start_time:
        statement = statement.where(AuditEvent.occurred_at >= filters.start_time)
    if filters.end_time:
        statement = statement.where(AuditEvent.occurred_at < filters.end_time)
    return statement


async def list_events(
    session: AsyncSession,
    principal: Principal,
    filters: AuditFilters,
    offset: int,
    limit: int | None,
) -> tuple[Sequence[AuditEvent], int]:
    statement = _filtered(principal, filters)
    total = await session.scalar(select(func.count()).select_from(statement.subquery()))
    ordered = statement.order_by(AuditEvent.occurred_at.desc(), AuditEvent.uid.desc())
    if limit is not None:
        ordered = ordered.offset(offset).limit(limit)
    elif offset:
        ordered = ordered.offset(offset)
    rows = (await session.scalars(ordered)).all()
    return rows, int(total or 0)
