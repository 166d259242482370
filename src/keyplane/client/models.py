"""Typed results of the client's methods."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class RateLimit(_Model):
    """At most ``limit`` uses per ``window_seconds``, counted by Keyplane across its
    instances. Without a ``name`` the server names it after the limit and window
    (``100/1s``)."""

    limit: int
    window_seconds: int
    name: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> RateLimit:
        return cls(limit=data["limit"], window_seconds=data["windowSeconds"], name=data.get("name"))

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"limit": self.limit, "windowSeconds": self.window_seconds}
        if self.name is not None:
            body["name"] = self.name
        return body


class CreditsRefill(_Model):
    """Credits topped back up to ``amount`` at 00:00 UTC every day, or every month on
    ``day`` (default 1; a shorter month refills on its last day)."""

    interval: Literal["daily", "monthly"]
    amount: int
    day: int | None = None

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"interval": self.interval, "amount": self.amount}
        if self.day is not None:
            body["day"] = self.day
        return body


class Credits(_Model):
    """Uses left: each valid verify spends its ``cost`` (default 1). ``next_refill_at`` is
    the server's, on keys read back; it is not sent."""

    remaining: int
    refill: CreditsRefill | None = None
    next_refill_at: datetime | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Credits:
        refill = data.get("refill")
        return cls(
            remaining=data["remaining"],
            refill=CreditsRefill(
                interval=refill["interval"], amount=refill["amount"], day=refill.get("day")
            )
            if refill
            else None,
            next_refill_at=data.get("nextRefillAt"),
        )

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"remaining": self.remaining}
        if self.refill is not None:
            body["refill"] = self.refill.to_api()
        return body


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
    # Restrictions (all None or empty on an unrestricted key, and from older servers).
    # ``scopes`` None: the key may do all its owner may do on Keyplane's API.
    scopes: list[str] | None = None
    permissions: list[str] = Field(default_factory=list)
    permission_roles: list[str] = Field(default_factory=list)
    # None: usable from anywhere.
    allowed_cidrs: list[str] | None = None
    rate_limits: list[RateLimit] = Field(default_factory=list)
    # None: unlimited uses.
    credits: Credits | None = None
    owner_id: str | None = None
    meta: dict[str, Any] | None = None
    # Whether the key carries a restriction (scopes, permissions, roles, address ranges,
    # rate limits or credits).
    restricted: bool = False
    # active, inactive (revoked), expired or rotated; None from older servers.
    state: str | None = None
    # Rotation: the key that replaced this one, the one it replaced, and when this one
    # stops working (None: not rotated).
    rotated_to: str | None = None
    rotated_from: str | None = None
    rotation_grace_ends_at: datetime | None = None
    # When its value was first reported as seen in public (None: never, or a tenant admin
    # re-activated it since, or an older server).
    leaked_at: datetime | None = None

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
            scopes=spec.get("scopes"),
            permissions=spec.get("permissions") or [],
            permission_roles=spec.get("permissionRoles") or [],
            allowed_cidrs=spec.get("allowedCidrs"),
            rate_limits=[RateLimit.from_api(limit) for limit in spec.get("rateLimits") or []],
            credits=Credits.from_api(spec["credits"]) if spec.get("credits") else None,
            owner_id=spec.get("ownerId"),
            meta=spec.get("meta"),
            restricted=status.get("restricted", False),
            state=status.get("state"),
            rotated_to=status.get("rotatedTo"),
            rotated_from=status.get("rotatedFrom"),
            rotation_grace_ends_at=status.get("rotationGraceEndsAt"),
            leaked_at=status.get("leakedAt"),
        )


class CreatedApiKey(_Model):
    """A new key. ``value`` exists only here: store it now. It is kept out of ``repr`` so
    that logging the object does not leak it."""

    uid: str
    value: str = Field(repr=False)


class RotatedApiKey(CreatedApiKey):
    """The new key of a rotation (``value``: store it now) and the old key's fate: it
    works until ``grace_ends_at``, then is refused with ``ApiKeyRotated``."""

    rotated_from: str
    grace_ends_at: datetime

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> RotatedApiKey:
        return cls(
            uid=data["uid"],
            value=data["apiKey"],
            rotated_from=data["rotatedFrom"],
            grace_ends_at=data["graceEndsAt"],
        )


# The fields of a policy a PUT sends, in the API's names.
_POLICY_API_NAMES = {
    "max_lifetime_days": "maxLifetimeDays",
    "default_lifetime_days": "defaultLifetimeDays",
    "expiry_required": "expiryRequired",
    "key_creation": "keyCreation",
    "allowed_cidrs": "allowedCidrs",
    "inactivity_days": "inactivityDays",
    "expiry_notice_days": "expiryNoticeDays",
    "leak_action": "leakAction",
}


class ApiKeyPolicy(_Model):
    """A tenant's API key policy. None: the server's lifetimes, no tenant-wide address
    ranges, no inactivity revocation. ``effective_*``: what is in force with the
    server's limits applied (read-only)."""

    max_lifetime_days: int | None = None
    default_lifetime_days: int | None = None
    expiry_required: bool = False
    key_creation: str = "everyone"
    allowed_cidrs: list[str] | None = None
    inactivity_days: int | None = None
    expiry_notice_days: list[int] = Field(default_factory=lambda: [7, 1])
    # What a report of a leaked key does to it: "revoke" or "flag".
    leak_action: str = "revoke"
    effective_max_lifetime_days: int | None = None
    effective_default_lifetime_days: int | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ApiKeyPolicy:
        values = {name: data.get(api) for name, api in _POLICY_API_NAMES.items()}
        values["expiry_required"] = bool(values["expiry_required"])
        values["key_creation"] = values["key_creation"] or "everyone"
        values["expiry_notice_days"] = values["expiry_notice_days"] or []
        values["leak_action"] = values["leak_action"] or "revoke"
        return cls(
            **values,
            effective_max_lifetime_days=data.get("effectiveMaxLifetimeDays"),
            effective_default_lifetime_days=data.get("effectiveDefaultLifetimeDays"),
        )

    def to_api(self) -> dict[str, Any]:
        return {api: getattr(self, name) for name, api in _POLICY_API_NAMES.items()}


class VerifiedRateLimit(_Model):
    """The key's tightest rate limit after a verify: ``remaining`` uses until ``reset_at``
    (on RATE_LIMITED, the moment a new call would be let through)."""

    name: str
    limit: int
    remaining: int
    reset_at: datetime


class KeyVerification(_Model):
    """Keyplane's answer about a key. ``code`` is VALID, or why not: REVOKED, EXPIRED,
    ROTATED, NOT_FOUND, USER_INACTIVE, MALFORMED, FORBIDDEN_ADDRESS, INSUFFICIENT_PERMISSIONS,
    RATE_LIMITED or USAGE_EXCEEDED (``keyplane.kit.key_refusals``)."""

    valid: bool
    code: str
    key_uid: str | None
    user_uid: str | None
    tenant_uid: str | None
    expires_at: datetime | None
    # The key's permissions, its roles' included.
    permissions: list[str] | None = None
    owner_id: str | None = None
    meta: dict[str, Any] | None = None
    # Credits left after this call; None: the key has no credits.
    remaining: int | None = None
    # None: the key has no rate limits.
    rate_limit: VerifiedRateLimit | None = None
    # INSUFFICIENT_PERMISSIONS: permissions that would satisfy the query.
    missing_permissions: list[str] | None = None

    @property
    def depends_on_the_call(self) -> bool:
        """Whether the answer was counted against the key (credits spent, a rate limit
        counted), so that the next call may be answered otherwise."""
        return self.remaining is not None or self.rate_limit is not None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> KeyVerification:
        limit = data.get("rateLimit")
        return cls(
            valid=data["valid"],
            code=data["code"],
            key_uid=data.get("keyUid"),
            user_uid=data.get("userUid"),
            tenant_uid=data.get("tenantUid"),
            expires_at=data.get("expiry"),
            permissions=data.get("permissions"),
            owner_id=data.get("ownerId"),
            meta=data.get("meta"),
            remaining=data.get("remaining"),
            rate_limit=VerifiedRateLimit(
                name=limit["name"],
                limit=limit["limit"],
                remaining=limit["remaining"],
                reset_at=limit["resetAt"],
            )
            if limit
            else None,
            missing_permissions=data.get("missingPermissions"),
        )


class Permission(_Model):
    """A permission name of the tenant (``invoices.read``), for keys and roles to carry."""

    uid: str
    name: str
    description: str
    created_at: datetime

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Permission:
        metadata = data["metadata"]
        return cls(
            uid=metadata["uid"],
            name=metadata["name"],
            description=(metadata.get("annotations") or {}).get("description") or "",
            created_at=metadata["creationTimestamp"],
        )


class PermissionRole(_Model):
    """A named bundle of the tenant's permissions; a key holding it has them all."""

    uid: str
    name: str
    description: str
    permissions: list[str]
    created_at: datetime
    modified_at: datetime

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> PermissionRole:
        metadata = data["metadata"]
        return cls(
            uid=metadata["uid"],
            name=metadata["name"],
            description=(metadata.get("annotations") or {}).get("description") or "",
            permissions=list((data.get("spec") or {}).get("permissions") or []),
            created_at=metadata["creationTimestamp"],
            modified_at=metadata["lastModifiedTimestamp"],
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


class WebhookEndpoint(_Model):
    """Where the tenant's events are POSTed, signed to the Standard Webhooks spec."""

    uid: str
    url: str
    description: str
    events: list[str]
    enabled: bool
    created_by_uid: str
    created_at: datetime
    modified_at: datetime
    failing_since: datetime | None = None
    disabled_reason: str | None = None
    # Only when the endpoint was just created or its secret rotated: shown that once.
    secret: str | None = Field(default=None, repr=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> WebhookEndpoint:
        return cls(
            uid=data["uid"],
            url=data["url"],
            description=data.get("description") or "",
            events=list(data.get("events") or []),
            enabled=bool(data["enabled"]),
            created_by_uid=data.get("createdByUid") or "",
            created_at=data["creationTimestamp"],
            modified_at=data["lastModifiedTimestamp"],
            failing_since=data.get("failingSince"),
            disabled_reason=data.get("disabledReason"),
            secret=data.get("secret"),
        )


class WebhookDelivery(_Model):
    """One event sent (or being sent) to one endpoint."""

    uid: str
    endpoint_uid: str
    event_uid: str
    event_type: str
    status: str
    attempts: int
    response_status: int | None = None
    duration_ms: int | None = None
    error: str | None = None
    created_at: datetime
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> WebhookDelivery:
        return cls(
            uid=data["uid"],
            endpoint_uid=data["endpointUid"],
            event_uid=data["eventUid"],
            event_type=data["eventType"],
            status=data["status"],
            attempts=data["attempts"],
            response_status=data.get("responseStatus"),
            duration_ms=data.get("durationMs"),
            error=data.get("error"),
            created_at=data["creationTimestamp"],
            last_attempt_at=data.get("lastAttemptTimestamp"),
            next_attempt_at=data.get("nextAttemptTimestamp"),
            finished_at=data.get("finishedTimestamp"),
        )
