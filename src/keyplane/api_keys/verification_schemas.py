"""The shapes of ``POST /v1/apiKeys/verify``: its request, and its answer, rendered once
per key snapshot and code for the verification plane."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
)

from keyplane.kit.credits import MAX_COST
from keyplane.kit.permission_query import PermissionQueryError, cached_permission_query
from keyplane.kit.schemas import PaletteModel, Rfc3339

if TYPE_CHECKING:
    from keyplane.api_keys.verification import Verification


def _permission_query(text: str) -> str:
    try:
        cached_permission_query(text)
    except PermissionQueryError as exc:
        raise ValueError(f"not a permission query: {exc.message}") from None
    return text


def _client_address(text: str) -> str:
    canonical = _canonical_address(text)
    if canonical is None:
        raise ValueError("not an IPv4 or IPv6 address")
    return canonical


# The same callers' addresses come with every verify: parsed once each, within a bound.
@functools.lru_cache(maxsize=16384)
def _canonical_address(text: str) -> str | None:
    try:
        return str(ip_address(text.strip()))
    except ValueError:
        return None


class ApiKeyVerify(PaletteModel):
    key: str = Field(max_length=256, description="The key a caller presented to your service.")
    permissions: Annotated[str, AfterValidator(_permission_query)] | None = Field(
        default=None,
        max_length=1000,
        description='A permission query the key must satisfy, e.g. "invoices.read AND '
        '(invoices.write OR admin)": names joined by AND and OR (AND binds tighter), with '
        "parentheses. Otherwise INSUFFICIENT_PERMISSIONS.",
    )
    client_address: Annotated[str, AfterValidator(_client_address)] | None = Field(
        default=None,
        max_length=64,
        description="The address your caller connects from: checked against the key's "
        "address ranges (a key with ranges and no address here: FORBIDDEN_ADDRESS).",
    )
    cost: int = Field(
        default=1,
        ge=0,
        le=MAX_COST,
        description="Credits a valid answer spends from a key that has credits (0: none).",
    )


class VerifiedRateLimit(PaletteModel):
    name: str
    limit: int
    remaining: int
    reset_at: Rfc3339


VerificationCodeName = Literal[
    "VALID",
    "REVOKED",
    "EXPIRED",
    "ROTATED",
    "NOT_FOUND",
    "USER_INACTIVE",
    "MALFORMED",
    "FORBIDDEN_ADDRESS",
    "INSUFFICIENT_PERMISSIONS",
    "RATE_LIMITED",
    "USAGE_EXCEEDED",
]


class ApiKeyVerification(PaletteModel):
    """Whether a key is valid now, and whose it is (only for keys of the caller's tenant)."""

    valid: bool
    code: VerificationCodeName
    key_uid: str | None = None
    user_uid: str | None = None
    tenant_uid: str | None = None
    expiry: Rfc3339 | None = None
    permissions: list[str] | None = Field(
        default=None, description="The key's permissions, its roles' included."
    )
    owner_id: str | None = None
    meta: dict[str, Any] | None = None
    remaining: int | None = Field(
        default=None, description="Credits left after this call (null: no credits)."
    )
    rate_limit: VerifiedRateLimit | None = Field(
        default=None, description="The key's tightest rate limit after this call."
    )
    missing_permissions: list[str] | None = Field(
        default=None, description="INSUFFICIENT_PERMISSIONS: what would satisfy the query."
    )


def verification_json(result: Verification) -> bytes:
    """``verification_response`` as JSON. An answer about the key alone is rendered once
    per key snapshot and code (the verification plane sends it on every call of a
    tenant's services); one that depends on the call (credits, rate limits) every time."""
    key = result.key
    if key is None:
        return _KEYLESS_ANSWERS[result.code.value]
    memoised = not result.depends_on_the_call
    rendered = key.renderings.get(result.code.value) if memoised else None
    if rendered is None:
        answer = verification_response(result)
        rendered = answer.__pydantic_serializer__.to_json(answer, by_alias=True)
        if memoised:
            key.renderings[result.code.value] = rendered
    return rendered


def verification_response(result: Verification) -> ApiKeyVerification:
    key = result.key
    if key is None:
        return ApiKeyVerification(valid=result.valid, code=result.code.value)
    decision = result.rate_limit
    return ApiKeyVerification(
        valid=result.valid,
        code=result.code.value,
        key_uid=key.key_uid,
        user_uid=key.user_uid,
        tenant_uid=key.tenant_uid,
        expiry=key.expires_at,
        permissions=sorted(key.permissions),
        owner_id=key.owner_id,
        meta=key.meta,
        remaining=result.credits_remaining,
        rate_limit=(
            VerifiedRateLimit(
                name=decision.limit.name,
                limit=decision.limit.limit,
                remaining=decision.remaining,
                reset_at=datetime.fromtimestamp(decision.reset_at, UTC),
            )
            if decision is not None and decision.limit is not None
            else None
        ),
        missing_permissions=list(result.missing_permissions) or None,
    )


_KEYLESS_ANSWERS = {
    code: ApiKeyVerification(valid=False, code=code).model_dump_json(by_alias=True).encode()
    for code in ("NOT_FOUND", "MALFORMED")
}
