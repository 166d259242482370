"""A good key used beyond what it carries: the checks both doors make after the verdict.

Keyplane's own API (``authenticate_api_key``) and ``POST /v1/apiKeys/verify`` check the
same restrictions from the same cached snapshot, in the same order, so that a key is
refused for the same reason at either door:

1. address ranges (the client's address on the API; ``clientAddress`` for verify);
2. scopes (the API only: they are about Keyplane's own operations) or, for verify, the
   caller's permission query;
3. rate limits (shared by every instance through Redis when configured);
4. credits (the API refuses an exhausted key; verify spends, atomically in the database).

Nothing here reads the database except spending credits, and nothing here needs Redis to
keep a revoked key out: rate limits fail open when their store is unreachable, every other
check is made from the snapshot, whose invalidation never depends on Redis.
"""

from __future__ import annotations

import logging
from datetime import datetime

from keyplane.auth.key_cache import KeySnapshot
from keyplane.auth.scopes import missing_scope
from keyplane.kit.cidr import address_allowed
from keyplane.kit.credits import exhausted, next_refill_at
from keyplane.kit.errors import Forbidden, KeyplaneError, RateLimited
from keyplane.kit.key_refusals import FORBIDDEN_ADDRESS, RATE_LIMITED, USAGE_EXCEEDED
from keyplane.kit.shared_limits import LimitDecision
from keyplane.kit.time import rfc3339
from keyplane.runtime import Runtime

logger = logging.getLogger("keyplane.security")


def address_refused(snapshot: KeySnapshot, address: str | None) -> bool:
    """Whether the key has ranges (its own, or its tenant's policy's) and the address is
    outside them (or unknown). Both bounds apply: the address must lie in the key's own
    ranges and in the tenant's, so a key made before the policy, or one without ranges of
    its own, is held to the tenant's ranges all the same."""
    for ranges in (snapshot.allowed_cidrs, snapshot.tenant_allowed_cidrs):
        if ranges is not None and (address is None or not address_allowed(address, ranges)):
            return True
    return False


def credits_exhausted(snapshot: KeySnapshot, now: datetime) -> bool:
    return exhausted(
        snapshot.credits_remaining, snapshot.credits_refill, snapshot.credits_refilled_at, now
    )


async def rate_limit(runtime: Runtime, snapshot: KeySnapshot) -> LimitDecision | None:
    """Counts one use against the key's rate limits; None when it has none."""
    if not snapshot.rate_limits:
        return None
    decision = await runtime.limiter.check(f"key:{snapshot.key_uid}", snapshot.rate_limits)
    if not decision.allowed:
        await runtime.limiter.note_refusal(snapshot.key_uid)
    return decision


def rate_limited_error(decision: LimitDecision) -> RateLimited:
    retry_after = max(1, decision.retry_after_seconds)
    name = decision.limit.name if decision.limit else ""
    return RateLimited(
        f"{RATE_LIMITED.message} (limit {name}).",
        code=RATE_LIMITED.api_code,
        details={"limit": name, "retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


async def api_refusal(
    runtime: Runtime,
    snapshot: KeySnapshot,
    client_address: str,
    operation_id: str | None,
    now: datetime,
) -> KeyplaneError | None:
    """Why a key the verdict let through may still not make this request on Keyplane's
    API, or None; counts the request against the key's rate limits when it gets that far."""
    if address_refused(snapshot, client_address):
        return Forbidden(FORBIDDEN_ADDRESS.message, code=FORBIDDEN_ADDRESS.api_code)
    missing = missing_scope(operation_id, snapshot.scopes)
    if missing is not None:
        if missing == "*":
            return Forbidden(
                "This API key has scopes, and this operation is not one a scoped key may call.",
                code="ApiKeyScopeMissing",
            )
        return Forbidden(
            f"This API key lacks the scope {missing} that this operation needs.",
            code="ApiKeyScopeMissing",
            details={"scope": missing},
        )
    if credits_exhausted(snapshot, now):
        refill = snapshot.credits_refill
        return Forbidden(
            USAGE_EXCEEDED.message,
            code=USAGE_EXCEEDED.api_code,
            details={"nextRefillAt": rfc3339(next_refill_at(refill, now)) if refill else None},
        )
    decision = await rate_limit(runtime, snapshot)
    if decision is not None and not decision.allowed:
        return rate_limited_error(decision)
    return None
