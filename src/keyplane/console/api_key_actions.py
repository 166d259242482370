"""Revoke, re-activate (asking a tenant admin to confirm for a leaked key) and delete, from
an API key's three-dot menu (My API Keys and Tenant Settings > API Keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from keyplane.api_keys import service as api_keys
from keyplane.auth.principal import Principal
from keyplane.console.api_key_scopes import TENANT, USER, scope_of
from keyplane.console.routing import ConsoleRoute, redirect_with_flash
from keyplane.console.session import ConsolePrincipal, check_csrf
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Conflict
from keyplane.runtime import Runtime, RuntimeDep

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

CsrfToken = Annotated[str, Form()]


async def _change_state(
    request: Request,
    uid: str,
    principal: Principal,
    session: DbSession,
    runtime: Runtime,
    csrf_token: str,
    active: bool,
    confirm_leaked: bool = False,
) -> Response:
    scope = scope_of(request)
    scope.check(principal)
    check_csrf(runtime, principal, csrf_token)
    try:
        key = await api_keys.set_api_key_active(
            session, principal, uid, active, confirm_leaked=confirm_leaked
        )
    except Conflict as exc:
        if exc.code == "ApiKeyLeaked" and principal.is_tenant_admin and not confirm_leaked:
            # Nothing changed: ask the admin, who alone may put a leaked key back to work.
            key, owner = await api_keys.get_api_key(session, principal, uid)
            return render(
                request,
                "api_keys/confirm_reactivate_leaked.html",
                scope.context(key=key, owner=owner),
                principal=principal,
                status_code=409,
            )
        return redirect_with_flash(request, scope.base_url, exc.message, "error")
    verb = "re-activated" if active else "revoked"
    return redirect_with_flash(request, scope.base_url, f"API key “{key.name}” {verb}.")


async def revoke_key(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
) -> Response:
    return await _change_state(request, uid, principal, session, runtime, csrf_token, False)


async def reactivate_key(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    confirm_leaked: Annotated[str, Form()] = "",
) -> Response:
    return await _change_state(
        request, uid, principal, session, runtime, csrf_token, True, confirm_leaked == "yes"
    )


async def confirm_delete(
    request: Request, uid: str, principal: ConsolePrincipal, session: DbSession
) -> Response:
    scope = scope_of(request)
    scope.check(principal)
    key, owner = await api_keys.get_api_key(session, principal, uid)
    return render(
        request,
        "api_keys/confirm_delete.html",
        scope.context(key=key, owner=owner),
        principal=principal,
    )


async def delete_key(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
) -> Response:
    scope = scope_of(request)
    scope.check(principal)
    check_csrf(runtime, principal, csrf_token)
    key, _owner = await api_keys.get_api_key(session, principal, uid)
    await api_keys.delete_api_key(session, principal, uid)
    return redirect_with_flash(request, scope.base_url, f"API key “{key.name}” deleted.")


for _scope_ in (USER, TENANT):
    base = _scope_.base_url
    router.add_api_route(f"{base}/{{uid}}/revoke", revoke_key, methods=["POST"])
    router.add_api_route(f"{base}/{{uid}}/reactivate", reactivate_key, methods=["POST"])
    router.add_api_route(f"{base}/{{uid}}/delete", confirm_delete, methods=["GET"])
    router.add_api_route(f"{base}/{{uid}}/delete", delete_key, methods=["POST"])
