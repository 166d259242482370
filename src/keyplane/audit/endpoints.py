from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from keyplane.audit import service
from keyplane.audit.repository import AuditFilters
from keyplane.audit.schemas import AuditList, audit_read
from keyplane.auth.dependencies import CurrentPrincipal
from keyplane.kit.db import DbSession
from keyplane.kit.errors import ValidationFailed
from keyplane.kit.pagination import PageRequest, list_meta, page_request, resolve_limit
from keyplane.kit.validation import UtcDateTime
from keyplane.runtime import RuntimeDep

router = APIRouter(prefix="/v1/audits", tags=["audits"])


@router.get("", response_model=AuditList, operation_id="v1AuditsList")
async def list_audits(
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    page: Annotated[PageRequest, Depends(page_request)],
    resource_kind: Annotated[
        Literal["apiKey", "user", "tenant", "resourceLimit", "permission", "permissionRole"] | None,
        Query(alias="resourceKind"),
    ] = None,
    resource_uid: Annotated[str | None, Query(alias="resourceUid", max_length=64)] = None,
    user_uid: Annotated[
        str | None, Query(alias="userUid", max_length=64, description="The acting user.")
    ] = None,
    action_type: Annotated[
        Literal["create", "update", "delete", "activity"] | None, Query(alias="actionType")
    ] = None,
    start_time: Annotated[UtcDateTime | None, Query(alias="startTime")] = None,
    end_time: Annotated[UtcDateTime | None, Query(alias="endTime")] = None,
) -> AuditList:
    """The tenant's audit log, newest first (tenant admins only)."""
    if start_time and end_time and start_time >= end_time:
        raise ValidationFailed("startTime must be before endTime.", code="InvalidTimeRange")
    settings = runtime.settings
    # Always paged: an audit log only grows, so a plain request gets the newest page.
    limit = resolve_limit(page, settings.page_default_limit, settings.page_max_limit)
    limit = settings.page_default_limit if limit is None else limit
    filters = AuditFilters(
        resource_kind=resource_kind,
        resource_uid=resource_uid,
        user_uid=user_uid,
        action_type=action_type,
        start_time=start_time,
        end_time=end_time,
    )
    events, total = await service.list_audit_events(session, principal, filters, page, limit)
    items = [audit_read(event, principal.tenant_name) for event in events]
    return AuditList(items=items, listmeta=list_meta(page, limit, len(items), total))
