"""Palette's API key shapes (``v1ApiKey``, ``v1ApiKeyEntity``, ``v1ApiKeyUpdate``, ...).

Responses add a few read-only fields Palette clients ignore: ``spec.user.emailId`` and
``status.isExpired`` / ``status.lastUsedTimestamp`` / ``status.keyHint``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)

from keyplane.api_keys.restrictions import Credits, default_rate_limit_name, of_key
from keyplane.auth.scopes import Scope
from keyplane.kit.cidr import MAX_RANGES
from keyplane.kit.credits import MAX_CREDITS, Refill, RefillInterval, next_refill_at
from keyplane.kit.pagination import ListResponse
from keyplane.kit.schemas import ObjectMeta, PaletteModel, Rfc3339
from keyplane.kit.shared_limits import RateLimit
from keyplane.kit.validation import Description, ExternalId, Name, SmallJsonDocument
from keyplane.models import ApiKey, User

if TYPE_CHECKING:
    pass

MAX_RATE_LIMIT = 1_000_000_000
MAX_WINDOW_SECONDS = 31 * 24 * 3600
MAX_KEY_RATE_LIMITS = 10
MAX_KEY_PERMISSIONS = 100
MAX_KEY_ROLES = 20

PermissionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
RateLimitName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")]

EXPIRY_DESCRIPTION = (
    "RFC 3339 time with an offset, in the future; omitted means the tenant policy's default "
    "lifetime (30 days unless the policy or the server says otherwise)."
)


class ApiKeyAnnotations(PaletteModel):
    description: Description | None = None


class ApiKeyMetadataEntity(PaletteModel):
    name: Name
    annotations: ApiKeyAnnotations = Field(default_factory=ApiKeyAnnotations)


class RateLimitSpec(PaletteModel):
    name: RateLimitName | None = Field(
        default=None, description="Omitted: named after the limit and window, e.g. 10/1s."
    )
    limit: int = Field(ge=1, le=MAX_RATE_LIMIT, description="Requests allowed per window.")
    window_seconds: int = Field(
        ge=1, le=MAX_WINDOW_SECONDS, description="The window, in seconds (up to 31 days)."
    )


class CreditsRefillSpec(PaletteModel):
    interval: Literal["daily", "monthly"] = Field(
        description="daily: at 00:00 UTC; monthly: at 00:00 UTC on `day`."
    )
    amount: int = Field(ge=1, le=MAX_CREDITS, description="Remaining uses after a refill.")
    day: int | None = Field(
        default=None,
        ge=1,
        le=31,
        description="monthly: day of the month (a shorter month refills on its last day); "
        "default 1.",
    )


class CreditsSpec(PaletteModel):
    remaining: int = Field(ge=0, le=MAX_CREDITS, description="Uses left; each verify spends.")
    refill: CreditsRefillSpec | None = None


class ApiKeyRestrictionsSpec(PaletteModel):
    """What makes a key narrower than its owner (all optional: a key without any behaves
    as before). On create, omitted or null means unrestricted; on update, omitted keeps
    the current value and null removes the restriction."""

    scopes: list[Scope] | None = Field(
        default=None,
        max_length=32,
        description="Operations on Keyplane's API this key may call (see the scope "
        "catalogue); null: everything its owner may do.",
    )
    permissions: list[PermissionName] | None = Field(
        default=None,
        max_length=MAX_KEY_PERMISSIONS,
        description="The tenant's own permission names, returned by verify.",
    )
    permission_roles: list[PermissionName] | None = Field(
        default=None, max_length=MAX_KEY_ROLES, description="The tenant's permission roles."
    )
    allowed_cidrs: list[str] | None = Field(
        default=None,
        max_length=MAX_RANGES,
        description="CIDR ranges (IPv4 or IPv6) the key may be used from; null: anywhere.",
    )
    rate_limits: list[RateLimitSpec] | None = Field(
        default=None, max_length=MAX_KEY_RATE_LIMITS, description="Enforced across instances."
    )
    credits: CreditsSpec | None = Field(
        default=None, description="Remaining uses, spent by verify; null: unlimited."
    )
    owner_id: ExternalId | None = Field(
        default=None, description="Your own id for the key's customer; returned by verify."
    )
    meta: SmallJsonDocument | None = Field(
        default=None,
        description="A JSON object (at most 4 KiB, 5 levels) returned by verify.",
    )


def restriction_changes(spec: ApiKeyRestrictionsSpec) -> dict[str, Any]:
    """The restrictions a body sets, in ``api_keys.restrictions`` terms: a field left out
    is not there; a null is None (on update: remove that restriction)."""
    found: dict[str, Any] = {}
    for name in spec.model_fields_set & set(ApiKeyRestrictionsSpec.model_fields):
        value = getattr(spec, name)
        if name == "rate_limits" and value is not None:
            value = [
                RateLimit(
                    limit.name or default_rate_limit_name(limit.limit, limit.window_seconds),
                    limit.limit,
                    limit.window_seconds,
                )
                for limit in value
            ]
        elif name == "credits" and value is not None:
            refill = value.refill
            value = Credits(
                value.remaining,
                Refill(RefillInterval(refill.interval), refill.amount, refill.day or 1)
                if refill is not None
                else None,
            )
        found[name] = value
    return found


class ApiKeySpecEntity(ApiKeyRestrictionsSpec):
    expiry: AwareDatetime | None = Field(default=None, description=EXPIRY_DESCRIPTION)
    user_uid: str | None = Field(
        default=None,
        max_length=64,
        description="Owner of the key; omitted (or the tenant's uid) means the caller.",
    )


class ApiKeyCreate(PaletteModel):
    """Palette's ``v1ApiKeyEntity``."""

    metadata: ApiKeyMetadataEntity
    spec: ApiKeySpecEntity = Field(default_factory=ApiKeySpecEntity)


class ApiKeyCreated(PaletteModel):
    """Palette's ``v1ApiKeyCreateResponse``: the only response that carries the value."""

    api_key: str
    uid: str


class ApiKeyRotate(PaletteModel):
    """Keyplane's rotation request (``POST /v1/apiKeys/{uid}/rotate``)."""

    grace_period_seconds: StrictInt = Field(
        default=0,
        ge=0,
        description="How long the old key keeps working (never past its expiry): 0 stops it "
        "at once; at most KEYPLANE_ROTATION_MAX_GRACE_SECONDS (7 days by default).",
    )


class ApiKeyRotated(ApiKeyCreated):
    """The new key's value and uid (shown once, like create's), and the old key's fate."""

    rotated_from: str = Field(description="The old key's uid.")
    grace_ends_at: Rfc3339 = Field(description="When the old key stops working.")


class ApiKeyMetadataUpdate(PaletteModel):
    name: Name | None = None
    annotations: ApiKeyAnnotations | None = None


class ApiKeySpecUpdate(ApiKeyRestrictionsSpec):
    expiry: AwareDatetime | None = Field(default=None, description=EXPIRY_DESCRIPTION)


class ApiKeyUpdate(PaletteModel):
    """Palette's ``v1ApiKeyUpdate``; fields left out keep their value."""

    metadata: ApiKeyMetadataUpdate = Field(default_factory=ApiKeyMetadataUpdate)
    spec: ApiKeySpecUpdate = Field(default_factory=ApiKeySpecUpdate)


class ApiKeyActiveState(PaletteModel):
    """Palette's ``v1ApiKeyActiveState``: false revokes, true re-activates."""

    is_active: StrictBool


class ApiKeyUser(PaletteModel):
    uid: str
    first_name: str
    last_name: str
    email_id: str


class CreditsRead(CreditsSpec):
    next_refill_at: Rfc3339 | None = None


class ApiKeySpec(PaletteModel):
    expiry: Rfc3339
    user: ApiKeyUser
    # Keyplane's additions (restrictions); Palette clients ignore them.
    scopes: list[str] | None = None
    permissions: list[str] = Field(default_factory=list)
    permission_roles: list[str] = Field(default_factory=list)
    allowed_cidrs: list[str] | None = None
    rate_limits: list[RateLimitSpec] = Field(default_factory=list)
    credits: CreditsRead | None = None
    owner_id: str | None = None
    meta: dict[str, Any] | None = None


class ApiKeyLeakRead(PaletteModel):
    """One sighting of a key's value, as its reporter told it (never the value)."""

    reporter: Literal["report", "github"]
    url: str
    source: str
    reported_at: Rfc3339


class ApiKeyStatus(PaletteModel):
    is_active: bool
    is_expired: bool
    last_used_timestamp: Rfc3339 | None = None
    key_hint: str | None = Field(
        default=None,
        description="The key's last 4 characters (shown as kp_…abcd), to tell keys apart; "
        "null for keys created before Keyplane kept them.",
    )
    restricted: bool = Field(
        default=False,
        description="Whether the key carries any restriction (scopes, permissions, "
        "address ranges, rate limits or credits).",
    )
    # Keyplane's additions for rotation (api_keys.rotation); Palette clients ignore them.
    state: Literal["active", "inactive", "expired", "rotated"] | None = Field(
        default=None,
        description="active, inactive (revoked), expired, or rotated (replaced by a "
        "rotation whose grace period has ended).",
    )
    rotated_to: str | None = Field(
        default=None, description="The uid of the key that replaced this one by a rotation."
    )
    rotated_from: str | None = Field(
        default=None, description="The uid of the key this one replaced by a rotation."
    )
    rotation_grace_ends_at: Rfc3339 | None = Field(
        default=None,
        description="When this rotated key stops working (ApiKeyRotated from then on).",
    )
    # Keyplane's additions for leaked keys (api_keys.leaks).
    leaked_at: Rfc3339 | None = Field(
        default=None,
        description="When the key's value was first reported as seen in public; null: never, "
        "or a tenant admin re-activated it since (its sightings stay in leaks).",
    )
    leaks: list[ApiKeyLeakRead] | None = Field(
        default=None,
        description="The newest sightings of the key's value (at most 20, newest first); "
        "only in GET /v1/apiKeys/{uid}, null in lists.",
    )


class ApiKeyRead(PaletteModel):
    """Palette's ``v1ApiKey``."""

    metadata: ObjectMeta
    spec: ApiKeySpec
    status: ApiKeyStatus


class ApiKeyList(ListResponse):
    """Palette's ``v1ApiKeys``."""

    items: list[ApiKeyRead]


def api_key_read(
    key: ApiKey, owner: User, now: datetime, leaks: list[ApiKeyLeakRead] | None = None
) -> ApiKeyRead:
    restrictions = of_key(key)
    credits = restrictions.credits
    refill = credits.refill if credits else None
    return ApiKeyRead(
        metadata=ObjectMeta(
            uid=key.uid,
            name=key.name,
            annotations={"description": key.description},
            creation_timestamp=key.created_at,
            last_modified_timestamp=key.modified_at,
        ),
        spec=ApiKeySpec(
            expiry=key.expires_at,
            user=ApiKeyUser(
                uid=owner.uid,
                first_name=owner.first_name,
                last_name=owner.last_name,
                email_id=owner.email,
            ),
            scopes=list(restrictions.scopes) if restrictions.scopes is not None else None,
            permissions=list(restrictions.permissions),
            permission_roles=list(restrictions.permission_roles),
            allowed_cidrs=(
                list(restrictions.allowed_cidrs) if restrictions.allowed_cidrs is not None else None
            ),
            rate_limits=[
                RateLimitSpec(
                    name=limit.name, limit=limit.limit, window_seconds=limit.window_seconds
                )
                for limit in restrictions.rate_limits
            ],
            credits=(
                CreditsRead(
                    remaining=credits.remaining,
                    refill=(
                        CreditsRefillSpec(
                            interval=refill.interval.value,
                            amount=refill.amount,
                            day=refill.day if refill.interval is RefillInterval.MONTHLY else None,
                        )
                        if refill is not None
                        else None
                    ),
                    next_refill_at=next_refill_at(refill, now) if refill is not None else None,
                )
                if credits is not None
                else None
            ),
            owner_id=restrictions.owner_id,
            meta=restrictions.meta,
        ),
        status=ApiKeyStatus(
            is_active=key.is_active,
            is_expired=key.is_expired(now),
            last_used_timestamp=key.last_used_at,
            key_hint=key.key_hint,
            restricted=restrictions.restricted,
            state=key.state(now).value,
            rotated_to=key.rotated_to_uid,
            rotated_from=key.rotated_from_uid,
            rotation_grace_ends_at=key.rotation_grace_ends_at,
            leaked_at=key.leaked_at,
            leaks=leaks,
        ),
    )


# --- leak reports (api_keys.leaks) ------------------------------------------------------

# Printable text: a sighting's place is shown in mails and in the console.
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


class LeakReportItem(PaletteModel):
    value: str = Field(max_length=1024, description="The value seen (kp_...).")
    url: str = Field(
        default="", max_length=2048, pattern=_NO_CONTROL, description="Where it was seen."
    )
    source: str = Field(
        default="",
        max_length=128,
        pattern=_NO_CONTROL,
        description='What kind of place: "github-gist", "commit", "ci-log", ...',
    )


class LeakReportCreate(PaletteModel):
    """What ``keyplane scan --report`` sends. At most KEYPLANE_LEAK_REPORT_MAX_ITEMS."""

    leaks: list[LeakReportItem] = Field(max_length=1000)


class LeakReportReceived(PaletteModel):
    """The same answer whatever the values were: it never tells which are keys."""

    received: int


class GitHubTokenMatch(PaletteModel):
    """One match in a request of GitHub's secret scanning (GitHub's own field names)."""

    token: str = Field(max_length=1024)
    type: str = Field(default="", max_length=128)
    url: str = Field(default="", max_length=2048, pattern=_NO_CONTROL)
    source: str = Field(default="", max_length=128, pattern=_NO_CONTROL)


class GitHubTokenLabel(BaseModel):
    """GitHub's feedback shape (snake_case, GitHub's names). The token by its SHA-256
    (``token_hash``), which GitHub accepts instead of ``token_raw``: no response carries a
    reported value."""

    token_hash: str
    token_type: str
    label: Literal["true_positive", "false_positive"]
