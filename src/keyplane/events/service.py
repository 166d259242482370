"""``emit``: the one call a service makes when something worth telling happened. Part of
the caller's transaction, like the audit record: the outbox rows exist exactly when the
change does, so a crash between commit and delivery loses nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from keyplane.auth.principal import AuthMethod, Principal
from keyplane.events.types import EventType
from keyplane.kit.time import rfc3339, utcnow
from keyplane.models import ApiKey, User
from keyplane.notifications import service as notifications
from keyplane.webhooks import outbox


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    principal: Principal
    occurred_at: datetime
    api_key: ApiKey | None = None
    # The key's owner for key events; the user for user events.
    user: User | None = None
    # Why, when Keyplane acted on its own ("inactivity", "policy"), and any other facts
    # of the event (never a key value).
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def acted_by_owner(self) -> bool:
        return self.user is not None and self.principal.user_uid == self.user.uid

    def payload(self) -> dict[str, Any]:
        """The Standard Webhooks body: ``{"type", "timestamp", "data"}``."""
        data: dict[str, Any] = {
            "tenant": {"uid": self.principal.tenant_uid, "name": self.principal.tenant_name},
            "actor": _actor(self.principal),
        }
        if self.api_key is not None:
            data["apiKey"] = _key(self.api_key, self.occurred_at)
        if self.user is not None:
            data["user"] = _user(self.user)
        if self.reason is not None:
            data["reason"] = self.reason
        data.update(self.extra)
        return {"type": self.type.value, "timestamp": rfc3339(self.occurred_at), "data": data}


def _actor(principal: Principal) -> dict[str, Any]:
    if principal.method is AuthMethod.SYSTEM:
        return {"kind": "system", "uid": "", "email": "", "name": "Keyplane"}
    return {
        "kind": "user",
        "uid": principal.user_uid,
        "email": principal.email,
        "name": principal.display_name,
        "authMethod": principal.method.value,
    }


def _key(key: ApiKey, now: datetime) -> dict[str, Any]:
    return {
        "uid": key.uid,
        "name": key.name,
        "userUid": key.user_uid,
        # The value's last characters (checksum, not secret): how people tell keys apart.
        "hint": key.key_hint,
        "state": key.state(now).value,
        "expiresAt": rfc3339(key.expires_at),
    }


def _user(user: User) -> dict[str, Any]:
    return {
        "uid": user.uid,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "isActive": user.is_active,
    }


async def emit(
    session: AsyncSession,
    principal: Principal,
    type: EventType,
    *,
    api_key: ApiKey | None = None,
    user: User | None = None,
    reason: str | None = None,
    extra: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> Event:
    event = Event(
        type=type,
        principal=principal,
        occurred_at=occurred_at or utcnow(),
        api_key=api_key,
        user=user,
        reason=reason,
        extra=extra or {},
    )
    await outbox.enqueue(session, event)
    await notifications.on_event(session, event)
    return event
