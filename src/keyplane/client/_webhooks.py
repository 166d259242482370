"""The webhook calls, as ``_core`` builds the others: I/O-free, shared by both clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from keyplane.client._core import PAGE_SIZE, Call, Page, _nothing, _page_parser
from keyplane.client.models import WebhookDelivery, WebhookEndpoint

ENDPOINTS = "/v1/webhooks/endpoints"


def _endpoint(response: httpx.Response) -> WebhookEndpoint:
    return WebhookEndpoint.from_api(response.json())


def _body(url: str, events: Sequence[str], description: str, enabled: bool) -> dict[str, Any]:
    return {"url": url, "events": list(events), "description": description, "enabled": enabled}


def list_endpoints() -> Call[Page[WebhookEndpoint]]:
    return Call("GET", ENDPOINTS, _page_parser(WebhookEndpoint.from_api))


def get_endpoint(uid: str) -> Call[WebhookEndpoint]:
    return Call("GET", f"{ENDPOINTS}/{uid}", _endpoint)


def create_endpoint(
    url: str, events: Sequence[str], description: str, enabled: bool
) -> Call[WebhookEndpoint]:
    return Call(
        "POST",
        ENDPOINTS,
        _endpoint,
        json=_body(url, events, description, enabled),
        idempotent=False,
    )


def replace_endpoint(
    uid: str, url: str, events: Sequence[str], description: str, enabled: bool
) -> Call[WebhookEndpoint]:
    return Call(
        "PUT", f"{ENDPOINTS}/{uid}", _endpoint, json=_body(url, events, description, enabled)
    )


def delete_endpoint(uid: str) -> Call[None]:
    return Call("DELETE", f"{ENDPOINTS}/{uid}", _nothing)


def rotate_secret(uid: str) -> Call[WebhookEndpoint]:
    # Not repeated on a lost answer: a second rotation would replace the secret unseen.
    return Call("POST", f"{ENDPOINTS}/{uid}/rotateSecret", _endpoint, idempotent=False)


def list_deliveries_page(
    uid: str, offset: int, limit: int = PAGE_SIZE
) -> Call[Page[WebhookDelivery]]:
    return Call(
        "GET",
        f"{ENDPOINTS}/{uid}/deliveries",
        _page_parser(WebhookDelivery.from_api),
        params={"offset": offset, "limit": limit},
    )


def resend_delivery(uid: str) -> Call[WebhookDelivery]:
    return Call(
        "POST",
        f"/v1/webhooks/deliveries/{uid}/resend",
        lambda response: WebhookDelivery.from_api(response.json()),
        idempotent=False,
    )
