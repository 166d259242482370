"""Rotate, from an API key's three-dot menu (My API Keys and Tenant Settings > API Keys):
a confirm page with the grace choices, then the new key's value, shown once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from keyplane.api_keys import rotation
from keyplane.api_keys import service as api_keys
from keyplane.auth.principal import Principal
from keyplane.console.api_key_scopes import TENANT, USER, Scope, scope_of
from keyplane.console.routing import ConsoleRoute, redirect_with_flash
from keyplane.console.session import ConsolePrincipal, check_csrf
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Conflict, Forbidden, ValidationFailed
from keyplane.kit.keys import hint_display
from keyplane.runtime import RuntimeDep

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

# The grace periods the page offers, in seconds, as the issue words them.
GRACE_CHOICES: tuple[tuple[str, str], ...] = (
    ("0", "Now: the old key stops working at once"),
    ("3600", "In 1 hour"),
    ("86400", "In 24 hours"),
    ("604800", "In 7 days"),
)


async def _confirm_page(
    request: Request,
    scope: Scope,
    principal: Principal,
    session: DbSession,
    uid: str,
    *,
    grace: str = "86400",
    error: str = "",
    status_code: int = 200,
) -> Response:
    key, owner = await api_keys.get_api_key(session, principal, uid)
    return render(
        request,
        "api_keys/confirm_rotate.html",
        scope.context(key=key, owner=owner, choices=GRACE_CHOICES, grace=grace, error=error),
        principal=principal,
        status_code=status_code,
    )


async def confirm_rotate(
    request: Request, uid: str, principal: ConsolePrincipal, session: DbSession
) -> Response:
    scope = scope_of(request)
    scope.check(principal)
    return await _confirm_page(request, scope, principal, session, uid)


async def rotate_key(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: Annotated[str, Form()] = "",
    grace: Annotated[str, Form()] = "",
) -> Response:
    scope = scope_of(request)
    scope.check(principal)
    check_csrf(runtime, principal, csrf_token)
    if grace not in dict(GRACE_CHOICES):
        return await _confirm_page(
            request,
            scope,
            principal,
            session,
            uid,
            grace=grace,
            error="Choose when the old key stops working.",
            status_code=400,
        )
    try:
        done = await rotation.rotate_api_key(
            session, runtime, principal, uid, grace_period_seconds=int(grace)
        )
    except Conflict as exc:
        return redirect_with_flash(request, scope.base_url, exc.message, "error")
    except (ValidationFailed, Forbidden) as exc:
        return await _confirm_page(
            request,
            scope,
            principal,
            session,
            uid,
            grace=grace,
            error=exc.message,
            status_code=exc.status_code,
        )
    return render(
        request,
        "api_keys/rotated.html",
        scope.context(
            name=done.new.name,
            owner=done.owner.full_name if done.owner.uid != principal.user_uid else "",
            value=done.value,
            hint=hint_display(done.new.key_hint),
            old_name=done.old.name,
            grace_ends_at=done.grace_ends_at,
            immediately=grace == "0",
        ),
        principal=principal,
        status_code=201,
    )


for _scope_ in (USER, TENANT):
    base = _scope_.base_url
    router.add_api_route(f"{base}/{{uid}}/rotate", confirm_rotate, methods=["GET"])
    router.add_api_route(f"{base}/{{uid}}/rotate", rotate_key, methods=["POST"])
