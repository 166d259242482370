"""A tenant's webhook endpoints and their deliveries (tenant admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from keyplane.auth.dependencies import CurrentPrincipal
from keyplane.kit.db import DbSession
from keyplane.kit.pagination import PageRequest, list_meta, page_request, resolve_limit
from keyplane.runtime import RuntimeDep
from keyplane.webhooks import service
from keyplane.webhooks.schemas import (
    WebhookDeliveryList,
    WebhookDeliveryRead,
    WebhookEndpointCreated,
    WebhookEndpointList,
    WebhookEndpointRead,
    WebhookEndpointWrite,
    delivery_read,
    endpoint_created,
    endpoint_read,
)

router = APIRouter(tags=["webhooks"])

Uid = Annotated[str, Path(max_length=64)]
Page = Annotated[PageRequest, Depends(page_request)]


@router.get(
    "/v1/webhooks/endpoints",
    response_model=WebhookEndpointList,
    operation_id="v1WebhookEndpointsList",
)
async def list_endpoints(principal: CurrentPrincipal, session: DbSession) -> WebhookEndpointList:
    """The tenant's webhook endpoints (at most 20), oldest first."""
    endpoints = await service.list_endpoints(session, principal)
    return WebhookEndpointList(items=[endpoint_read(endpoint) for endpoint in endpoints])


@router.post(
    "/v1/webhooks/endpoints",
    status_code=201,
    response_model=WebhookEndpointCreated,
    operation_id="v1WebhookEndpointsCreate",
)
async def create_endpoint(
    body: WebhookEndpointWrite, principal: CurrentPrincipal, session: DbSession, runtime: RuntimeDep
) -> WebhookEndpointCreated:
    """Register an endpoint. The answer carries its signing secret: the only time it is
    shown (rotate it to get a new one)."""
    endpoint, secret = await service.create_endpoint(
        session,
        runtime,
        principal,
        url=body.url,
        description=body.description,
        events=body.events,
        enabled=body.enabled,
    )
    return endpoint_created(endpoint, secret)


@router.get(
    "/v1/webhooks/endpoints/{uid}",
    response_model=WebhookEndpointRead,
    operation_id="v1WebhookEndpointsUidGet",
)
async def get_endpoint(
    uid: Uid, principal: CurrentPrincipal, session: DbSession
) -> WebhookEndpointRead:
    return endpoint_read(await service.get_endpoint(session, principal, uid))


@router.put(
    "/v1/webhooks/endpoints/{uid}",
    response_model=WebhookEndpointRead,
    operation_id="v1WebhookEndpointsUidUpdate",
)
async def update_endpoint(
    uid: Uid,
    body: WebhookEndpointWrite,
    principal: CurrentPrincipal,
    session: DbSession,
    runtime: RuntimeDep,
) -> WebhookEndpointRead:
    """Replace the URL, description, events and enabled flag. Enabling an endpoint
    disabled for failing starts its health afresh."""
    endpoint = await service.update_endpoint(
        session,
        runtime,
        principal,
        uid,
        url=body.url,
        description=body.description,
        events=body.events,
        enabled=body.enabled,
    )
    return endpoint_read(endpoint)


@router.delete(
    "/v1/webhooks/endpoints/{uid}", status_code=204, operation_id="v1WebhookEndpointsUidDelete"
)
async def delete_endpoint(uid: Uid, principal: CurrentPrincipal, session: DbSession) -> Response:
    """Delete the endpoint and its deliveries."""
    await service.delete_endpoint(session, principal, uid)
    return Response(status_code=204)


@router.post(
    "/v1/webhooks/endpoints/{uid}/rotateSecret",
    response_model=WebhookEndpointCreated,
    operation_id="v1WebhookEndpointsUidRotateSecret",
)
async def rotate_secret(
    uid: Uid, principal: CurrentPrincipal, session: DbSession, runtime: RuntimeDep
) -> WebhookEndpointCreated:
    """A new signing secret, shown this once. The previous one keeps signing alongside it
    for 24 hours (two signatures in ``webhook-signature``), so receivers can switch."""
    endpoint, secret = await service.rotate_secret(session, runtime, principal, uid)
    return endpoint_created(endpoint, secret)


@router.get(
    "/v1/webhooks/endpoints/{uid}/deliveries",
    response_model=WebhookDeliveryList,
    operation_id="v1WebhookEndpointsUidDeliveries",
)
async def list_deliveries(
    uid: Uid, principal: CurrentPrincipal, session: DbSession, runtime: RuntimeDep, page: Page
) -> WebhookDeliveryList:
    """The endpoint's deliveries, newest first, a page at a time (``limit``, default the
    server's page size; ``offset`` or ``continue``)."""
    settings = runtime.settings
    # Always paged: an endpoint's deliveries grow without bound.
    limit = resolve_limit(page, settings.page_default_limit, settings.page_max_limit)
    limit = settings.page_default_limit if limit is None else limit
    rows, total = await service.list_deliveries(session, principal, uid, page.offset, limit)
    items = [delivery_read(delivery, event) for delivery, event in rows]
    return WebhookDeliveryList(items=items, listmeta=list_meta(page, limit, len(items), total))


@router.post(
    "/v1/webhooks/deliveries/{uid}/resend",
    status_code=201,
    response_model=WebhookDeliveryRead,
    operation_id="v1WebhookDeliveriesUidResend",
)
async def resend_delivery(
    uid: Uid, principal: CurrentPrincipal, session: DbSession
) -> WebhookDeliveryRead:
    """A new delivery of the same event (same ``webhook-id``), sent by the next worker run."""
    delivery, event = await service.resend_delivery(session, principal, uid)
    return delivery_read(delivery, event)
