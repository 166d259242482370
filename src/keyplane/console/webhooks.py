"""Tenant Settings > Webhooks: a tenant's webhook endpoints (add, edit, delete, rotate the
signing secret, shown once) and each endpoint's recent deliveries with a Resend button.

Every rule is the webhooks service's: this module only turns forms into its calls and
its refusals into messages next to the fields.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from keyplane.auth.principal import Principal
from keyplane.console.routing import ConsoleRoute, redirect_with_flash
from keyplane.console.session import ConsolePrincipal, check_csrf, require_tenant_admin
from keyplane.console.templating import render
from keyplane.kit.db import DbSession
from keyplane.kit.errors import Conflict, ValidationFailed
from keyplane.models import WebhookEndpoint
from keyplane.runtime import RuntimeDep
from keyplane.webhooks import service as webhooks

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

BASE_URL = "/tenant/settings/webhooks"
RECENT_DELIVERIES = 50
CsrfToken = Annotated[str, Form()]
Checked = Annotated[list[str] | None, Form()]
_FIELDS = {"url": "url", "events": "events", "description": "description"}


def _context(**values: Any) -> dict[str, Any]:
    return {"scope": "tenant", "section": "webhooks", "base_url": BASE_URL, **values}


async def list_endpoints(
    request: Request, principal: ConsolePrincipal, session: DbSession, runtime: RuntimeDep
) -> Response:
    require_tenant_admin(principal)
    endpoints = await webhooks.list_endpoints(session, principal)
    return render(
        request,
        "webhooks/list.html",
        _context(
            endpoints=endpoints,
            max_endpoints=webhooks.MAX_ENDPOINTS,
            allow_private=runtime.settings.webhook_allow_private_targets,
        ),
        principal=principal,
    )


def _form(
    request: Request,
    principal: Principal,
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    endpoint: WebhookEndpoint | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "webhooks/form.html",
        _context(
            values=values,
            errors=errors,
            event_types=webhooks.EVENT_TYPES,
            heading="Edit webhook endpoint" if endpoint else "Add webhook endpoint",
            submit_label="Save" if endpoint else "Add endpoint",
            action=f"{BASE_URL}/{endpoint.uid}/edit" if endpoint else f"{BASE_URL}/new",
            cancel_url=f"{BASE_URL}/{endpoint.uid}" if endpoint else BASE_URL,
        ),
        principal=principal,
        status_code=status_code,
    )


def _values(url: str, description: str, events: list[str] | None, enabled: str) -> dict[str, Any]:
    return {
        "url": url,
        "description": description,
        "events": events or [],
        "enabled": bool(enabled),
    }


def _errors(exc: ValidationFailed | Conflict) -> dict[str, str]:
    field = str((exc.details or {}).get("field", ""))
    return {_FIELDS.get(field, "form"): exc.message}


async def new_endpoint_form(request: Request, principal: ConsolePrincipal) -> Response:
    require_tenant_admin(principal)
    return _form(request, principal, _values("https://", "", [], "on"), {})


async def create_endpoint(
    request: Request,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    url: Annotated[str, Form(max_length=4096)] = "",
    description: Annotated[str, Form(max_length=4096)] = "",
    event: Checked = None,
    enabled: Annotated[str, Form()] = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    values = _values(url, description, event, enabled)
    try:
        endpoint, secret = await webhooks.create_endpoint(
            session,
            runtime,
            principal,
            url=url,
            description=description,
            events=values["events"],
            enabled=values["enabled"],
        )
    except (ValidationFailed, Conflict) as exc:
        status = 409 if isinstance(exc, Conflict) else 400
        return _form(request, principal, values, _errors(exc), status_code=status)
    return _secret_page(request, principal, endpoint, secret, created=True)


def _secret_page(
    request: Request, principal: Principal, endpoint: WebhookEndpoint, secret: str, *, created: bool
) -> Response:
    return render(
        request,
        "webhooks/secret.html",
        _context(endpoint=endpoint, secret=secret, created=created),
        principal=principal,
        status_code=201 if created else 200,
    )


async def endpoint_detail(
    request: Request, uid: str, principal: ConsolePrincipal, session: DbSession
) -> Response:
    require_tenant_admin(principal)
    endpoint = await webhooks.get_endpoint(session, principal, uid)
    rows, total = await webhooks.list_deliveries(session, principal, uid, 0, RECENT_DELIVERIES)
    return render(
        request,
        "webhooks/detail.html",
        _context(endpoint=endpoint, deliveries=rows, total=total, shown=RECENT_DELIVERIES),
        principal=principal,
    )


async def edit_endpoint_form(
    request: Request, uid: str, principal: ConsolePrincipal, session: DbSession
) -> Response:
    require_tenant_admin(principal)
    endpoint = await webhooks.get_endpoint(session, principal, uid)
    values = {
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
    }
    return _form(request, principal, values, {}, endpoint=endpoint)


async def update_endpoint(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
    url: Annotated[str, Form(max_length=4096)] = "",
    description: Annotated[str, Form(max_length=4096)] = "",
    event: Checked = None,
    enabled: Annotated[str, Form()] = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    endpoint = await webhooks.get_endpoint(session, principal, uid)
    values = _values(url, description, event, enabled)
    try:
        await webhooks.update_endpoint(
            session,
            runtime,
            principal,
            uid,
            url=url,
            description=description,
            events=values["events"],
            enabled=values["enabled"],
        )
    except (ValidationFailed, Conflict) as exc:
        return _form(request, principal, values, _errors(exc), endpoint=endpoint, status_code=400)
    return redirect_with_flash(request, f"{BASE_URL}/{uid}", "Webhook endpoint saved.")


async def rotate_secret(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    endpoint, secret = await webhooks.rotate_secret(session, runtime, principal, uid)
    return _secret_page(request, principal, endpoint, secret, created=False)


async def confirm_delete(
    request: Request, uid: str, principal: ConsolePrincipal, session: DbSession
) -> Response:
    require_tenant_admin(principal)
    endpoint = await webhooks.get_endpoint(session, principal, uid)
    return render(
        request, "webhooks/confirm_delete.html", _context(endpoint=endpoint), principal=principal
    )


async def delete_endpoint(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    endpoint = await webhooks.get_endpoint(session, principal, uid)
    url = endpoint.url
    await webhooks.delete_endpoint(session, principal, uid)
    return redirect_with_flash(request, BASE_URL, f"Webhook endpoint {url} deleted.")


async def resend_delivery(
    request: Request,
    uid: str,
    principal: ConsolePrincipal,
    session: DbSession,
    runtime: RuntimeDep,
    csrf_token: CsrfToken = "",
) -> Response:
    require_tenant_admin(principal)
    check_csrf(runtime, principal, csrf_token)
    try:
        delivery, event = await webhooks.resend_delivery(session, principal, uid)
    except Conflict as exc:
        found = await webhooks.get_delivery_endpoint_uid(session, principal, uid)
        return redirect_with_flash(request, f"{BASE_URL}/{found}", exc.message, "error")
    return redirect_with_flash(
        request,
        f"{BASE_URL}/{delivery.endpoint_uid}",
        f"Event {event.type} queued to be sent again.",
    )


router.add_api_route(BASE_URL, list_endpoints, methods=["GET"])
router.add_api_route(f"{BASE_URL}/new", new_endpoint_form, methods=["GET"])
router.add_api_route(f"{BASE_URL}/new", create_endpoint, methods=["POST"])
router.add_api_route(f"{BASE_URL}/deliveries/{{uid}}/resend", resend_delivery, methods=["POST"])
router.add_api_route(f"{BASE_URL}/{{uid}}", endpoint_detail, methods=["GET"])
router.add_api_route(f"{BASE_URL}/{{uid}}/edit", edit_endpoint_form, methods=["GET"])
router.add_api_route(f"{BASE_URL}/{{uid}}/edit", update_endpoint, methods=["POST"])
router.add_api_route(f"{BASE_URL}/{{uid}}/rotate-secret", rotate_secret, methods=["POST"])
router.add_api_route(f"{BASE_URL}/{{uid}}/delete", confirm_delete, methods=["GET"])
router.add_api_route(f"{BASE_URL}/{{uid}}/delete", delete_endpoint, methods=["POST"])
