"""Webhook endpoint and delivery bodies (camelCase, as the rest of the API).

Keyplane's own resource (Palette has no webhooks): a flat body. URLs, event types and
descriptions are checked by the service (one rule for the API, the console and the CLI);
the bodies only bound their size here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from keyplane.kit.pagination import ListResponse
from keyplane.kit.schemas import PaletteModel, Rfc3339
from keyplane.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

_EVENTS_DESCRIPTION = (
    "Event types wanted: apiKey.created, apiKey.updated, apiKey.revoked, "
    "apiKey.reactivated, apiKey.rotated, apiKey.deleted, apiKey.expiringSoon, "
    "apiKey.expired, apiKey.restrictedByPolicy, apiKey.leaked, user.created, "
    "user.deactivated, user.deleted."
)


class WebhookEndpointWrite(PaletteModel):
    """Creates an endpoint, or replaces one (PUT: every field)."""

    url: str = Field(max_length=4096, description="http(s) URL events are POSTed to.")
    description: str = Field(default="", max_length=4096)
    events: list[Annotated[str, StringConstraints(max_length=128)]] = Field(
        max_length=100, description=_EVENTS_DESCRIPTION
    )
    enabled: bool = True


class WebhookEndpointRead(PaletteModel):
    uid: str
    url: str
    description: str
    events: list[str]
    enabled: bool
    created_by_uid: str
    creation_timestamp: Rfc3339
    last_modified_timestamp: Rfc3339
    # Since when every delivery has failed (absent: the last one succeeded).
    failing_since: Rfc3339 | None = None
    disabled_reason: str | None = None


class WebhookEndpointCreated(WebhookEndpointRead):
    """The one answer that carries the signing secret (creation and rotation)."""

    secret: str = Field(description="The Standard Webhooks signing secret (whsec_...).")


class WebhookEndpointList(ListResponse):
    items: list[WebhookEndpointRead]


class WebhookDeliveryRead(PaletteModel):
    uid: str
    endpoint_uid: str
    event_uid: str = Field(description="The webhook-id header of every attempt.")
    event_type: str
    status: str = Field(description="pending, succeeded or failed.")
    attempts: int
    response_status: int | None = None
    duration_ms: int | None = None
    error: str | None = None
    creation_timestamp: Rfc3339
    last_attempt_timestamp: Rfc3339 | None = None
    next_attempt_timestamp: Rfc3339 | None = None
    finished_timestamp: Rfc3339 | None = None


class WebhookDeliveryList(ListResponse):
    items: list[WebhookDeliveryRead]


def endpoint_read(endpoint: WebhookEndpoint) -> WebhookEndpointRead:
    return WebhookEndpointRead(**_endpoint_fields(endpoint))


def endpoint_created(endpoint: WebhookEndpoint, secret: str) -> WebhookEndpointCreated:
    return WebhookEndpointCreated(**_endpoint_fields(endpoint), secret=secret)


def _endpoint_fields(endpoint: WebhookEndpoint) -> dict[str, object]:
    return {
        "uid": endpoint.uid,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "created_by_uid": endpoint.created_by_uid,
        "creation_timestamp": endpoint.created_at,
        "last_modified_timestamp": endpoint.modified_at,
        "failing_since": endpoint.failing_since,
        "disabled_reason": endpoint.disabled_reason,
    }


def delivery_read(delivery: WebhookDelivery, event: WebhookEvent) -> WebhookDeliveryRead:
    pending = delivery.status == "pending"
    next_at: datetime | None = delivery.next_attempt_at if pending else None
    return WebhookDeliveryRead(
        uid=delivery.uid,
        endpoint_uid=delivery.endpoint_uid,
        event_uid=event.uid,
        event_type=event.type,
        status=delivery.status,
        attempts=delivery.attempts,
        response_status=delivery.response_status,
        duration_ms=delivery.duration_ms,
        error=delivery.error,
        creation_timestamp=delivery.created_at,
        last_attempt_timestamp=delivery.last_attempt_at,
        next_attempt_timestamp=next_at,
        finished_timestamp=delivery.finished_at,
    )
