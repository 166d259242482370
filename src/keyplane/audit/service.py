"""Recording audit events. Callers pass names and uids only: never a key value or password."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from keyplane.audit import repository
from keyplane.audit.actions import Action, Outcome, ResourceKind
from keyplane.auth import policy
from keyplane.auth.principal import AuthMethod, Principal
from keyplane.kit.db import transaction
from keyplane.kit.errors import Forbidden
from keyplane.kit.pagination import PageRequest
from keyplane.models import AuditEvent


def _event(
    principal: Principal,
    action: Action,
    kind: ResourceKind,
    resource_uid: str,
    resource_name: str,
    outcome: Outcome,
    message: str,
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    system = principal.method is AuthMethod.SYSTEM
    return AuditEvent(
        tenant_uid=principal.tenant_uid,
        actor_type="system" if system else "user",
        actor_user_uid=principal.user_uid or None,
        actor_email=principal.email,
        actor_name=f"{principal.first_name} {principal.last_name}".strip(),
        actor_first_name=principal.first_name[:64],
        actor_last_name=principal.last_name[:64],
        auth_method=principal.method.value,
        action=action.value,
        action_type=action.action_type,
        resource_kind=kind.value,
        resource_uid=resource_uid,
        resource_name=resource_name[:254],
        outcome=outcome.value,
        client_address=principal.client_address[:64],
        message=message[:512],
        changes=changes or None,
    )


def record(
    session: AsyncSession,
    principal: Principal,
    action: Action,
    kind: ResourceKind,
    resource_uid: str,
    resource_name: str,
    *,
    outcome: Outcome = Outcome.SUCCESS,
    message: str = "",
    changes: dict[str, Any] | None = None,
) -> None:
    """Part of the caller's transaction: the record exists exactly when the change does.
    ``changes``: what the change changed, ``{"field": {"old": ..., "new": ...}}`` (never
    a secret)."""
    session.add(
        _event(principal, action, kind, resource_uid, resource_name, outcome, message, changes)
    )


async def record_separately(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    action: Action,
    kind: ResourceKind,
    resource_uid: str,
    resource_name: str,
    *,
    outcome: Outcome,
    message: str = "",
) -> None:
    """In a transaction of its own, for failures whose request transaction rolls back."""
    async with transaction(sessionmaker) as session:
        session.add(_event(principal, action, kind, resource_uid, resource_name, outcome, message))


async def list_audit_events(
    session: AsyncSession,
    principal: Principal,
    filters: repository.AuditFilters,
    page: PageRequest,
    limit: int | None,
) -> tuple[Sequence[AuditEvent], int]:
    policy.require_account_access(principal)
    if not principal.is_tenant_admin:
        raise Forbidden("Only tenant admins can read the audit log.", code="Forbidden")
    return await repository.list_events(session, principal, filters, page.offset, limit)
