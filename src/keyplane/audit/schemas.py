"""Palette's ``v1Audits`` shape. Keyplane's own details ride in ``metadata.annotations``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from keyplane.kit.pagination import ListResponse
from keyplane.kit.schemas import PaletteModel, Rfc3339
from keyplane.models import AuditEvent


class AuditMetadata(PaletteModel):
    uid: str
    creation_timestamp: Rfc3339
    annotations: dict[str, str]


class AuditUser(PaletteModel):
    uid: str
    email_id: str
    first_name: str
    last_name: str
    org: str


class AuditActor(PaletteModel):
    actor_type: Literal["user", "system", "service"]
    user: AuditUser | None = None


class AuditResource(PaletteModel):
    kind: str
    uid: str
    name: str
    label: str


class AuditChange(PaletteModel):
    old: Any = None
    new: Any = None


class AuditSpec(PaletteModel):
    action_msg: str
    action_type: str
    actor: AuditActor
    content_msg: str
    resource: AuditResource
    user_msg: str
    changes: dict[str, AuditChange] | None = Field(
        default=None,
        description="What the change changed, by field (Keyplane's addition; e.g. a key's "
        "scopes, permissions, address ranges, rate limits and credits).",
    )


class AuditRead(PaletteModel):
    metadata: AuditMetadata
    spec: AuditSpec


class AuditList(ListResponse):
    """Palette's ``v1Audits``."""

    items: list[AuditRead]


def audit_read(event: AuditEvent, org: str) -> AuditRead:
    user = (
        AuditUser(
            uid=event.actor_user_uid,
            email_id=event.actor_email,
            first_name=event.actor_first_name,
            last_name=event.actor_last_name,
            org=org,
        )
        if event.actor_user_uid
        else None
    )
    action_msg = f"{event.action} {event.resource_kind} {event.resource_name}".strip()
    if event.outcome != "success":
        action_msg += f" ({event.outcome})"
    return AuditRead(
        metadata=AuditMetadata(
            uid=event.uid,
            creation_timestamp=event.occurred_at,
            annotations={
                "action": event.action,
                "outcome": event.outcome,
                "clientAddress": event.client_address,
                "authMethod": event.auth_method,
            },
        ),
        spec=AuditSpec(
            action_msg=action_msg,
            action_type=event.action_type,
            actor=AuditActor(
                actor_type="system" if event.actor_type == "system" else "user", user=user
            ),
            content_msg=event.message,
            resource=AuditResource(
                kind=event.resource_kind,
                uid=event.resource_uid,
                name=event.resource_name,
                label=event.resource_name,
            ),
            user_msg=event.message,
            changes=(
                {name: AuditChange(**change) for name, change in event.changes.items()}
                if event.changes
                else None
            ),
        ),
    )
