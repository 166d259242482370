"""Tenant Settings > API Key Policy: the tenant's rules for its keys, and the keys that
break them.

Each key listed as breaking the policy offers **Edit** (its edit page: shorten the
expiry, narrow the address ranges) and **Revoke** (it stops working at once; it stays
listed under API Keys, where it can be re-activated or deleted). Keyplane never acts on
such keys by itself: a policy binds keys created or edited after it changes; only the
inactivity sweep revokes, and only keys unused for the policy's days.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from pydantic import ValidationError

from keyplane.api_keys import service as api_keys
from keyplane.auth.principal import Principal
from keyplane.console.routing import ConsoleRoute, redirect_with_flash
from keyplane.console.session import ConsolePrincipal, check_csrf, require_tenant_admin
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Conflict, ValidationFailed
from keyplane.kit.problems import describe_problem
from keyplane.policies import service as policies
from keyplane.policies.schemas import ApiKeyPolicyRead, ApiKeyPolicyUpdate
from keyplane.runtime import Runtime, RuntimeDep

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

BASE_URL = "/tenant/settings/api-key-policy"
_SEPARATORS = re.compile(r"[\s,]+")


def _form_values(policy: ApiKeyPolicyRead) -> dict[str, str]:
    def number(value: int | None) -> str:
        return "" if value is None else str(value)

    return {
        "max_lifetime_days": number(policy.max_lifetime_days),
        "default_lifetime_days": number(policy.default_lifetime_days),
        "expiry_required": "on" if policy.expiry_required else "",
        "key_creation": policy.key_creation,
        "allowed_cidrs": "\n".join(policy.allowed_cidrs or ()),
        "inactivity_days": number(policy.inactivity_days),
        "expiry_notice_days": ", ".join(str(day) for day in policy.expiry_notice_days),
        "leak_action": policy.leak_action,
    }


async def _page(
    request: Request,
    principal: Principal,
    session: DbSession,
    runtime: Runtime,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    settings = runtime.settings
    current = await policies.get_policy(session, settings, principal, principal.tenant_uid)
    violations = await policies.list_violations(session, settings, principal, principal.tenant_uid)
    return render(
        request,
        "tenants/api_key_policy.html",
        {
            "scope": "tenant",
            "section": "api-key-policy",
            "action": BASE_URL,
            "current": current,
            "values": values or _form_values(current),
            "errors": errors or {},
            "violations": violations,
        },
        principal=principal,
        status_code=status_code,
    )


async def show_policy(
    request: Request, principal: ConsolePrincipal, session: DbSession, runtime: RuntimeDep
) -> Response:
    require_tenant_admin(principal)
    return await _page(request, principal, session, runtime)


def _number(text: str) -> int | str | None:
    stripped = text.strip()
    return None if not stripped else (int(stripped) if stripped.isdigit() else stripped)


_FIELDS = {
    "maxLifetimeDays": "max_lifetime_days",
    "defaultLifetimeDays": "default_lifetime_days",
    "expiryRequired": "expiry_required",
    "keyCreation": "key_creation",
    "allowedCidrs": "allowed_cidrs",
    "inactivityDays": "inactivity_days",
    "expiryNoticeDays": "expiry_notice_days",
    "leakAction": "leak_action",
}


_LABELS = {
    "max_lifetime_days": "Maximum lifetime",
    "default_lifetime_days": "Default lifetime",
    "expiry_required": "Expiry required",
    "key_creation": "Who may create keys",
    "allowed_cidrs": "Allowed address ranges",
    "inactivity_days": "Revoke unused keys after",
    "expiry_notice_days": "Expiry notices",
    "leak_action": "Leaked keys",
}


def _errors(exc: ValidationError | ValidationFailed) -> dict[str, str]:
    if isinstance(exc, ValidationFailed):
        field = str((exc.details or {}).get("field", ""))
        return {_FIELDS.get(field, "form"): exc.message}
    found: dict[str, str] = {}
    for error in exc.errors():
        location = error["loc"][0] if error["loc"] else ""
        field = _FIELDS.get(str(location), str(location))
        label = _LABELS.get(field, "This field")
        found.setdefault(field, f"{label} {describe_problem(error)}.")
    return found


async def update_policy(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: Annotated[str, Form()] = "",
    max_lifetime_days: Annotated[str, Form()] = "",
    default_lifetime_days: Annotated[str, Form()] = "",
    expiry_required: Annotated[str, Form()] = "",
    key_creation: Annotated[str, Form()] = "everyone",
    allowed_cidrs: Annotated[str, Form()] = "",
    inactivity_days: Annotated[str, Form()] = "",
    expiry_notice_days: Annotated[str, Form()] = "",
    leak_action: Annotated[str, Form()] = "revoke",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    values = {
        "max_lifetime_days": max_lifetime_days,
        "default_lifetime_days": default_lifetime_days,
        "expiry_required": expiry_required,
        "key_creation": key_creation,
        "allowed_cidrs": allowed_cidrs,
        "inactivity_days": inactivity_days,
        "expiry_notice_days": expiry_notice_days,
        "leak_action": leak_action,
    }
    ranges = [part for part in _SEPARATORS.split(allowed_cidrs) if part]
    days = [part for part in _SEPARATORS.split(expiry_notice_days) if part]
    raw: dict[str, Any] = {
        "maxLifetimeDays": _number(max_lifetime_days),
        "defaultLifetimeDays": _number(default_lifetime_days),
        "expiryRequired": bool(expiry_required),
        "keyCreation": key_creation,
        "allowedCidrs": ranges or None,
        "inactivityDays": _number(inactivity_days),
        "expiryNoticeDays": [_number(day) for day in days],
        "leakAction": leak_action,
    }
    try:
        body = ApiKeyPolicyUpdate.model_validate(raw)
        await policies.update_policy(
            session, runtime.settings, principal, principal.tenant_uid, body
        )
    except (ValidationError, ValidationFailed) as exc:
        return await _page(
            request, principal, session, runtime, values, _errors(exc), status_code=400
        )
    return redirect_with_flash(
        request, BASE_URL, "Saved. The policy applies to keys created or edited from now on."
    )


async def revoke_violating_key(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    try:
        key = await api_keys.revoke_api_key(session, principal, uid)
    except Conflict as exc:
        return redirect_with_flash(request, BASE_URL, exc.message, "error")
    return redirect_with_flash(request, BASE_URL, f"API key “{key.name}” revoked.")


router.add_api_route(BASE_URL, show_policy, methods=["GET"])
router.add_api_route(BASE_URL, update_policy, methods=["POST"])
router.add_api_route(f"{BASE_URL}/keys/{{uid}}/revoke", revoke_violating_key, methods=["POST"])
