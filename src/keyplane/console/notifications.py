"""My Notifications: what Keyplane told (or, without SMTP, would have mailed) the person,
and a tenant admin's daily digest switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response

from keyplane.console.routing import ConsoleRoute, redirect_with_flash
from keyplane.console.session import ConsolePrincipal, check_csrf
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.notifications import service
from keyplane.runtime import RuntimeDep

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

BASE_URL = "/my/notifications"
PAGE_SIZE = 25


def _page_urls(offset: int, shown: int, total: int) -> dict[str, object]:
    def url(start: int) -> str:
        return f"{BASE_URL}?offset={start}" if start else BASE_URL

    return {
        "first": offset + 1 if shown else 0,
        "last": offset + shown,
        "total": total,
        "previous_url": url(max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        "next_url": url(offset + PAGE_SIZE) if offset + shown < total else None,
    }


async def list_notifications(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    rows, total = await service.list_notifications(session, principal, offset, PAGE_SIZE)
    current = await service.get_notification_settings(session, principal)
    return render(
        request,
        "notifications/list.html",
        {
            "scope": "user",
            "section": None,
            "rows": rows,
            "page": _page_urls(offset, len(rows), total),
            "settings": current,
            "email_enabled": runtime.settings.smtp_url is not None,
            "console_url": runtime.settings.console_url.rstrip("/"),
        },
        principal=principal,
    )


async def update_settings(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: Annotated[str, Form()] = "",
    expiry_digest: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(runtime, principal, csrf_token)
    on = expiry_digest == "on"
    await service.set_expiry_digest(session, principal, on)
    message = (
        "You will receive a daily digest of your tenant's keys that expire within 7 days."
        if on
        else "The daily digest is off."
    )
    return redirect_with_flash(request, BASE_URL, message)


router.add_api_route(BASE_URL, list_notifications, methods=["GET"])
router.add_api_route(f"{BASE_URL}/settings", update_settings, methods=["POST"])
