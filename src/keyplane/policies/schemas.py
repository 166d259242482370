"""The API key policy of a tenant (``/v1/tenants/{tenantUid}/apiKeyPolicy``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, StrictInt

from keyplane.kit.cidr import MAX_RANGES
from keyplane.kit.schemas import PaletteModel, Rfc3339

MAX_NOTICE_DAYS = 5
# Days are bounded by what a key's lifetime can be at most (the server's maximum is
# checked by the service); this bound only keeps the numbers sane.
MAX_DAYS = 36_500

KeyCreationName = Literal["everyone", "admins"]
LeakActionName = Literal["revoke", "flag"]
ViolationRule = Literal["maxLifetime", "allowedCidrs", "inactivity"]


class ApiKeyPolicy(PaletteModel):
    """The tenant's policy as stored; null fields mean "the server's" (lifetimes) or
    "none" (address ranges, inactivity)."""

    max_lifetime_days: int | None = None
    default_lifetime_days: int | None = None
    expiry_required: bool = False
    key_creation: KeyCreationName = "everyone"
    allowed_cidrs: list[str] | None = None
    inactivity_days: int | None = None
    expiry_notice_days: list[int] = Field(default_factory=lambda: [7, 1])
    leak_action: LeakActionName = "revoke"


class ApiKeyPolicyRead(ApiKeyPolicy):
    # What is in force once the server's limits are applied, for clients to show.
    effective_max_lifetime_days: int
    effective_default_lifetime_days: int
    server_max_lifetime_days: int
    modified_at: Rfc3339 | None = None
    modified_by_uid: str | None = None


class ApiKeyPolicyUpdate(PaletteModel):
    """The whole policy (PUT): a field left out takes its default."""

    max_lifetime_days: StrictInt | None = Field(
        default=None, ge=1, le=MAX_DAYS, description="At most the server's maximum; null: it."
    )
    default_lifetime_days: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_DAYS,
        description="For keys created without an expiry; at most maxLifetimeDays.",
    )
    expiry_required: StrictBool = Field(
        default=False, description="Refuse keys created without an expiry."
    )
    key_creation: KeyCreationName = Field(
        default="everyone", description="Who may create keys: everyone, or tenant admins only."
    )
    allowed_cidrs: list[str] | None = Field(
        default=None,
        max_length=MAX_RANGES,
        description="Address ranges every key of the tenant is bound to; null: none.",
    )
    inactivity_days: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_DAYS,
        description="Revoke keys unused (last used, else created) for this many days.",
    )
    expiry_notice_days: list[StrictInt] = Field(
        default_factory=lambda: [7, 1],
        max_length=MAX_NOTICE_DAYS,
        description="Days before a key's expiry on which its owner is mailed (1..365).",
    )
    leak_action: LeakActionName = Field(
        default="revoke",
        description="What happens to a key reported leaked: revoke it at once, or only flag it.",
    )


class PolicyViolation(PaletteModel):
    key_uid: str
    name: str
    owner_uid: str
    owner_email: str
    rules: list[ViolationRule]
    message: str


class PolicyViolations(PaletteModel):
    items: list[PolicyViolation]
    # True when more keys break the policy than are listed.
    truncated: bool = False
