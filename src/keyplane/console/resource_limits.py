"""Tenant Settings > Resource Limits: how many API keys each user may have."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from pydantic import ValidationError

from keyplane.auth.principal import Principal
from keyplane.console.routing import ConsoleRoute, redirect_with_flash
from keyplane.console.session import ConsolePrincipal, check_csrf, require_tenant_admin
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.kit.errors import ValidationFailed
from keyplane.runtime import Runtime, RuntimeDep
from keyplane.tenants import service as tenants
from keyplane.tenants.schemas import TenantResourceLimit, TenantResourceLimitsEntity

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

BASE_URL = "/tenant/settings/resource-limits"
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,30}", re.ASCII)


async def _api_key_limit(
    session: DbSession, runtime: Runtime, principal: Principal
) -> TenantResourceLimit:
    limits = await tenants.get_resource_limits(
        session, runtime.settings, principal, principal.tenant_uid
    )
    return next(item for item in limits.resources if item.kind == tenants.API_KEY_LIMIT_KIND)


def _page(
    request: Request,
    principal: Principal,
    current: TenantResourceLimit,
    value: str,
    error: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "tenants/resource_limits.html",
        {
            "scope": "tenant",
            "section": "resource-limits",
            "action": BASE_URL,
            "current": current,
            "value": value,
            "error": error,
        },
        principal=principal,
        status_code=status_code,
    )


async def show_limits(
    request: Request, principal: ConsolePrincipal, session: DbSession, runtime: RuntimeDep
) -> Response:
    require_tenant_admin(principal)
    current = await _api_key_limit(session, runtime, principal)
    return _page(request, principal, current, str(current.limit))


def _problem(exc: ValidationError) -> str:
    for error in exc.errors():
        if error["type"] == "greater_than_equal":
            return f"API keys per user must be at least {(error.get('ctx') or {}).get('ge', 1)}."
    return "Enter a whole number, such as 20."


async def update_limits(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: Annotated[str, Form()] = "",
    limit: Annotated[str, Form()] = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    typed = limit.strip()
    try:
        if not _WHOLE_NUMBER.fullmatch(typed):
            raise ValidationFailed("Enter a whole number, such as 20.")
        body = TenantResourceLimitsEntity.model_validate(
            {"resources": [{"kind": tenants.API_KEY_LIMIT_KIND, "limit": int(typed)}]}
        )
        await tenants.update_resource_limits(
            session, runtime.settings, principal, principal.tenant_uid, body
        )
    except (ValidationError, ValidationFailed) as exc:
        if isinstance(exc, ValidationError):
            message = _problem(exc)
        elif exc.code == "ResourceLimitTooHigh":
            maximum = (exc.details or {}).get("maxLimit")
            message = f"API keys per user may be at most {maximum}."
        else:
            message = exc.message
        current = await _api_key_limit(session, runtime, principal)
        return _page(request, principal, current, limit, message, status_code=400)
    saved = body.resources[0].limit
    keys = "1 API key" if saved == 1 else f"{saved} API keys"
    return redirect_with_flash(request, BASE_URL, f"Saved: each user may now have up to {keys}.")


router.add_api_route(BASE_URL, show_limits, methods=["GET"])
router.add_api_route(BASE_URL, update_limits, methods=["POST"])
