"""``/v1/users/me/notifications`` and ``/v1/users/me/notificationSettings``: the caller's
own, whoever they are (a verifier has none: 403)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from keyplane.auth.dependencies import CurrentPrincipal
from keyplane.kit.db import DbSession
from keyplane.kit.pagination import PageRequest, list_meta, page_request, resolve_limit
from keyplane.notifications import service
from keyplane.notifications.schemas import (
    NotificationList,
    NotificationSettingsRead,
    NotificationSettingsUpdate,
    notification_read,
)
from keyplane.runtime import RuntimeDep

router = APIRouter(prefix="/v1/users/me", tags=["notifications"])


@router.get(
    "/notifications", response_model=NotificationList, operation_id="v1UsersMeNotificationsList"
)
async def list_notifications(
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    page: Annotated[PageRequest, Depends(page_request)],
) -> NotificationList:
    """The caller's notifications, newest first: what was mailed, or (without SMTP on this
    server) only listed. Always paged: ``limit`` defaults to the server's page size."""
    settings = runtime.settings
    limit = resolve_limit(page, settings.page_default_limit, settings.page_max_limit)
    limit = settings.page_default_limit if limit is None else limit
    rows, total = await service.list_notifications(session, principal, page.offset, limit)
    items = [notification_read(row, settings.console_url) for row in rows]
    return NotificationList(items=items, listmeta=list_meta(page, limit, len(items), total))


@router.get(
    "/notificationSettings",
    response_model=NotificationSettingsRead,
    operation_id="v1UsersMeNotificationSettingsGet",
)
async def get_notification_settings(
    principal: CurrentPrincipal, session: DbSession, runtime: RuntimeDep
) -> NotificationSettingsRead:
    current = await service.get_notification_settings(session, principal)
    return NotificationSettingsRead(
        expiry_digest=current.expiry_digest,
        expiry_digest_available=current.digest_available,
        email_enabled=runtime.settings.smtp_url is not None,
    )


@router.put(
    "/notificationSettings",
    status_code=204,
    operation_id="v1UsersMeNotificationSettingsUpdate",
)
async def update_notification_settings(
    body: NotificationSettingsUpdate, principal: CurrentPrincipal, session: DbSession
) -> Response:
    """``expiryDigest``: a daily mail of the tenant's keys expiring within 7 days (tenant
    admins only may turn it on)."""
    await service.set_expiry_digest(session, principal, body.expiry_digest)
    return Response(status_code=204)
