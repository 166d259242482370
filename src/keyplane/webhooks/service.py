"""Webhook endpoints of a tenant, their signing secrets and their deliveries (tenant admins
only; a verifier is refused first, as everywhere).

An endpoint is a URL (checked by ``kit.outbound.check_url``: the same rule at
registration and, with a DNS lookup, again at every delivery), the event types it wants
and an enabled flag. Its signing secret (Standard Webhooks, ``webhooks.signing``) is
shown once, when the endpoint is created and when it is rotated, and kept sealed
(``kit.secretbox``). A rotation keeps the previous secret for ``ROTATION_OVERLAP``: both
sign every request meanwhile, so a receiver can switch without losing events.

Deliveries are written by ``outbox.enqueue`` in the transaction of the change; this
module lists them and resends one (a new delivery of the same event: the same
``webhook-id``, so a receiver that already has it can tell).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.audit import service as audit
from keyplane.audit.actions import Action, ResourceKind
from keyplane.auth import policy
from keyplane.auth.principal import Principal
from keyplane.events.types import ALL_EVENT_TYPES
from keyplane.kit.errors import Conflict, Forbidden, NotFound, ValidationFailed
from keyplane.kit.outbound import OutboundRefused, check_url
from keyplane.kit.secretbox import SecretBox, SecretBoxError
from keyplane.kit.time import as_utc, rfc3339, utcnow
from keyplane.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from keyplane.models.webhook import DeliveryStatus
from keyplane.runtime import Runtime
from keyplane.webhooks import repository, signing

MAX_ENDPOINTS = 20
MAX_DESCRIPTION = 1024
ROTATION_OVERLAP = timedelta(hours=24)
SECRET_PURPOSE = "webhook-signing-secret"  # noqa: S105 (a label, not a secret)
EVENT_TYPES = tuple(event.value for event in ALL_EVENT_TYPES)


def _require_tenant_admin(principal: Principal) -> None:
    policy.require_account_access(principal)
    if not principal.is_tenant_admin:
        raise Forbidden("Only tenant admins can see and manage webhooks.")


@cache
def _box(server_secret: bytes) -> SecretBox:
    return SecretBox(server_secret, SECRET_PURPOSE)


def secret_box(runtime: Runtime) -> SecretBox:
    return _box(runtime.secret_hasher.secret)


# --- the sealed signing secrets -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningSecrets:
    current: str
    previous: str | None = None
    previous_until: datetime | None = None

    def in_use(self, now: datetime) -> list[str]:
        """The secrets to sign with now: the current one, and the previous one during the
        overlap after a rotation."""
        if self.previous and self.previous_until and now < self.previous_until:
            return [self.current, self.previous]
        return [self.current]


def seal_secrets(box: SecretBox, secrets_: SigningSecrets) -> str:
    document: dict[str, Any] = {"current": secrets_.current}
    if secrets_.previous and secrets_.previous_until:
        document["previous"] = secrets_.previous
        document["previousUntil"] = rfc3339(secrets_.previous_until)
    return box.seal(json.dumps(document, separators=(",", ":")))


def open_secrets(box: SecretBox, sealed: str) -> SigningSecrets:
    document = json.loads(box.open(sealed))
    until = document.get("previousUntil")
    return SigningSecrets(
        current=document["current"],
        previous=document.get("previous"),
        previous_until=as_utc(datetime.fromisoformat(until)) if until else None,
    )


# --- checks -------------------------------------------------------------------------


def _checked_url(runtime: Runtime, url: str) -> str:
    try:
        target = check_url(url, allow_private=runtime.settings.webhook_allow_private_targets)
    except OutboundRefused as exc:
        raise ValidationFailed(
            str(exc), code="InvalidWebhookUrl", details={"field": "url", "reason": str(exc)}
        ) from exc
    return target.url


def _checked_events(events: Sequence[str]) -> list[str]:
    wanted = sorted(set(events))
    unknown = [event for event in wanted if event not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(
            f"Unknown event types: {', '.join(unknown)}. Known ones: {', '.join(EVENT_TYPES)}.",
            code="UnknownWebhookEvent",
            details={"field": "events", "unknown": unknown, "known": list(EVENT_TYPES)},
        )
    if not wanted:
        raise ValidationFailed(
            "Choose at least one event type.",
            code="UnknownWebhookEvent",
            details={"field": "events", "known": list(EVENT_TYPES)},
        )
    # In the catalogue's order, as the console lists them.
    return [event for event in EVENT_TYPES if event in wanted]


def _checked_description(description: str | None) -> str:
    text = (description or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise ValidationFailed(
            f"The description is longer than {MAX_DESCRIPTION} characters.",
            details={"field": "description"},
        )
    return text


def _not_found() -> NotFound:
    return NotFound("No such webhook endpoint.", code="WebhookEndpointNotFound")


def _change(old: Any, new: Any) -> dict[str, Any]:
    return {"old": old, "new": new}


# --- endpoints ----------------------------------------------------------------------


async def list_endpoints(session: AsyncSession, principal: Principal) -> list[WebhookEndpoint]:
    _require_tenant_admin(principal)
    return list(await repository.list_endpoints(session, principal))


async def get_endpoint(session: AsyncSession, principal: Principal, uid: str) -> WebhookEndpoint:
    _require_tenant_admin(principal)
    endpoint = await repository.get_endpoint(session, principal, uid)
    if endpoint is None:
        raise _not_found()
    return endpoint


async def create_endpoint(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    *,
    url: str,
    description: str | None,
    events: Sequence[str],
    enabled: bool = True,
) -> tuple[WebhookEndpoint, str]:
    """The new endpoint and its signing secret (shown this once)."""
    _require_tenant_admin(principal)
    checked_url = _checked_url(runtime, url)
    wanted = _checked_events(events)
    text = _checked_description(description)
    if await repository.count_endpoints(session, principal) >= MAX_ENDPOINTS:
        raise Conflict(
            f"This tenant already has {MAX_ENDPOINTS} webhook endpoints, the most it may "
            "have: delete one first.",
            code="WebhookEndpointLimitReached",
            details={"limit": MAX_ENDPOINTS},
        )
    secret = signing.new_secret()
    now = utcnow()
    endpoint = WebhookEndpoint(
        tenant_uid=principal.tenant_uid,
        url=checked_url,
        description=text,
        events=wanted,
        enabled=enabled,
        secret_encrypted=seal_secrets(secret_box(runtime), SigningSecrets(secret)),
        created_by_uid=principal.user_uid,
        created_at=now,
        modified_at=now,
    )
    session.add(endpoint)
    await session.flush()
    audit.record(
        session,
        principal,
        Action.WEBHOOK_ENDPOINT_CREATE,
        ResourceKind.WEBHOOK_ENDPOINT,
        endpoint.uid,
        endpoint.url,
        changes={
            "url": _change(None, endpoint.url),
            "events": _change(None, wanted),
            "enabled": _change(None, enabled),
            **({"description": _change(None, text)} if text else {}),
        },
    )
    return endpoint, secret


async def update_endpoint(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    uid: str,
    *,
    url: str,
    description: str | None,
    events: Sequence[str],
    enabled: bool,
) -> WebhookEndpoint:
    """Replaces the URL, description, events and enabled flag. Enabling an endpoint that
    was disabled for failing starts its health afresh."""
    _require_tenant_admin(principal)
    checked_url = _checked_url(runtime, url)
    wanted = _checked_events(events)
    text = _checked_description(description)
    endpoint = await repository.get_endpoint(session, principal, uid, for_update=True)
    if endpoint is None:
        raise _not_found()
    changes: dict[str, Any] = {}
    if checked_url != endpoint.url:
        changes["url"] = _change(endpoint.url, checked_url)
        endpoint.url = checked_url
    if text != endpoint.description:
        changes["description"] = _change(endpoint.description, text)
        endpoint.description = text
    if wanted != list(endpoint.events):
        changes["events"] = _change(list(endpoint.events), wanted)
        endpoint.events = wanted
    if enabled != endpoint.enabled:
        changes["enabled"] = _change(endpoint.enabled, enabled)
        endpoint.enabled = enabled
        if enabled:
            endpoint.failing_since = None
            endpoint.disabled_reason = None
    if not changes:
        return endpoint
    endpoint.modified_at = utcnow()
    await session.flush()
    audit.record(
        session,
        principal,
        Action.WEBHOOK_ENDPOINT_UPDATE,
        ResourceKind.WEBHOOK_ENDPOINT,
        endpoint.uid,
        endpoint.url,
        changes=changes,
    )
    return endpoint


async def delete_endpoint(session: AsyncSession, principal: Principal, uid: str) -> None:
    """Deletes the endpoint and its deliveries (pending ones are never sent)."""
    _require_tenant_admin(principal)
    endpoint = await repository.get_endpoint(session, principal, uid, for_update=True)
    if endpoint is None:
        raise _not_found()
    url = endpoint.url
    await session.delete(endpoint)
    await session.flush()
    audit.record(
        session,
        principal,
        Action.WEBHOOK_ENDPOINT_DELETE,
        ResourceKind.WEBHOOK_ENDPOINT,
        uid,
        url,
    )


async def rotate_secret(
    session: AsyncSession, runtime: Runtime, principal: Principal, uid: str
) -> tuple[WebhookEndpoint, str]:
    """A new signing secret (shown this once); the previous one still signs alongside it
    for ``ROTATION_OVERLAP``."""
    _require_tenant_admin(principal)
    endpoint = await repository.get_endpoint(session, principal, uid, for_update=True)
    if endpoint is None:
        raise _not_found()
    box = secret_box(runtime)
    now = utcnow()
    try:
        previous: str | None = open_secrets(box, endpoint.secret_encrypted).current
    except (SecretBoxError, ValueError, KeyError):
        # Sealed under another server secret: nothing to keep signing with.
        previous = None
    secret = signing.new_secret()
    endpoint.secret_encrypted = seal_secrets(
        box, SigningSecrets(secret, previous, now + ROTATION_OVERLAP if previous else None)
    )
    endpoint.modified_at = now
    await session.flush()
    audit.record(
        session,
        principal,
        Action.WEBHOOK_ENDPOINT_ROTATE_SECRET,
        ResourceKind.WEBHOOK_ENDPOINT,
        endpoint.uid,
        endpoint.url,
        message=f"the previous secret also signs until {rfc3339(now + ROTATION_OVERLAP)}"
        if previous
        else "",
    )
    return endpoint, secret


# --- deliveries ---------------------------------------------------------------------


async def list_deliveries(
    session: AsyncSession,
    principal: Principal,
    endpoint_uid: str,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[list[tuple[WebhookDelivery, WebhookEvent]], int]:
    """The endpoint's deliveries, newest first, each with its event; and how many."""
    await get_endpoint(session, principal, endpoint_uid)
    rows, total = await repository.list_deliveries(session, principal, endpoint_uid, offset, limit)
    return list(rows), total


async def get_delivery_endpoint_uid(session: AsyncSession, principal: Principal, uid: str) -> str:
    """The endpoint a delivery of the caller's tenant went to."""
    _require_tenant_admin(principal)
    found = await repository.get_delivery(session, principal, uid)
    if found is None:
        raise NotFound("No such webhook delivery.", code="WebhookDeliveryNotFound")
    return found[0].endpoint_uid


async def resend_delivery(
    session: AsyncSession, principal: Principal, uid: str
) -> tuple[WebhookDelivery, WebhookEvent]:
    """A new pending delivery of the same event to the same endpoint, due at once."""
    _require_tenant_admin(principal)
    found = await repository.get_delivery(session, principal, uid)
    if found is None:
        raise NotFound("No such webhook delivery.", code="WebhookDeliveryNotFound")
    delivery, event = found
    endpoint = await repository.get_endpoint(session, principal, delivery.endpoint_uid)
    if endpoint is None:
        raise _not_found()
    if not endpoint.enabled:
        raise Conflict(
            "This webhook endpoint is disabled: enable it first.",
            code="WebhookEndpointDisabled",
        )
    now = utcnow()
    resent = WebhookDelivery(
        tenant_uid=delivery.tenant_uid,
        endpoint_uid=delivery.endpoint_uid,
        event_uid=delivery.event_uid,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(resent)
    await session.flush()
    audit.record(
        session,
        principal,
        Action.WEBHOOK_ENDPOINT_UPDATE,
        ResourceKind.WEBHOOK_ENDPOINT,
        endpoint.uid,
        endpoint.url,
        message=f"event {event.uid} ({event.type}) resent",
    )
    return resent, event
