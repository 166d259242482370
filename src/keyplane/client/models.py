"""Typed results of the client's methods."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class ApiKey(_Model):
    uid: str
    name: str
    description: str
    expires_at: datetime
    is_active: bool
    is_expired: bool
    user_uid: str
    user_email: str
    user_name: str
    created_at: datetime
    modified_at: datetime
    last_used_at: datetime | None
    # The key's last 4 characters, to tell keys apart (shown as ``kp_…abcd``); None for
    # keys created before the server kept them, or from servers that do not send them.
    key_hint: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ApiKey:
        metadata, spec, status = data["metadata"], data["spec"], data["status"]
        user = spec["user"]
        name = " ".join(part for part in (user.get("firstName"), user.get("lastName")) if part)
        return cls(
            uid=metadata["uid"],
            name=metadata["name"],
            description=(metadata.get("annotations") or {}).get("description", ""),
            expires_at=spec["expiry"],
            is_active=status["isActive"],
            is_expired=status.get("isExpired", False),
            user_uid=user["uid"],
            user_email=user.get("emailId", ""),
            user_name=name or user.get("emailId", ""),
            created_at=metadata["creationTimestamp"],
            modified_at=metadata["lastModifiedTimestamp"],
            last_used_at=status.get("lastUsedTimestamp"),
            key_hint=status.get("keyHint"),
        )


class CreatedApiKey(_Model):
    """A new key. ``value`` exists only here: store it now. It is kept out of ``repr`` so
    that logging the object does not leak it."""

    uid: str
    value: str = Field(repr=False)


class KeyVerification(_Model):
    valid: bool
    code: str
    key_uid: str | None
    user_uid: str | None
    tenant_uid: str | None
    expires_at: datetime | None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> KeyVerification:
        return cls(
            valid=data["valid"],
            code=data["code"],
            key_uid=data.get("keyUid"),
            user_uid=data.get("userUid"),
            tenant_uid=data.get("tenantUid"),
            expires_at=data.get("expiry"),
        )


class UserInfo(_Model):
    org_name: str
    tenant_uid: str
    user_uid: str


class User(_Model):
    uid: str
    email: str
    first_name: str
    last_name: str
    role: str
    is_active: bool
    created_at: datetime
    last_sign_in_at: datetime | None

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or self.email

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> User:
        metadata, spec, status = data["metadata"], data["spec"], data["status"]
        roles = spec.get("roles") or ["user"]
        return cls(
            uid=metadata["uid"],
            email=spec["emailId"],
            first_name=spec.get("firstName", ""),
            last_name=spec.get("lastName", ""),
            role=roles[0],
            is_active=status["isActive"],
            created_at=metadata["creationTimestamp"],
            last_sign_in_at=status.get("lastSignIn"),
        )


class ResourceLimit(_Model):
    kind: str
    limit: int
    max_limit: int


class AuditEvent(_Model):
    uid: str
    occurred_at: datetime
    action: str
    action_type: str
    outcome: str
    actor_uid: str | None
    actor_email: str
    resource_kind: str
    resource_uid: str
    resource_name: str
    client_address: str
    message: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> AuditEvent:
        metadata, spec = data["metadata"], data["spec"]
        annotations = metadata.get("annotations") or {}
        user = (spec.get("actor") or {}).get("user") or {}
        resource = spec.get("resource") or {}
        return cls(
            uid=metadata["uid"],
            occurred_at=metadata["creationTimestamp"],
            action=annotations.get("action", ""),
            action_type=spec.get("actionType", ""),
            outcome=annotations.get("outcome", ""),
            actor_uid=user.get("uid"),
            actor_email=user.get("emailId", ""),
            resource_kind=resource.get("kind", ""),
            resource_uid=resource.get("uid", ""),
            resource_name=resource.get("name", ""),
            client_address=annotations.get("clientAddress", ""),
            message=spec.get("userMsg", ""),
        )
